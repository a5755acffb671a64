"""Holding SIGINT / SIGTERM back while a few file operations must finish together (a checkpoint's rename and the
pruning of older ones): a signal that arrives meanwhile is delivered right after, to whatever handler was in place.

Without this, a second Ctrl-C (which aborts a run with KeyboardInterrupt) landing inside `shutil.rmtree` of an old
checkpoint left a directory named like a complete checkpoint but without its trainer_state.pt, which `--resume auto`
then picked up.
"""
from __future__ import annotations

import contextlib
import signal
import threading
from typing import Any, Iterator

DEFERRED = (signal.SIGINT, signal.SIGTERM)


def signal_name(signum: int) -> str:
    """'SIGTERM' for 15; the number for a signal Python has no name for."""
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


@contextlib.contextmanager
def deferred_signals() -> Iterator[list[int]]:
    """Within the block, SIGINT and SIGTERM are recorded instead of handled; on leaving it (normally or by an
    exception) the previous handlers come back and each recorded signal is raised again, in arrival order (a
    handler that raises ends the re-delivery).

    Yields the list of signals received so far. Outside the main thread (where Python cannot set handlers) it does
    nothing: signals are only ever delivered to the main thread's handlers anyway.
    """
    received: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield received
        return

    def hold(signum: int, frame: Any) -> None:
        received.append(signum)  # every one: a second Ctrl-C still means "abort" once the block is done

    previous = {s: signal.signal(s, hold) for s in DEFERRED}
    try:
        yield received
    finally:
        for s, handler in previous.items():
            signal.signal(s, signal.SIG_DFL if handler is None else handler)  # None: a handler set outside Python
        for s in received:
            signal.raise_signal(s)  # the restored handler runs now (a KeyboardInterrupt, the trainer's stop request)
