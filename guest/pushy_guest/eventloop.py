"""An asyncio event loop for an interpreter without threads or sockets.

The stock selector loop opens a self-pipe with `socket.socketpair()` so that
other threads and signal handlers can wake it; WASI denies sockets, so
`asyncio.run` failed before running anything. Here nothing can wake the loop
but its own timers: there are no threads and no signals. The loop therefore
does without a self-pipe, and every wait is the selector's `select(timeout)`,
a WASI poll that the host bounds by the call's time limit.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from asyncio import futures, unix_events
from typing import Any, Callable

_NO_SIGNALS = ("signal handlers are not supported in the pushy sandbox: "
               "WASI delivers no signals to the guest")


class WasiEventLoop(unix_events.SelectorEventLoop):
    """`asyncio.SelectorEventLoop` without a self-pipe.

    `run_in_executor(None, f)` runs `f` inline (it blocks the loop while it
    runs, as there is no thread to run it on) and returns a done future; an
    explicit `ThreadPoolExecutor` fails when it tries to start a thread.
    """

    def _make_self_pipe(self) -> None:
        # Attributes the base class reads when it tears down.
        self._ssock = None
        self._csock = None

    def _close_self_pipe(self) -> None:
        pass

    def _write_to_self(self) -> None:
        # Wakes a loop blocked in select() from another thread or a signal
        # handler; there is neither, so the running loop is never blocked
        # while someone else schedules a callback.
        pass

    def add_signal_handler(self, sig: int, callback: Callable[..., Any], *args: Any) -> None:
        raise NotImplementedError(_NO_SIGNALS)

    def remove_signal_handler(self, sig: int) -> bool:
        self._check_signal(sig)
        return False

    def run_in_executor(self, executor: Any, func: Callable[..., Any], *args: Any) -> asyncio.Future:
        if executor is not None or self._default_executor is not None:
            return super().run_in_executor(executor, func, *args)
        self._check_closed()
        if self._debug:
            self._check_callback(func, "run_in_executor")
        self._check_default_executor()
        # A concurrent future, as a thread pool's worker would fill, so that
        # results and exceptions reach the caller exactly as they would.
        done: concurrent.futures.Future = concurrent.futures.Future()
        done.set_running_or_notify_cancel()
        try:
            result = func(*args)
        except BaseException as exc:  # what ThreadPoolExecutor's worker catches
            done.set_exception(exc)
        else:
            done.set_result(result)
        return futures.wrap_future(done, loop=self)

    async def shutdown_default_executor(self, timeout: float | None = None) -> None:
        # The base class joins the executor from a helper thread.
        self._executor_shutdown_called = True
        if self._default_executor is not None:
            self._default_executor.shutdown(wait=True)


def install() -> None:
    """Every way of making a loop makes a `WasiEventLoop`: `asyncio.run`,
    `asyncio.Runner`, `new_event_loop()` and the policy's `new_event_loop()`
    (the policy class is patched, so a policy made before this is covered),
    and `asyncio.SelectorEventLoop` / `asyncio.EventLoop` by name
    (`IsolatedAsyncioTestCase.loop_factory` included)."""
    unix_events._UnixDefaultEventLoopPolicy._loop_factory = WasiEventLoop
    unix_events.SelectorEventLoop = WasiEventLoop
    unix_events.EventLoop = WasiEventLoop
    asyncio.SelectorEventLoop = WasiEventLoop
    asyncio.EventLoop = WasiEventLoop
