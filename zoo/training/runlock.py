"""One writer per run directory: `<run>/run.lock`, held with `fcntl.flock` by the process that trains into it.

Two processes writing one run directory (a second `zoo train --resume auto` while the first still runs) would
interleave checkpoints, metrics and history, and the second's resume would move the first's newer checkpoints aside.
The trainer's main process takes the lock when it claims the directory and keeps it until training ends; the kernel
releases a flock when its process dies, however it dies, so a lock held is a live writer. The file names the holder
(pid, host, start time) so that a refusal can say who writes. On a clean end the file is emptied, not deleted
(deleting would let a process that opened the old file and one that creates a new one both "hold" it).

A file naming a holder whose lock is free is stale: on this host its process ended without releasing it (killed),
and the run is taken over with a note; from another host the lock cannot be checked from here (flock does not reach
across hosts on every network file system), so the run is refused with how to remove the file if that host is gone.
"""
from __future__ import annotations

import fcntl
import gc
import json
import os
import socket
from pathlib import Path
from typing import Any

from zoo.training.rundir import LOCK_FILE, RunDirError, now


class RunLock:
    """The held lock of one run directory; `release()` (or dropping the object) gives it up."""

    def __init__(self, path: Path, fd: int):
        self.path, self.fd = path, fd

    def release(self) -> None:
        """Empty the file (a clean end leaves no holder to explain) and unlock. Returns None, for `lock = ...`."""
        if self.fd is not None:
            try:
                os.ftruncate(self.fd, 0)
            except OSError:
                pass  # a full or read-only disk: the lock is released all the same when the file closes
            os.close(self.fd)
            self.fd = None

    __del__ = release


def holder(path: Path) -> dict[str, Any]:
    """What the lock file says about its holder ({} when empty or unreadable)."""
    try:
        found = json.loads(path.read_text() or "{}")
        return found if isinstance(found, dict) else {}
    except (OSError, ValueError):
        return {}


def _describe(who: dict[str, Any]) -> str:
    return f"pid {who.get('pid', '?')} on host {who.get('host', '?')}, started {who.get('started', '?')}"


def _alive(pid: Any) -> bool:
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except (PermissionError, ValueError, TypeError, OverflowError):
        return True  # another user's process, or a value we cannot judge: assume it runs
    return True


def acquire(out: str | Path, *, probe: bool = False) -> RunLock | None:
    """Take the run lock of `out` (created if needed), or raise RunDirError naming the live writer, or the other host.

    With `probe`, only check that it could be taken (a fast refusal before a command builds anything); returns None.
    """
    out = Path(out)
    path = out / LOCK_FILE
    if probe and not path.is_file():
        return None
    out.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        for attempt in range(2):
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                who = holder(path)
                if attempt == 0 and who.get("pid") == os.getpid():  # a dropped Trainer of this process, not yet freed
                    gc.collect()
                    continue
                raise RunDirError(f"{str(out)!r} is being written by another live process ({_describe(who)}); two "
                                  f"writers would interleave its checkpoints and logs. Wait for it to end, or stop it "
                                  f"(kill -TERM {who.get('pid', 'PID')}: it saves a checkpoint first), then resume "
                                  f"with --resume auto") from None
        who, host = holder(path), socket.gethostname()
        if who and who.get("host") != host:
            raise RunDirError(f"{str(path)!r} says {_describe(who)} writes this run; a lock taken on another host "
                              f"cannot be checked from here. If that run has ended (or the host is gone), delete "
                              f"{str(path)!r} and resume")
        if probe:
            os.close(fd)
            return None
        if who and who.get("pid") != os.getpid():
            state = "no longer runs" if not _alive(who.get("pid")) else "runs but no longer holds the lock"
            print(f"zoo: note: taking over {path}: its holder ({_describe(who)}) {state} (killed before it could "
                  f"release it)", flush=True)
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps({"pid": os.getpid(), "host": host, "started": now()}).encode() + b"\n", 0)
        os.fsync(fd)
        return RunLock(path, fd)
    except BaseException:
        os.close(fd)
        raise
