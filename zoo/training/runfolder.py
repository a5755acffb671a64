"""A run folder through one training process's life, the part of a run that is not training: `RunFolder`.

Opening it locks the folder for this process (`runlock`: one writer per run) and claims it once, before anything is
written (`rundir.claim`): a new run refuses a folder holding another one, a run resumed from an earlier checkpoint of
its own folder moves the later checkpoints aside into abandoned/, and a run killed before its first checkpoint is
restarted with its files moved aside. Closing it releases the lock, so another process may resume the run.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from zoo.training import rundir, runlock


class RunFolder:
    """One run's output folder, as the trainer uses it: `open` before the first write, `close` at the end."""

    def __init__(self, path: str | Path, *, is_main: bool, sync: Callable[[], None] = lambda: None):
        self.path = Path(path)
        self.is_main = is_main  # only the main process locks and writes; the others take part in the claim's barrier
        self.sync = sync
        self.lock: runlock.RunLock | None = None
        self.claimed = False
        self.restart = False  # set by `restart_empty`: the folder holds a run that never saved a checkpoint

    def is_folder(self, path: str | Path) -> bool:
        return Path(path).resolve() == self.path.resolve()

    def holds(self, checkpoint: Path) -> bool:
        """`checkpoint` (…/checkpoints/step_N) is one of this folder's own."""
        return checkpoint.parent.parent.resolve() == self.path.resolve()

    def restart_empty(self) -> None:
        """Resume asked for this folder and found no checkpoint: its earlier files are moved aside at the claim and
        the run starts from step 0."""
        self.restart = True

    def open(self, *, step: int, config_yaml: str, resumed_from: Path | None, changes: dict[str, tuple[Any, Any]],
             on_moved: Callable[[dict[Path, Path]], None]) -> bool:
        """Lock (main process) and, the first time, claim the folder; returns True when this call claimed it for this
        process's writing (the caller opens its logs then). A refused claim keeps the lock until `close`."""
        if self.is_main and self.lock is None:
            self.lock = runlock.acquire(self.path)  # one writer per run directory, or a RunDirError naming it
        if self.claimed:
            return False
        writes = rundir.claim(self.path, step=step, resumed_from=resumed_from, restart=self.restart, changes=changes,
                              config_yaml=config_yaml, is_main=self.is_main, sync=self.sync, on_moved=on_moved)
        self.claimed = True
        return writes

    def close(self) -> None:
        """Release the lock: another process may resume the run now."""
        if self.lock is not None:
            self.lock.release()
            self.lock = None
