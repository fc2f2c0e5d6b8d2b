"""What one test or fixture came to: its verdict, the output it wrote, and
for a failure, the exception as text and the values a bare `assert`
compared."""

from __future__ import annotations

import ast
import contextlib
import io
import linecache
import os
import time
import traceback
import unittest
from typing import Any, Callable

# (outcome, message, traceback): outcome is passed, failed, error, memory or skipped.
Verdict = tuple[str, str, str]
# (name, outcome, message, traceback, stdout, stderr, seconds)
Result = tuple[str, str, str, str, str, str, float]

PASSED: Verdict = ("passed", "", "")

# Frames of the runner's own files are left out of tracebacks.
_RUNNER_DIR = os.path.dirname(__file__) + os.sep


class NotRun(Exception):
    """A test the runner cannot run; the message says why (an error, never a pass)."""


def captured(name: str, body: Callable[[], Verdict]) -> Result:
    out, err = io.StringIO(), io.StringIO()
    started = time.perf_counter()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        outcome, message, text = body()
    return (name, outcome, message, text, out.getvalue(), err.getvalue(),
            time.perf_counter() - started)


def attempt(call: Callable[[], Any]) -> Verdict:
    """Runs a fixture: PASSED, or why it failed (errors, whatever it raised)."""
    try:
        call()
    except unittest.SkipTest as skip:
        return ("skipped", str(skip), "")
    except BaseException as exc:  # noqa: BLE001 - a fixture's own error
        return ("error", f"{type(exc).__name__}: {exc}", format_exception(exc))
    return PASSED


def first_problem(*verdicts: Verdict) -> Verdict:
    for verdict in verdicts:
        if verdict[0] != "passed":
            return verdict
    return PASSED


def verdict_of(call: Callable[[], Any]) -> Verdict:
    """Runs a test body: PASSED, failed (an assertion), skipped, memory or error."""
    try:
        call()
    except unittest.SkipTest as skip:
        return ("skipped", str(skip), "")
    except NotRun as why:
        return ("error", str(why), "")
    except AssertionError as failure:
        return ("failed", explain(failure), format_exception(failure))
    except MemoryError as exhausted:
        return ("memory", "MemoryError", format_exception(exhausted))
    except BaseException as exc:  # noqa: BLE001 - the test's own error
        return ("error", f"{type(exc).__name__}: {exc}", format_exception(exc))
    return PASSED


def as_fixture(verdict: Verdict, fixture: str) -> Verdict:
    """A setup or teardown that did not pass is an error of the test (as in
    pytest), even when it was an assertion."""
    outcome, message, text = verdict
    if outcome in ("passed", "skipped", "memory"):
        return verdict
    return ("error", f"{fixture} failed: {message}", text)


def exception_line(text: str) -> str:
    """The `Type: message` line of a formatted traceback."""
    for line in text.splitlines():
        if line and not line.startswith((" ", "Traceback (most recent call last)")):
            return line
    return text.strip().splitlines()[-1] if text.strip() else ""


def format_exception(exc: BaseException) -> str:
    tb = exc.__traceback__
    # Skip the runner's own frames.
    while tb is not None and tb.tb_frame.f_code.co_filename.startswith(_RUNNER_DIR):
        tb = tb.tb_next
    return "".join(traceback.format_exception(type(exc), exc, tb))


def explain(failure: AssertionError) -> str:
    """For a bare `assert a == b`, the compared values (as pytest shows them)."""
    if failure.args:
        return f"AssertionError: {failure}"
    tb = failure.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    if tb is None:
        return "AssertionError"
    frame = tb.tb_frame
    line = linecache.getline(frame.f_code.co_filename, tb.tb_lineno).strip()
    try:
        statement = ast.parse(line).body[0]
    except (SyntaxError, IndexError):
        return f"AssertionError: {line}"
    if not isinstance(statement, ast.Assert):
        return f"AssertionError: {line}"
    test = statement.test
    if isinstance(test, ast.Compare) and len(test.ops) == 1:
        try:
            left = eval(compile(ast.Expression(test.left), "<assert>", "eval"),
                        frame.f_globals, frame.f_locals)
            right = eval(compile(ast.Expression(test.comparators[0]), "<assert>", "eval"),
                         frame.f_globals, frame.f_locals)
        except BaseException:  # noqa: BLE001 - re-evaluation is best effort
            return f"AssertionError: {line}"
        return f"AssertionError: {line}\n  left:  {left!r}\n  right: {right!r}"
    return f"AssertionError: {line}"
