"""Shim for the README's commands: `python tools/sweep.py ARGS` runs `zoo sweep ARGS` (zoo/cli.py)."""
import sys

from zoo.cli import entry

if __name__ == "__main__":
    entry(["sweep", *sys.argv[1:]])
