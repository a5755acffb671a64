"""Shim for the README's commands: `python tools/reproduce.py ARGS` runs `zoo reproduce ARGS` (zoo/cli.py)."""
import sys

from zoo.cli import entry

if __name__ == "__main__":
    entry(["reproduce", *sys.argv[1:]])
