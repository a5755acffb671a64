"""Shim for the README's commands: `python tools/evidence.py ARGS` runs `zoo evidence ARGS` (zoo/cli.py)."""
import sys

from zoo.cli import entry

if __name__ == "__main__":
    entry(["evidence", *sys.argv[1:]])
