"""The `zoo` command: `zoo <command> [args]`, one subcommand per job; `zoo <command> --help` for its options.

Installed as a console script (`pip install -e .`); `python -m zoo.cli ...` and `accelerate launch -m zoo.cli train
RECIPE` run the same, and tools/*.py are shims for it. Each command lives in its own module (zoo/commands, or
zoo/studies for the paper studies) with a `main(argv) -> exit status`, imported only when that command runs.
The developer harnesses (bench, bench_eval, device_check) are scripts in the checkout's benchmarks/, outside the
package; `zoo bench` and the others say so in one line (exit 2).
"""
from __future__ import annotations

import argparse
import importlib
import os
import shlex
import sys
from typing import NoReturn

#: command -> (module with `main(argv)`, one-line description)
COMMANDS: dict[str, tuple[str, str]] = {
    "train": ("zoo.commands.train", "train a model from a recipe (under accelerate launch for several processes)"),
    "evaluate": ("zoo.commands.evaluate", "score checkpoints or datasets with registered metrics"),
    "registry": ("zoo.commands.registry", "the catalog of results: list, compare, plot, export; models: the code's"),
    "sweep": ("zoo.commands.sweep", "expand a sweep file into one train command per grid point, or run them"),
    "train_mnist_classifier": ("zoo.commands.train_mnist_classifier", "train the modes metric's MNIST classifier"),
    "appendix_d": ("zoo.studies.appendix_d", "Rosca et al. App. D: density-ratio KL estimates against closed forms"),
    "jeffreys_1d": ("zoo.studies.jeffreys_1d", "IJAE App. B / Fig. 1: 1-D fits under KL, reverse KL and Jeffreys"),
    "jsg_fig2": ("zoo.studies.jsg_fig2", "Deasy et al. Fig. 2: 2-D Gaussian fits under each divergence"),
    "latent_analysis": ("zoo.studies.latent_analysis", "Rosca et al. section 3: marginal KL, low-posterior samples"),
    "evidence": ("zoo.commands.evidence", "importance-sampled log evidence with a bootstrap interval"),
    "traverse": ("zoo.commands.traverse", "latent traversals of an encoder-decoder checkpoint"),
    "interpolate": ("zoo.commands.interpolate", "linear / spherical latent interpolation grids of a checkpoint"),
    "sample": ("zoo.commands.sample", "export N samples as PNG files or one .npz (torch-fidelity, clean-fid)"),
    "reproduce": ("zoo.commands.reproduce", "run reproduction specs (paper tables) and render docs/reproduction.md"),
}

#: former commands that are developer harnesses now, outside the package: command -> its script in a checkout
MOVED: dict[str, str] = {
    "bench": "benchmarks/bench.py",
    "bench_eval": "benchmarks/bench_eval.py",
    "device_check": "benchmarks/device_check.py",
}


def parser() -> argparse.ArgumentParser:
    commands = "\n".join(f"  {name:<24}{text}" for name, (_, text) in COMMANDS.items())
    p = argparse.ArgumentParser(prog="zoo", formatter_class=argparse.RawDescriptionHelpFormatter,
                                description="zoo: a PyTorch model zoo of VAE-GAN hybrid generative models.",
                                epilog=f"commands:\n{commands}\n\n`zoo COMMAND --help` shows a command's options.")
    p.add_argument("command", choices=list(COMMANDS), metavar="COMMAND", help="one of the commands below")
    p.add_argument("args", nargs=argparse.REMAINDER, help="the command's arguments")
    return p


def main(argv: list[str] | None = None) -> int:
    """Run `zoo` with `argv` (default: the process's arguments); returns the exit status."""
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] in MOVED:
        run = shlex.join(["python", MOVED[argv[0]], *argv[1:]])
        print(f"zoo {argv[0]}: moved out of the zoo package; from a checkout of the zoo run: {run}", file=sys.stderr)
        return 2
    args = parser().parse_args(argv)
    module, _ = COMMANDS[args.command]
    return importlib.import_module(module).main(args.args)


def entry(argv: list[str] | None = None) -> NoReturn:
    """The console script: run `main`, then end the process (every process of a multi-process job cleanly).

    A reader that stops early (`zoo sweep ... | head`) closes the pipe: the command ends quietly with status 141
    (128 + SIGPIPE), as Unix tools do, instead of a BrokenPipeError traceback."""
    try:
        status = main(argv)
        sys.stdout.flush()  # inside: buffered output meets the closed pipe here, not at interpreter exit
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # the exit's own flush writes nowhere
        status = 141
    from zoo.training.distributed import exit_process  # after the command: `zoo --help` stays fast

    exit_process(status)


if __name__ == "__main__":
    entry()
