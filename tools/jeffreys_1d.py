"""Shim for the README's commands: `python tools/jeffreys_1d.py ARGS` runs `zoo jeffreys_1d ARGS` (zoo/cli.py)."""
import sys

from zoo.cli import entry

if __name__ == "__main__":
    entry(["jeffreys_1d", *sys.argv[1:]])
