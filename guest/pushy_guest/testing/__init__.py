"""Test discovery and execution inside the sandbox, for `pushy test`.

`load` runs a test file as a module and lists its tests: unittest.TestCase
methods, pytest-style `class Test*:` methods (a fresh instance per test) and
plain top-level `test_*` functions. `run` runs one test by id, capturing its
output, and explains bare `assert` failures with the compared values. Each
test is its own call, so a test that loops or exhausts memory ends only
itself; the host then reloads the file in a fresh session for the next one.

Fixtures run as unittest and pytest run them: `setUpModule`/`setup_module`
before the file's first test, `setUpClass`/`setup_class` before a class's
first test, their teardowns when the next test belongs elsewhere or at
`finish`; a fresh session (after a reload) sets them up again. A fixture that
fails makes the tests it guards errors. `async def` tests run with asyncio
(the sandbox's loop, `pushy_guest.eventloop`; were it unable to start, they
would be errors that say why); generator tests are errors: nothing is
reported as passed without having run.

The host imports this package on demand (it is not pre-imported into every
session). Here: collection and the three calls the host makes (`load`, `run`,
`finish`); the rest in
  fixtures   module and class fixtures: when they are set up and torn down
  bodies     how each kind of test body runs (unittest, pytest-style, function)
  verdicts   what a test came to: outcome, captured output, failure explained
"""

from __future__ import annotations

import contextlib
import io
import linecache
import sys
import types
import unittest
from typing import Any, Callable, Optional

from .bodies import case_body, function_body, pytest_method_body, refusal
from .fixtures import Fixtures
from .verdicts import Result, Verdict, captured, format_exception


class _Test:
    """One collected test: the class whose fixtures guard it (None for a
    module-level function) and how to run its body."""

    __slots__ = ("scope", "body")

    def __init__(self, scope: Optional[type], body: Callable[[], Verdict]) -> None:
        self.scope = scope
        self.body = body


_tests: dict[str, _Test] = {}
_fixtures = Fixtures()


def _script_status(code: Any) -> int:
    """What a file without tests reports when `SystemExit(code)` ends its
    loading: an int as given, None 0, anything else 1. Not
    `dispatch.exit_status`, the status python3 gives the OS: a test that
    asks for a nonzero status fails, even one a shell would see as 0 (256)."""
    if code is None:
        return 0
    if isinstance(code, int):
        return code
    return 1


def load(source: str, filename: str, module_name: str) -> tuple:
    """('tests', names, out, err) | ('script', status, out, err) | ('error', traceback, out, err)."""
    global _fixtures
    _tests.clear()
    module = types.ModuleType(module_name)
    module.__file__ = filename
    sys.modules[module_name] = module
    _fixtures = Fixtures(module)
    linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
    out, err = io.StringIO(), io.StringIO()
    status = 0
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            exec(compile(source, filename, "exec", dont_inherit=True), module.__dict__)
    except SystemExit as exit_request:
        status = _script_status(exit_request.code)
    except BaseException as exc:  # noqa: BLE001 - reported as the file's error
        return ("error", format_exception(exc), out.getvalue(), err.getvalue())
    names: list[str] = []
    loader = unittest.TestLoader()
    for name, value in list(vars(module).items()):
        if getattr(value, "__module__", None) != module_name:
            continue
        if isinstance(value, type) and issubclass(value, unittest.TestCase):
            for method in loader.getTestCaseNames(value):
                _collect(names, f"{name}.{method}", _Test(value, case_body(value, method)))
        elif isinstance(value, type) and name.startswith("Test"):
            methods = _pytest_methods(value)
            if not methods:
                continue
            if value.__init__ is not object.__init__ or value.__new__ is not object.__new__:
                reason = (f"cannot collect test class {name!r} because it has a "
                          "__init__ or __new__ constructor (as pytest): its tests did not run")
                _collect(names, name, _Test(None, refusal(reason)))
                continue
            for method in methods:
                _collect(names, f"{name}.{method}", _Test(value, pytest_method_body(value, method)))
        elif isinstance(value, types.FunctionType) and name.startswith("test"):
            _collect(names, name, _Test(None, function_body(value, module)))
    if not names:
        return ("script", status, out.getvalue(), err.getvalue())
    return ("tests", tuple(names), out.getvalue(), err.getvalue())


def _collect(names: list[str], test_id: str, test: _Test) -> None:
    names.append(test_id)
    _tests[test_id] = test


def _pytest_methods(cls: type) -> list[str]:
    """`test*` callables of a pytest-style class, base classes' first (as pytest)."""
    seen: set[str] = set()
    per_class: list[list[str]] = []
    for klass in cls.__mro__:
        if klass is object:
            continue
        found = []
        for name in list(vars(klass)):
            if name in seen:
                continue
            seen.add(name)
            if name.startswith("test") and callable(getattr(cls, name, None)):
                found.append(name)
        per_class.append(found)
    return [name for found in reversed(per_class) for name in found]


def run(test_id: str) -> tuple:
    """The results of one test: first those of fixtures torn down before it
    (only when they failed), then the test's own; each is
    (name, outcome, message, traceback, stdout, stderr, seconds)."""
    test = _tests[test_id]
    results: list[Result] = []
    if _fixtures.current is not None and _fixtures.current is not test.scope:
        results.extend(_fixtures.teardown_class())
    results.append(captured(test_id, lambda: _fixtures.guard(test.scope, test.body)))
    return tuple(results)


def finish() -> tuple:
    """Tears down what is still set up (the last class, the module): the
    results of those that failed, as `run` gives them."""
    return tuple(_fixtures.finish())
