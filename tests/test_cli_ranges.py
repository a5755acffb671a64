"""Issue 21 (round 2), item 8: out-of-range options of every command end in one argparse line naming the option and
its valid range (exit 2), through the real `zoo` entry point; no traceback, nothing run."""
from __future__ import annotations

import argparse

import pytest

from zoo.cli import main
from zoo.arguments import SEED_MAX, device_name, finite_float, nonnegative_int, positive_int, seed_int

SEED_RANGE = f"expected an integer seed in [0, {SEED_MAX}] (2^63 - 1)"

CASES = [
    (["sample", "run", "--batch-size", "0"], "argument --batch-size: got 0, expected an integer >= 1"),
    (["sample", "run", "-n", "-5"], "argument -n/--n-samples: got -5, expected an integer >= 1"),
    (["sample", "run", "--seed", str(2**63)], f"argument --seed: got {2**63}, {SEED_RANGE}"),
    (["sample", "run", "--seed", "-1"], f"argument --seed: got -1, {SEED_RANGE}"),
    (["sample", "run", "--device", "gpu0"], "argument --device: got 'gpu0', expected cpu, cuda, cuda:N or mps"),
    (["sample", "run", "--device", "cuda:99"], "argument --device: got 'cuda:99', but this machine has"),
    (["interpolate", "run", "--pairs", "0"], "argument --pairs: got 0, expected an integer >= 1"),
    (["traverse", "run", "--index", "-1"], "argument --index: got -1, expected an integer >= 0"),
    (["traverse", "run", "--span", "inf"], "argument --span: got inf, expected a finite number"),
    (["evaluate", "run", "--metric", "elbo", "--n-real", "0"], "argument --n-real: got 0, expected an integer >= 1"),
    (["evaluate", "run", "--metric", "elbo", "--n-real", "-1"], "argument --n-real: got -1, expected an integer >= 1"),
    (["evaluate", "run", "--metric", "elbo", "--iw-samples", "0"], "argument --iw-samples: got 0, expected an integer"),
    (["evaluate", "run", "--metric", "wcritic", "--critic-lr", "nan"], "argument --critic-lr: got nan, expected a "
                                                                        "finite"),
    (["evaluate", "run", "--metric", "elbo", "--batch-size", "ten"], "argument --batch-size: got 'ten', expected an "
                                                                      "integer >= 1"),
    (["latent_analysis", "run", "--smoothing-std", "-0.5"], "argument --smoothing-std: got -0.5, expected a finite "
                                                            "number > 0"),
    (["appendix_d", "--iterations", "0"], "argument --iterations: got 0, expected an integer >= 1"),
    (["evidence", "run", "--seed", "-3"], f"argument --seed: got -3, {SEED_RANGE}"),
    (["reproduce", "spec.yaml", "--scale", "smoke", "--seeds", "0,-2"], f"argument --seeds: got -2, {SEED_RANGE}"),
    (["sweep", "s.yaml", "--cpus", "0"], "argument --cpus: got 0, expected an integer >= 1"),
]


@pytest.mark.parametrize("argv, message", CASES, ids=[" ".join(a[:1] + a[-2:]) for a, _ in CASES])
def test_out_of_range_options_are_one_line_naming_the_option(argv, message, capsys):
    with pytest.raises(SystemExit) as caught:
        main(argv)
    out, err = capsys.readouterr()
    assert caught.value.code == 2 and out == ""
    assert err.count("\n") == 1 and "Traceback" not in err, err
    assert message in err and err.startswith(f"zoo {argv[0]}: error: ") and "--help shows the options" in err


def test_the_types_accept_their_whole_range():
    assert positive_int("1") == 1 and nonnegative_int("0") == 0 and finite_float("-2.5") == -2.5
    assert seed_int("0") == 0 and seed_int(str(SEED_MAX)) == SEED_MAX
    assert device_name("cpu") == "cpu"
    for bad in ("0", "1.5", ""):
        with pytest.raises(argparse.ArgumentTypeError):
            positive_int(bad)
