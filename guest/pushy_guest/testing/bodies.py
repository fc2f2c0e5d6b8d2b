"""How each kind of collected test runs: a unittest.TestCase method, a
pytest-style method (a fresh instance, setup_method/teardown_method) and a
plain function (setup_function/teardown_function). A coroutine a test
returns runs with asyncio when its event loop can start here; a generator
is refused: its body never ran."""

from __future__ import annotations

import functools
import gc
import sys
import traceback
import types
import unittest
from typing import Any, Callable, Optional

from .fixtures import call_optional
from .verdicts import PASSED, NotRun, Verdict, as_fixture, exception_line, format_exception, verdict_of

# unittest leaves the frames of modules with this global out of the
# tracebacks it reports: here, the wrapper that settles a case's result.
__unittest = True


def refusal(reason: str) -> Callable[[], Verdict]:
    """The body of a test that cannot be collected: an error that says why."""
    def refuse() -> Verdict:
        return ("error", reason, "")
    return refuse


def case_body(cls: type, method: str) -> Callable[[], Verdict]:
    def run_case() -> Verdict:
        result = unittest.TestResult()
        case = cls(method)
        refused: list[str] = []
        async_case = sys.modules.get("unittest.async_case")
        isolated = async_case is not None and issubclass(cls, async_case.IsolatedAsyncioTestCase)
        skipped = getattr(cls, "__unittest_skip__", False) \
            or getattr(getattr(cls, method, None), "__unittest_skip__", False)
        if isolated and not skipped:
            problem = _event_loop_problem()
            if problem is not None:
                return ("error", f"{cls.__name__} is an IsolatedAsyncioTestCase, and asyncio's "
                        f"event loop cannot start in this sandbox ({problem}): "
                        f"{method} did not run", "")
        elif not isolated:
            # unittest calls a coroutine or generator method, warns and
            # passes; run the coroutine, refuse the generator.
            original = getattr(case, method)

            @functools.wraps(original)
            def settled() -> None:
                try:
                    _settle(original(), f"{cls.__name__}.{method}")
                except NotRun as why:
                    refused.append(str(why))
                    raise
            setattr(case, method, settled)
        case.run(result)
        if refused:
            return ("error", refused[0], "")
        if result.skipped:
            return ("skipped", result.skipped[0][1], "")
        if result.failures:
            text = result.failures[0][1]
            return ("failed", exception_line(text), text)
        if result.errors:
            text = result.errors[0][1]
            kind = "memory" if exception_line(text).startswith("MemoryError") else "error"
            return (kind, exception_line(text), text)
        if result.unexpectedSuccesses:
            return ("failed", "unexpected success", "")
        return PASSED
    return run_case


def pytest_method_body(cls: type, method: str) -> Callable[[], Verdict]:
    def run_method() -> Verdict:
        try:
            instance = cls()
            bound = getattr(instance, method)
        except BaseException as exc:  # noqa: BLE001 - the class's own error
            return ("error", f"{type(exc).__name__}: {exc}", format_exception(exc))
        setup = getattr(instance, "setup_method", None)
        teardown = getattr(instance, "teardown_method", None)
        return _around(
            bound, f"{cls.__name__}.{method}",
            None if setup is None else lambda: call_optional(setup, bound),
            None if teardown is None else lambda: call_optional(teardown, bound),
            "method")
    return run_method


def function_body(function: Callable[[], Any],
                  module: types.ModuleType) -> Callable[[], Verdict]:
    def run_function() -> Verdict:
        setup = getattr(module, "setup_function", None)
        teardown = getattr(module, "teardown_function", None)
        return _around(
            function, function.__name__,
            None if not callable(setup) else lambda: call_optional(setup, function),
            None if not callable(teardown) else lambda: call_optional(teardown, function),
            "function")
    return run_function


def _around(body: Callable[[], Any], name: str, setup: Optional[Callable[[], Any]],
            teardown: Optional[Callable[[], Any]], what: str) -> Verdict:
    """setup, the body (settled), teardown (if setup passed)."""
    if setup is not None:
        prepared = as_fixture(verdict_of(setup), f"setup_{what}")
        if prepared is not PASSED:
            return prepared
    verdict = verdict_of(lambda: _settle(body(), name))
    if teardown is not None:
        torn = as_fixture(verdict_of(teardown), f"teardown_{what}")
        if verdict is PASSED:
            verdict = torn
    return verdict


def _settle(result: Any, name: str) -> None:
    """What a test function returned: a coroutine is run to its end, a
    generator is refused (its body never ran)."""
    if isinstance(result, types.CoroutineType):
        _run_coroutine(result, name)
    elif isinstance(result, (types.GeneratorType, types.AsyncGeneratorType)):
        if isinstance(result, types.GeneratorType):
            result.close()
        raise NotRun(
            f"{name} is a generator function (a yield test): pushy test cannot run it "
            "(nor can pytest since 4.0); its body did not run")


_asyncio_problem: Optional[str] = None
_asyncio_probed = False


def _probe_event_loop() -> Optional[str]:
    try:
        import asyncio
        asyncio.new_event_loop().close()
    except Exception as exc:  # noqa: BLE001 - the reason is reported
        reason = f"{type(exc).__name__}: {exc}"
        frames = {frame.name for frame in traceback.extract_tb(exc.__traceback__)}
        if "_make_self_pipe" in frames:
            reason += "; its self-pipe needs socket.socketpair(), and the sandbox has no sockets"
        return reason
    return None


def _event_loop_problem() -> Optional[str]:
    """Why asyncio's event loop cannot start in this sandbox, or None."""
    global _asyncio_problem, _asyncio_probed
    if not _asyncio_probed:
        _asyncio_probed = True
        # The half-built loop complains when it is freed; that is no news.
        hook = sys.unraisablehook
        sys.unraisablehook = lambda unraisable: None
        try:
            _asyncio_problem = _probe_event_loop()
            gc.collect()
        finally:
            sys.unraisablehook = hook
    return _asyncio_problem


def _run_coroutine(coroutine: types.CoroutineType, name: str) -> None:
    problem = _event_loop_problem()
    if problem is not None:
        coroutine.close()
        raise NotRun(
            f"{name} is an async test, and asyncio's event loop cannot start in this "
            f"sandbox ({problem}): its body did not run")
    import asyncio
    asyncio.run(coroutine)
