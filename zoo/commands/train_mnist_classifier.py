#!/usr/bin/env python
"""Train the MNIST classifier that the `modes` metric reads stacked-MNIST samples with.

    zoo train_mnist_classifier [recipes/classifiers/mnist_classifier.yaml] [--out PATH] [steps=300 ...]

Writes safetensors (default runs/classifiers/mnist_classifier.safetensors, where `modes` looks by default) with the
width, steps and MNIST test accuracy in the metadata, and prints the accuracy.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path


from zoo.arguments import ArgumentParser
from zoo.config import ConfigError
from zoo.evaluation.mnist_classifier import load_classifier_recipe, train_mnist_classifier
from zoo.evaluation.modes import DEFAULT_CLASSIFIER

RECIPE = Path(__file__).resolve().parents[2] / "recipes" / "classifiers" / "mnist_classifier.yaml"


def main(argv: list[str] | None = None) -> int:
    parser = ArgumentParser(prog="zoo train_mnist_classifier", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("recipe", nargs="?", default=str(RECIPE), help="classifier YAML recipe")
    parser.add_argument("overrides", nargs="*", help="KEY=VALUE overrides, e.g. steps=300")
    parser.add_argument("--out", default=str(DEFAULT_CLASSIFIER), help="safetensors path to write")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_intermixed_args(argv)
    if "=" in args.recipe:  # only overrides were given: they follow the default recipe
        args.overrides, args.recipe = [args.recipe, *args.overrides], str(RECIPE)
    try:
        recipe = load_classifier_recipe(args.recipe, args.overrides)
    except ConfigError as err:
        print(f"error: {args.recipe}: {err}", file=sys.stderr)
        return 2
    from zoo.data import DatasetNotFoundError
    try:
        _, summary = train_mnist_classifier(recipe, args.out, progress=not args.no_progress)
    except DatasetNotFoundError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"zoo: MNIST classifier: test accuracy {summary['test_accuracy']:.4f} after {summary['steps']} steps "
          f"({summary['seconds']} s); wrote {args.out}")
    return 0
