"""Ctrl-C at the few moments where it must wait: a SIGINT that arrives inside
:func:`sigint_deferred` is held (blocked, not lost) and raised as ``KeyboardInterrupt`` as the
block ends, so a step that must not be cut in half finishes first."""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator


@contextlib.contextmanager
def sigint_deferred() -> Iterator[None]:
    """Hold a Ctrl-C back until the block ends (only the main thread receives it, so other
    threads need no guard)."""
    if not hasattr(signal, "pthread_sigmask") or threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)
