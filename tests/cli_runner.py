"""Run many `tools/train.py` command lines as separate processes, cheaply: import once, then fork one child per run.

    python tests/cli_runner.py JOBS.json

JOBS.json is a list of rounds; each round is a list of argument lists for `zoo train` (`main()`). The runs of a round
go at most `ZOO_RUNNER_PARALLEL` (default 2) at a time; a round starts when the previous one has ended. Each child
first scrambles the global torch, numpy and random generators from os.urandom, so a run whose result depended on
the state it inherited (an unseeded initialisation, say) would differ from its twin. Prints one JSON line
{"rcs": [[rc, ...], ...]}; a child's output goes to `<its --out>.log`.
"""
from __future__ import annotations

import functools
import json
import os
import random
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from zoo.commands import train  # noqa: E402  `zoo train`, what tools/train.py runs
import zoo.data  # noqa: E402,F401  the imports a run needs, paid once
import zoo.training  # noqa: E402,F401
import zoo.data.arrays  # noqa: E402
from zoo.factory import discover  # noqa: E402

discover()
# Decompressing MNIST's idx files took most of a tiny run: read each once here, and let the children share it.
_read_idx = functools.lru_cache(maxsize=None)(zoo.data.arrays.read_idx)
zoo.data.arrays.read_idx = lambda path, header_only=False: (_read_idx(Path(path), header_only) if header_only
                                                            else _read_idx(Path(path), False).copy())


def child(argv: list[str]) -> int:
    out = Path(argv[argv.index("--out") + 1])
    fd = os.open(f"{out}.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    entropy = int.from_bytes(os.urandom(8), "little")
    torch.manual_seed(entropy)
    np.random.seed(entropy % 2**32)
    random.seed(entropy)
    try:
        return train.main(argv)
    except BaseException as err:  # noqa: BLE001 - report, do not let a child return into the parent's loop
        print(f"runner: {type(err).__name__}: {err}", flush=True)
        return 99


def run_round(jobs: list[list[str]], parallel: int) -> list[int]:
    rcs: dict[int, int] = {}
    running: dict[int, int] = {}  # pid -> job index
    pending = list(enumerate(jobs))
    while pending or running:
        while pending and len(running) < parallel:
            index, argv = pending.pop(0)
            pid = os.fork()
            if pid == 0:
                code = child(argv)
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(code)
            running[pid] = index
        pid, status = os.wait()
        rcs[running.pop(pid)] = os.waitstatus_to_exitcode(status)
    return [rcs[i] for i in range(len(jobs))]


def main() -> None:
    rounds = json.loads(Path(sys.argv[1]).read_text())
    parallel = int(os.environ.get("ZOO_RUNNER_PARALLEL", "2"))
    zoo.data.load_dataset("mnist", "train", None, limit=1).as_uint8_tensor()  # fills the idx cache (see above)
    print(json.dumps({"rcs": [run_round(jobs, parallel) for jobs in rounds]}), flush=True)


if __name__ == "__main__":
    main()
