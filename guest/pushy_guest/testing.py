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
when its event loop can start here (today it cannot: it needs a socket pair),
else they are errors that say why; generator tests are errors: nothing is
reported as passed without having run.
"""

from __future__ import annotations

import ast
import contextlib
import functools
import gc
import io
import linecache
import sys
import time
import traceback
import types
import unittest
from typing import Any, Callable, Optional

# (outcome, message, traceback): outcome is passed, failed, error, memory or skipped.
Verdict = tuple[str, str, str]
# (name, outcome, message, traceback, stdout, stderr, seconds)
Result = tuple[str, str, str, str, str, str, float]

_PASSED: Verdict = ("passed", "", "")


class _NotRun(Exception):
    """A test the runner cannot run; the message says why (an error, never a pass)."""


class _Test:
    """One collected test: the class whose fixtures guard it (None for a
    module-level function) and how to run its body."""

    __slots__ = ("scope", "body")

    def __init__(self, scope: Optional[type], body: Callable[[], Verdict]) -> None:
        self.scope = scope
        self.body = body


class _Fixtures:
    """Module and class fixture state of this session's loaded file."""

    def __init__(self, module: Optional[types.ModuleType] = None) -> None:
        self.module = module
        # None: not set up yet; _PASSED: set up; else why setting up failed.
        self.module_state: Optional[Verdict] = None
        # The class set up last, until it is torn down.
        self.current: Optional[type] = None
        # Why the current class's setup failed (None: it did not).
        self.class_problem: Optional[Verdict] = None


_tests: dict[str, _Test] = {}
_fixtures = _Fixtures()


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
    _fixtures = _Fixtures(module)
    linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
    out, err = io.StringIO(), io.StringIO()
    status = 0
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            exec(compile(source, filename, "exec", dont_inherit=True), module.__dict__)
    except SystemExit as exit_request:
        status = _script_status(exit_request.code)
    except BaseException as exc:  # noqa: BLE001 - reported as the file's error
        return ("error", _format(exc), out.getvalue(), err.getvalue())
    names: list[str] = []
    loader = unittest.TestLoader()
    for name, value in list(vars(module).items()):
        if getattr(value, "__module__", None) != module_name:
            continue
        if isinstance(value, type) and issubclass(value, unittest.TestCase):
            for method in loader.getTestCaseNames(value):
                _collect(names, f"{name}.{method}", _Test(value, _case_runner(value, method)))
        elif isinstance(value, type) and name.startswith("Test"):
            methods = _pytest_methods(value)
            if not methods:
                continue
            if value.__init__ is not object.__init__ or value.__new__ is not object.__new__:
                reason = (f"cannot collect test class {name!r} because it has a "
                          "__init__ or __new__ constructor (as pytest): its tests did not run")
                _collect(names, name, _Test(None, _refuse(reason)))
                continue
            for method in methods:
                _collect(names, f"{name}.{method}", _Test(value, _pytest_runner(value, method)))
        elif isinstance(value, types.FunctionType) and name.startswith("test"):
            _collect(names, name, _Test(None, _function_runner(value, module)))
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
        results.extend(_teardown_class())
    results.append(_captured(test_id, lambda: _with_fixtures(test)))
    return tuple(results)


def finish() -> tuple:
    """Tears down what is still set up (the last class, the module): the
    results of those that failed, as `run` gives them."""
    results: list[Result] = []
    if _fixtures.current is not None:
        results.extend(_teardown_class())
    if _fixtures.module_state is _PASSED:
        module = _fixtures.module
        name = module.__name__ if module is not None else "module"
        result = _captured(f"{name}.tearDownModule", _teardown_module)
        if result[1] != "passed":
            results.append(result)
    _fixtures.module_state = None
    return tuple(results)


def _captured(name: str, body: Callable[[], Verdict]) -> Result:
    out, err = io.StringIO(), io.StringIO()
    started = time.perf_counter()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        outcome, message, text = body()
    return (name, outcome, message, text, out.getvalue(), err.getvalue(),
            time.perf_counter() - started)


def _with_fixtures(test: _Test) -> Verdict:
    problem = _setup_module()
    if problem is not None:
        return _guarded_by("setUpModule", problem)
    if test.scope is not None:
        if _fixtures.current is not test.scope:
            _setup_class(test.scope)
        if _fixtures.class_problem is not None:
            return _guarded_by("setUpClass", _fixtures.class_problem)
    return test.body()


def _guarded_by(fixture: str, problem: Verdict) -> Verdict:
    """A test that cannot run because `fixture` failed: skipped when it
    skipped, otherwise an error that says which fixture failed."""
    outcome, message, text = problem
    if outcome == "skipped":
        return problem
    return ("error", f"{fixture} failed: {message}", text)


def _attempt(call: Callable[[], Any]) -> Verdict:
    """Runs a fixture: _PASSED, or why it failed (errors, whatever it raised)."""
    try:
        call()
    except unittest.SkipTest as skip:
        return ("skipped", str(skip), "")
    except BaseException as exc:  # noqa: BLE001 - a fixture's own error
        return ("error", f"{type(exc).__name__}: {exc}", _format(exc))
    return _PASSED


def _first_problem(*verdicts: Verdict) -> Verdict:
    for verdict in verdicts:
        if verdict[0] != "passed":
            return verdict
    return _PASSED


def _call_optional(function: Callable[..., Any], argument: Any) -> Any:
    """Calls `function(argument)` if it takes an argument, else `function()`
    (pytest's xunit-style fixtures accept either)."""
    code = getattr(function, "__code__", None)
    if code is None:
        return function()
    count = code.co_argcount - (1 if isinstance(function, types.MethodType) else 0)
    return function(argument) if count > 0 else function()


def _module_hook(*names: str) -> Optional[Callable[..., Any]]:
    module = _fixtures.module
    for name in names:
        hook = getattr(module, name, None)
        if callable(hook):
            return hook
    return None


def _setup_module() -> Optional[Verdict]:
    """Sets the module up once per session; why it failed, or None."""
    if _fixtures.module_state is None:
        hook = _module_hook("setUpModule", "setup_module")
        state = _PASSED if hook is None else _attempt(lambda: _call_optional(hook, _fixtures.module))
        if state is not _PASSED:
            # As unittest: module cleanups run even when setUpModule failed.
            _attempt(unittest.case.doModuleCleanups)
        _fixtures.module_state = state
    return None if _fixtures.module_state is _PASSED else _fixtures.module_state


def _teardown_module() -> Verdict:
    hook = _module_hook("tearDownModule", "teardown_module")
    torn = _PASSED if hook is None else _attempt(lambda: _call_optional(hook, _fixtures.module))
    return _first_problem(torn, _attempt(unittest.case.doModuleCleanups))


def _setup_class(cls: type) -> None:
    _fixtures.current = cls
    _fixtures.class_problem = None
    if getattr(cls, "__unittest_skip__", False):
        return  # As unittest: each test reports the skip, no class fixture runs.
    if issubclass(cls, unittest.TestCase):
        problem = _attempt(cls.setUpClass)
        if problem is not _PASSED:
            cls.doClassCleanups()
            problem = _first_problem(problem, *_class_cleanup_problems(cls))
    else:
        hook = getattr(cls, "setup_class", None)
        problem = _PASSED if hook is None else _attempt(lambda: _call_optional(hook, cls))
    if problem is not _PASSED:
        _fixtures.class_problem = problem


def _class_cleanup_problems(cls: type) -> list[Verdict]:
    problems = []
    for kind, exc, tb in getattr(cls, "tearDown_exceptions", ()):
        problems.append(("error", f"{kind.__name__}: {exc}",
                         "".join(traceback.format_exception(kind, exc, tb))))
    return problems


def _teardown_class() -> list[Result]:
    """Tears the current class down (unless its setup failed or it is
    skipped): its result when that failed."""
    cls = _fixtures.current
    failed_setup = _fixtures.class_problem is not None
    _fixtures.current, _fixtures.class_problem = None, None
    if cls is None or failed_setup or getattr(cls, "__unittest_skip__", False):
        return []

    def teardown() -> Verdict:
        if issubclass(cls, unittest.TestCase):
            torn = _attempt(cls.tearDownClass)
            cls.doClassCleanups()
            return _first_problem(torn, *_class_cleanup_problems(cls))
        hook = getattr(cls, "teardown_class", None)
        return _PASSED if hook is None else _attempt(lambda: _call_optional(hook, cls))

    result = _captured(f"{cls.__name__}.tearDownClass", teardown)
    return [result] if result[1] != "passed" else []


def _settle(result: Any, name: str) -> None:
    """What a test function returned: a coroutine is run to its end, a
    generator is refused (its body never ran)."""
    if isinstance(result, types.CoroutineType):
        _run_coroutine(result, name)
    elif isinstance(result, (types.GeneratorType, types.AsyncGeneratorType)):
        if isinstance(result, types.GeneratorType):
            result.close()
        raise _NotRun(
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
        raise _NotRun(
            f"{name} is an async test, and asyncio's event loop cannot start in this "
            f"sandbox ({problem}): its body did not run")
    import asyncio
    asyncio.run(coroutine)


def _refuse(reason: str) -> Callable[[], Verdict]:
    def refuse() -> Verdict:
        return ("error", reason, "")
    return refuse


def _case_runner(cls: type, method: str) -> Callable[[], Verdict]:
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
                except _NotRun as why:
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
            return ("failed", _exception_line(text), text)
        if result.errors:
            text = result.errors[0][1]
            kind = "memory" if _exception_line(text).startswith("MemoryError") else "error"
            return (kind, _exception_line(text), text)
        if result.unexpectedSuccesses:
            return ("failed", "unexpected success", "")
        return _PASSED
    return run_case


def _verdict(call: Callable[[], Any]) -> Verdict:
    """Runs a test body: _PASSED, failed (an assertion), skipped, memory or error."""
    try:
        call()
    except unittest.SkipTest as skip:
        return ("skipped", str(skip), "")
    except _NotRun as why:
        return ("error", str(why), "")
    except AssertionError as failure:
        return ("failed", _explain(failure), _format(failure))
    except MemoryError as exhausted:
        return ("memory", "MemoryError", _format(exhausted))
    except BaseException as exc:  # noqa: BLE001 - the test's own error
        return ("error", f"{type(exc).__name__}: {exc}", _format(exc))
    return _PASSED


def _as_fixture(verdict: Verdict, fixture: str) -> Verdict:
    """A setup or teardown that did not pass is an error of the test (as in
    pytest), even when it was an assertion."""
    outcome, message, text = verdict
    if outcome in ("passed", "skipped", "memory"):
        return verdict
    return ("error", f"{fixture} failed: {message}", text)


def _around(body: Callable[[], Any], name: str, setup: Optional[Callable[[], Any]],
            teardown: Optional[Callable[[], Any]], what: str) -> Verdict:
    """setup, the body (settled), teardown (if setup passed)."""
    if setup is not None:
        prepared = _as_fixture(_verdict(setup), f"setup_{what}")
        if prepared is not _PASSED:
            return prepared
    verdict = _verdict(lambda: _settle(body(), name))
    if teardown is not None:
        torn = _as_fixture(_verdict(teardown), f"teardown_{what}")
        if verdict is _PASSED:
            verdict = torn
    return verdict


def _pytest_runner(cls: type, method: str) -> Callable[[], Verdict]:
    def run_method() -> Verdict:
        try:
            instance = cls()
            bound = getattr(instance, method)
        except BaseException as exc:  # noqa: BLE001 - the class's own error
            return ("error", f"{type(exc).__name__}: {exc}", _format(exc))
        setup = getattr(instance, "setup_method", None)
        teardown = getattr(instance, "teardown_method", None)
        return _around(
            bound, f"{cls.__name__}.{method}",
            None if setup is None else lambda: _call_optional(setup, bound),
            None if teardown is None else lambda: _call_optional(teardown, bound),
            "method")
    return run_method


def _function_runner(function: Callable[[], Any],
                     module: types.ModuleType) -> Callable[[], Verdict]:
    def run_function() -> Verdict:
        setup = getattr(module, "setup_function", None)
        teardown = getattr(module, "teardown_function", None)
        return _around(
            function, function.__name__,
            None if not callable(setup) else lambda: _call_optional(setup, function),
            None if not callable(teardown) else lambda: _call_optional(teardown, function),
            "function")
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
