"""Shim for the README's commands: `python tools/registry.py ARGS` runs `zoo registry ARGS` (zoo/cli.py)."""
import sys

from zoo.cli import entry

if __name__ == "__main__":
    entry(["registry", *sys.argv[1:]])
