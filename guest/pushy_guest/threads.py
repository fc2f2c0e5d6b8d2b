"""Locks for an interpreter without threads.

WASI CPython has no threads: its C lock, asked to wait for a lock that is
held, returns at once when given a timeout and aborts the instance (a trap)
without one. No other thread can ever release a held lock, so waiting on
one means waiting out the timeout — `threading.Event().wait(5)` takes 5 s
and returns False — or, without a timeout, a deadlock, which python3 would
hang on and the call's time limit ends here. `time.sleep` is bounded by
that limit on the host, so every wait below is too.
"""

from __future__ import annotations

import time
from typing import Any


def _wait(timeout: float | None) -> None:
    if timeout is None:
        while True:
            time.sleep(3600)
    time.sleep(timeout)


class Lock:
    """`threading.Lock` / `_thread.allocate_lock()` in a single thread."""

    __slots__ = ("_held", "__weakref__")

    def __init__(self) -> None:
        self._held = False

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        if not blocking and timeout != -1:
            raise ValueError("can't specify a timeout for a non-blocking call")
        if timeout < 0 and timeout != -1:
            raise ValueError("timeout value must be a non-negative number")
        if not self._held:
            self._held = True
            return True
        if not blocking:
            return False
        _wait(None if timeout == -1 else timeout)
        return False

    def release(self) -> None:
        if not self._held:
            raise RuntimeError("release unlocked lock")
        self._held = False

    def locked(self) -> bool:
        return self._held

    acquire_lock = acquire
    release_lock = release
    locked_lock = locked

    def __enter__(self) -> bool:
        return self.acquire()

    def __exit__(self, *exc_info: Any) -> None:
        self.release()

    def _at_fork_reinit(self) -> None:
        self._held = False

    def __repr__(self) -> str:
        state = "locked" if self._held else "unlocked"
        return f"<{state} {type(self).__module__}.Lock object at {id(self):#x}>"


def install() -> None:
    """New locks made by `threading`, `_thread` and code that uses them are
    `Lock`s (locks made before, in the snapshot, are never waited on)."""
    import _thread
    import queue
    import threading
    _thread.allocate_lock = Lock
    _thread.LockType = Lock
    threading.Lock = Lock
    threading._allocate_lock = Lock
    # The C SimpleQueue's timed get returns at once; the pure-Python one
    # waits on a threading.Semaphore, and so on these locks.
    queue.SimpleQueue = queue._PySimpleQueue
