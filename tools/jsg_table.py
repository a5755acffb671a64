"""Shim for the README's commands: `python tools/jsg_table.py ARGS` runs `zoo jsg_table ARGS` (zoo/cli.py)."""
import sys

from zoo.cli import entry

if __name__ == "__main__":
    entry(["jsg_table", *sys.argv[1:]])
