"""Shim for the README's commands: `python tools/evaluate.py ARGS` runs `zoo evaluate ARGS` (zoo/cli.py)."""
import sys

from zoo.cli import entry

if __name__ == "__main__":
    entry(["evaluate", *sys.argv[1:]])
