"""Shim for the README's commands: runs `zoo latent_analysis ARGS` (zoo/cli.py)."""
import sys

from zoo.cli import entry

if __name__ == "__main__":
    entry(["latent_analysis", *sys.argv[1:]])
