"""Shim for the README's commands: `python tools/jsg_fig2.py ARGS` runs `zoo jsg_fig2 ARGS` (zoo/cli.py)."""
import sys

from zoo.cli import entry

if __name__ == "__main__":
    entry(["jsg_fig2", *sys.argv[1:]])
