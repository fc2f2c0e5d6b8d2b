"""Module and class fixtures, run as unittest and pytest run them: set up
before the first test they guard, torn down when the next test belongs
elsewhere or when the file is finished."""

from __future__ import annotations

import traceback
import types
import unittest
from typing import Any, Callable, Optional

from .verdicts import PASSED, Result, Verdict, attempt, captured, first_problem


class Fixtures:
    """Module and class fixture state of this session's loaded file."""

    def __init__(self, module: Optional[types.ModuleType] = None) -> None:
        self.module = module
        # None: not set up yet; PASSED: set up; else why setting up failed.
        self.module_state: Optional[Verdict] = None
        # The class set up last, until it is torn down.
        self.current: Optional[type] = None
        # Why the current class's setup failed (None: it did not).
        self.class_problem: Optional[Verdict] = None

    def guard(self, scope: Optional[type], body: Callable[[], Verdict]) -> Verdict:
        """Runs a test body of `scope` (its class, None for a function)
        once the fixtures that guard it are set up."""
        problem = self._setup_module()
        if problem is not None:
            return _guarded_by("setUpModule", problem)
        if scope is not None:
            if self.current is not scope:
                self._setup_class(scope)
            if self.class_problem is not None:
                return _guarded_by("setUpClass", self.class_problem)
        return body()

    def teardown_class(self) -> list[Result]:
        """Tears the current class down (unless its setup failed or it is
        skipped): its result when that failed."""
        cls = self.current
        failed_setup = self.class_problem is not None
        self.current, self.class_problem = None, None
        if cls is None or failed_setup or getattr(cls, "__unittest_skip__", False):
            return []

        def teardown() -> Verdict:
            if issubclass(cls, unittest.TestCase):
                torn = attempt(cls.tearDownClass)
                cls.doClassCleanups()
                return first_problem(torn, *_class_cleanup_problems(cls))
            hook = getattr(cls, "teardown_class", None)
            return PASSED if hook is None else attempt(lambda: call_optional(hook, cls))

        result = captured(f"{cls.__name__}.tearDownClass", teardown)
        return [result] if result[1] != "passed" else []

    def finish(self) -> list[Result]:
        """Tears down what is still set up (the last class, the module): the
        results of those that failed."""
        results: list[Result] = []
        if self.current is not None:
            results.extend(self.teardown_class())
        if self.module_state is PASSED:
            module = self.module
            name = module.__name__ if module is not None else "module"
            result = captured(f"{name}.tearDownModule", self._teardown_module)
            if result[1] != "passed":
                results.append(result)
        self.module_state = None
        return results

    def _module_hook(self, *names: str) -> Optional[Callable[..., Any]]:
        for name in names:
            hook = getattr(self.module, name, None)
            if callable(hook):
                return hook
        return None

    def _setup_module(self) -> Optional[Verdict]:
        """Sets the module up once per session; why it failed, or None."""
        if self.module_state is None:
            hook = self._module_hook("setUpModule", "setup_module")
            state = PASSED if hook is None else attempt(lambda: call_optional(hook, self.module))
            if state is not PASSED:
                # As unittest: module cleanups run even when setUpModule failed.
                attempt(unittest.case.doModuleCleanups)
            self.module_state = state
        return None if self.module_state is PASSED else self.module_state

    def _teardown_module(self) -> Verdict:
        hook = self._module_hook("tearDownModule", "teardown_module")
        torn = PASSED if hook is None else attempt(lambda: call_optional(hook, self.module))
        return first_problem(torn, attempt(unittest.case.doModuleCleanups))

    def _setup_class(self, cls: type) -> None:
        self.current = cls
        self.class_problem = None
        if getattr(cls, "__unittest_skip__", False):
            return  # As unittest: each test reports the skip, no class fixture runs.
        if issubclass(cls, unittest.TestCase):
            problem = attempt(cls.setUpClass)
            if problem is not PASSED:
                cls.doClassCleanups()
                problem = first_problem(problem, *_class_cleanup_problems(cls))
        else:
            hook = getattr(cls, "setup_class", None)
            problem = PASSED if hook is None else attempt(lambda: call_optional(hook, cls))
        if problem is not PASSED:
            self.class_problem = problem


def call_optional(function: Callable[..., Any], argument: Any) -> Any:
    """Calls `function(argument)` if it takes an argument, else `function()`
    (pytest's xunit-style fixtures accept either)."""
    code = getattr(function, "__code__", None)
    if code is None:
        return function()
    count = code.co_argcount - (1 if isinstance(function, types.MethodType) else 0)
    return function(argument) if count > 0 else function()


def _guarded_by(fixture: str, problem: Verdict) -> Verdict:
    """A test that cannot run because `fixture` failed: skipped when it
    skipped, otherwise an error that says which fixture failed."""
    outcome, message, text = problem
    if outcome == "skipped":
        return problem
    return ("error", f"{fixture} failed: {message}", text)


def _class_cleanup_problems(cls: type) -> list[Verdict]:
    problems = []
    for kind, exc, tb in getattr(cls, "tearDown_exceptions", ()):
        problems.append(("error", f"{kind.__name__}: {exc}",
                         "".join(traceback.format_exception(kind, exc, tb))))
    return problems
