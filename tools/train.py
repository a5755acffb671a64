"""Shim for the README's commands: `python tools/train.py ARGS` runs `zoo train ARGS` (zoo/cli.py)."""
import sys

from zoo.cli import entry

if __name__ == "__main__":
    entry(["train", *sys.argv[1:]])
