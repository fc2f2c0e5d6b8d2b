"""Test discovery and execution inside the sandbox, for `pushy test`.

`load` runs a test file as a module and lists its tests: unittest.TestCase
methods and plain top-level `test_*` functions (pytest style). `run` runs one
test by id, capturing its output, and explains bare `assert` failures with
the compared values. Each test is its own call, so a test that loops or
exhausts memory ends only itself; the host then reloads the file in a fresh
session for the next one.
"""

from __future__ import annotations

import ast
import contextlib
import io
import linecache
import sys
import time
import traceback
import types
import unittest
from typing import Any, Callable

_loaded: dict[str, Callable[[], tuple]] = {}


def _exit_status(code: Any) -> int:
    if code is None:
        return 0
    if isinstance(code, int):
        return code
    return 1


def load(source: str, filename: str, module_name: str) -> tuple:
    """('tests', names, out, err) | ('script', status, out, err) | ('error', traceback, out, err)."""
    _loaded.clear()
    module = types.ModuleType(module_name)
    module.__file__ = filename
    sys.modules[module_name] = module
    linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
    out, err = io.StringIO(), io.StringIO()
    status = 0
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            exec(compile(source, filename, "exec", dont_inherit=True), module.__dict__)
    except SystemExit as exit_request:
        status = _exit_status(exit_request.code)
    except BaseException as exc:  # noqa: BLE001 - reported as the file's error
        return ("error", _format(exc), out.getvalue(), err.getvalue())
    names = []
    loader = unittest.TestLoader()
    for name, value in list(vars(module).items()):
        if isinstance(value, type) and issubclass(value, unittest.TestCase) \
                and value.__module__ == module_name:
            for method in loader.getTestCaseNames(value):
                test_id = f"{name}.{method}"
                names.append(test_id)
                _loaded[test_id] = _case_runner(value, method)
        elif isinstance(value, types.FunctionType) and name.startswith("test") \
                and value.__module__ == module_name:
            names.append(name)
            _loaded[name] = _function_runner(value)
    if not names:
        return ("script", status, out.getvalue(), err.getvalue())
    return ("tests", tuple(names), out.getvalue(), err.getvalue())


def run(test_id: str) -> tuple:
    """(outcome, message, traceback, stdout, stderr, seconds); outcome is
    passed, failed, error, memory or skipped."""
    runner = _loaded[test_id]
    out, err = io.StringIO(), io.StringIO()
    started = time.perf_counter()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        outcome, message, text = runner()
    return (outcome, message, text, out.getvalue(), err.getvalue(), time.perf_counter() - started)


def _case_runner(cls: type, method: str) -> Callable[[], tuple]:
    def run_case() -> tuple:
        result = unittest.TestResult()
        cls(method).run(result)
        if result.skipped:
            return ("skipped", result.skipped[0][1], "")
        if result.failures:
            text = result.failures[0][1]
            return ("failed", _exception_line(text), text)
        if result.errors:
            text = result.errors[0][1]
            kind = "memory" if _exception_line(text).startswith("MemoryError") else "error"
            return (kind, _exception_line(text), text)
        if result.unexpectedSuccesses:
            return ("failed", "unexpected success", "")
        return ("passed", "", "")
    return run_case


def _function_runner(function: Callable[[], Any]) -> Callable[[], tuple]:
    def run_function() -> tuple:
        try:
            function()
        except unittest.SkipTest as skip:
            return ("skipped", str(skip), "")
        except AssertionError as failure:
            return ("failed", _explain(failure), _format(failure))
        except MemoryError as exhausted:
            return ("memory", "MemoryError", _format(exhausted))
        except BaseException as exc:  # noqa: BLE001 - the test's own error
            return ("error", f"{type(exc).__name__}: {exc}", _format(exc))
        return ("passed", "", "")
    return run_function


def _exception_line(text: str) -> str:
    """The `Type: message` line of a formatted traceback."""
    for line in text.splitlines():
        if line and not line.startswith((" ", "Traceback (most recent call last)")):
            return line
    return text.strip().splitlines()[-1] if text.strip() else ""


def _format(exc: BaseException) -> str:
    tb = exc.__traceback__
    # Skip this module's own frames.
    while tb is not None and tb.tb_frame.f_code.co_filename == __file__:
        tb = tb.tb_next
    return "".join(traceback.format_exception(type(exc), exc, tb))


def _explain(failure: AssertionError) -> str:
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
