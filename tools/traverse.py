"""Shim for the README's commands: `python tools/traverse.py ARGS` runs `zoo traverse ARGS` (zoo/cli.py)."""
import sys

from zoo.cli import entry

if __name__ == "__main__":
    entry(["traverse", *sys.argv[1:]])
