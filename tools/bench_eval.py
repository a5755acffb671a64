"""Shim for the README's commands: `python tools/bench_eval.py ARGS` runs `zoo bench_eval ARGS` (zoo/cli.py)."""
import sys

from zoo.cli import entry

if __name__ == "__main__":
    entry(["bench_eval", *sys.argv[1:]])
