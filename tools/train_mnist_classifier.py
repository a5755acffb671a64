"""Shim for the README's commands: runs `zoo train_mnist_classifier ARGS` (zoo/cli.py)."""
import sys

from zoo.cli import entry

if __name__ == "__main__":
    entry(["train_mnist_classifier", *sys.argv[1:]])
