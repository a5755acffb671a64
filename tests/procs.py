"""Subprocesses for tests that never outlive them: each starts in its own session (process group), and the group is
killed when its test ends, when a `run` times out or is interrupted, and at interpreter exit (a Ctrl-C of pytest
once left a 100,000-step training subprocess running for 35 minutes)."""
from __future__ import annotations

import atexit
import os
import signal
import subprocess
from typing import Any

_LIVE: list[subprocess.Popen] = []


def popen(cmd: list[str], **kwargs: Any) -> subprocess.Popen:
    """`subprocess.Popen` in a new process group that `kill_all` (run after every test) ends."""
    proc = subprocess.Popen(cmd, start_new_session=True, **kwargs)
    _LIVE.append(proc)
    return proc


def run(cmd: list[str], *, timeout: float = 300, input: str | None = None, capture_output: bool = True,
        text: bool = True, **kwargs: Any) -> subprocess.CompletedProcess:
    """`subprocess.run` whose timeout or interruption kills the whole process group, grandchildren included."""
    if capture_output:
        kwargs.setdefault("stdout", subprocess.PIPE)
        kwargs.setdefault("stderr", subprocess.PIPE)
    proc = popen(cmd, text=text, stdin=subprocess.PIPE if input is not None else None, **kwargs)
    try:
        out, err = proc.communicate(input, timeout=timeout)
    finally:
        kill_group(proc)
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


def kill_group(proc: subprocess.Popen) -> None:
    """SIGKILL the process group of `proc` (a no-op once every member has exited) and reap `proc`."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        pass
    if proc in _LIVE:
        _LIVE.remove(proc)


def kill_all() -> None:
    for proc in list(_LIVE):
        kill_group(proc)


atexit.register(kill_all)
