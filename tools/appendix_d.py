"""Shim for the README's commands: `python tools/appendix_d.py ARGS` runs `zoo appendix_d ARGS` (zoo/cli.py)."""
import sys

from zoo.cli import entry

if __name__ == "__main__":
    entry(["appendix_d", *sys.argv[1:]])
