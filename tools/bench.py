"""Shim for the README's commands: `python tools/bench.py ARGS` runs `zoo bench ARGS` (zoo/cli.py)."""
import sys

from zoo.cli import entry

if __name__ == "__main__":
    entry(["bench", *sys.argv[1:]])
