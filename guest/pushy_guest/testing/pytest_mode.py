"""Real pytest inside the sandbox, for `pushy test` when the environment has
pytest: one test file per session, its tests one call each.

`load` configures pytest for one file (the project's root is mounted
read-only at its host path and is the working directory, on `sys.path` as
for `python -m pytest`; pytest finds its rootdir in there), collects it and
lists its node ids, as `pytest --collect-only` would (with `-k` and the
user's arguments applied). `run` runs one item through pytest's own
protocol (fixtures, marks, assertion rewriting, capture, setup and teardown
with the next item known), and `finish` ends the pytest session. A test
that ends the session (a time or memory limit) loses only itself: the host
loads the file again in a fresh session and goes on with the next item.

What the sandbox cannot do is set up here rather than left to fail: output
is captured at the `sys` level (no file descriptors to dup), the
faulthandler and cache plugins are off (no signals; the rootdir is
read-only), and no bytecode is written next to the sources.
"""

from __future__ import annotations

import io
import os
import sys
import time
from typing import Any, Optional

from . import bytecode

#: Arguments given to pytest before the user's.
SANDBOX_ARGS = (
    "-p", "no:cacheprovider",
    "-p", "no:faulthandler",
    "-p", "no:stepwise",
    "--capture=sys",
    # tmp_path under the session's private /tmp; without it pytest asks
    # os.getuid(), which WASI lacks.
    "--basetemp=/tmp/pytest",
    "-q",
)


class _Recorder:
    """A pytest plugin that keeps the reports of the item being run and the
    failed collection reports."""

    def __init__(self) -> None:
        self.reports: list[Any] = []
        self.collect_errors: list[Any] = []
        # A MemoryError in the item being run: what it left allocated (its
        # traceback holds its frames) would fail the tests after it.
        self.out_of_memory = False

    def pytest_runtest_makereport(self, item: Any, call: Any) -> None:
        if call.excinfo is not None and call.excinfo.errisinstance(MemoryError):
            self.out_of_memory = True

    def pytest_runtest_logreport(self, report: Any) -> None:
        self.reports.append(report)

    def pytest_collectreport(self, report: Any) -> None:
        if report.failed:
            self.collect_errors.append(report)


_state: dict[str, Any] = {}
_started_with: set[str] = set()


def load(path: Any, rootdir: str, args: tuple, pycache: Optional[str] = None) -> tuple:
    """('tests', node ids, out, err) | ('error', text, out, err).

    ``path``: the file, or a list of what to collect in it (node ids).

    ``pycache``: where the run's bytecode cache is mounted (read-only), used
    as ``sys.pycache_prefix``: modules, and test modules as pytest rewrote
    them, load from there when a writer session compiled them earlier (see
    ``bytecode``)."""
    sys.dont_write_bytecode = True
    if pycache is not None:
        sys.pycache_prefix = pycache
    # What the session started with (the snapshot's modules, ours among
    # them) was not compiled here.
    _started_with.update(sys.modules)
    os.chdir(rootdir)
    # As `python -m pytest` from the project's root: the root is importable.
    if rootdir not in sys.path:
        sys.path.insert(0, rootdir)
    out, err = io.StringIO(), io.StringIO()
    saved = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = out, err
    try:
        import pytest  # noqa: F401 - what the user's environment provides
        _share_failure_sources()
        from _pytest.config import _prepareconfig
        from _pytest.main import Session

        recorder = _Recorder()
        paths = [path] if isinstance(path, str) else list(path)
        arguments = [*SANDBOX_ARGS, *args, *paths]
        sys.argv = ["pytest", *arguments]  # argparse names itself from argv[0]
        config = _prepareconfig(arguments, plugins=[recorder])
        config._do_configure()
        session = Session.from_config(config)
        config.hook.pytest_sessionstart(session=session)
        config.hook.pytest_collection(session=session)
    except BaseException as exc:  # noqa: BLE001 - reported as the file's error
        sys.stdout, sys.stderr = saved
        import traceback
        text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
        return ("error", text, out.getvalue(), err.getvalue())
    finally:
        if (sys.stdout, sys.stderr) == (out, err):
            sys.stdout, sys.stderr = saved
    if recorder.collect_errors:
        text = "\n".join(report.longreprtext for report in recorder.collect_errors)
        return ("error", text, out.getvalue(), err.getvalue())
    items = list(session.items)
    _state.update(config=config, session=session, recorder=recorder, items=items,
                  index={item.nodeid: at for at, item in enumerate(items)})
    return ("tests", tuple(item.nodeid for item in items), out.getvalue(), err.getvalue())


def _share_failure_sources() -> None:
    """Lets every failure of the session share the parsed tree of a source
    file, as a failure's own entries already do: pytest parses the whole
    file for each failure it formats (to find the failing statement), which
    for a large test file in the sandbox's slower interpreter cost most of
    a second per failure. Keyed by the source text, so nothing changes but
    the time; left alone if this pytest is not shaped as expected."""
    try:
        from _pytest._code import code, source
    except ImportError:
        return
    original = getattr(source, "getstatementrange_ast", None)
    if original is None or getattr(original, "_pushy_shared", False):
        return
    trees: dict[str, Any] = {}

    def getstatementrange_ast(lineno, src, assertion=False, astnode=None):
        if astnode is None:
            text = str(src)
            astnode = trees.get(text)
            if astnode is None:
                result = original(lineno, src, assertion, None)
                if len(trees) >= 32:
                    trees.clear()
                trees[text] = result[0]
                return result
        return original(lineno, src, assertion, astnode)

    getstatementrange_ast._pushy_shared = True  # type: ignore[attr-defined]
    source.getstatementrange_ast = getstatementrange_ast
    if getattr(code, "getstatementrange_ast", None) is original:
        code.getstatementrange_ast = getstatementrange_ast


def _message(report: Any) -> str:
    longrepr = report.longrepr
    if isinstance(longrepr, tuple) and len(longrepr) == 3:
        return str(longrepr[2])  # a skip: (path, line, reason)
    crash = getattr(longrepr, "reprcrash", None)
    if crash is not None:
        return str(crash.message)
    text = report.longreprtext.strip()
    return text.splitlines()[-1] if text else ""


def _result(name: str, outcome: str, reports: list, message: str, traceback: str) -> tuple:
    last = reports[-1]
    if traceback and not traceback.endswith("\n"):
        traceback += "\n"
    seconds = float(sum(getattr(r, "duration", 0.0) for r in reports))
    return (name, outcome, message, traceback, last.capstdout, last.capstderr, seconds)


def run(nodeid: str) -> tuple:
    """The results of one item: (name, outcome, message, traceback,
    stdout, stderr, seconds) for the test, and one more for a teardown
    that failed (pytest's "error")."""
    items = _state["items"]
    at = _state["index"][nodeid]
    item = items[at]
    following: Optional[Any] = items[at + 1] if at + 1 < len(items) else None
    recorder = _state["recorder"]
    recorder.reports.clear()
    recorder.out_of_memory = False
    started = time.monotonic()
    item.config.hook.pytest_runtest_protocol(item=item, nextitem=following)
    reports = [r for r in recorder.reports if r.nodeid == nodeid] or list(recorder.reports)
    if not reports:
        return ((nodeid, "error", "pytest ran no phase of this test", "", "", "",
                 time.monotonic() - started),)
    by_phase = {r.when: r for r in reports}
    setup, call, teardown = (by_phase.get(when) for when in ("setup", "call", "teardown"))
    results = []
    if setup is not None and setup.failed:
        results.append(_result(nodeid, "error", reports, _message(setup), setup.longreprtext))
    elif setup is not None and setup.skipped:
        results.append(_result(nodeid, "skipped", reports, _message(setup), ""))
    elif call is not None and call.failed:
        results.append(_result(nodeid, "failed", reports, _message(call), call.longreprtext))
    elif call is not None and call.skipped:
        # A skip in the test's body, or an expected failure (xfail).
        reason = getattr(call, "wasxfail", None)
        message = f"xfail: {reason}" if reason is not None else _message(call)
        results.append(_result(nodeid, "skipped", reports, message, ""))
    elif call is not None:
        results.append(_result(nodeid, "passed", reports, "", ""))
    else:
        results.append(_result(nodeid, "error", reports, "the test did not run", ""))
    if teardown is not None and teardown.failed:
        results.append(_result(f"{nodeid} (teardown)", "error", reports, _message(teardown),
                               teardown.longreprtext))
    if recorder.out_of_memory:
        # The host goes on with the file in a fresh session.
        results = [(r[0], "memory", *r[2:]) if r[1] in ("failed", "error") else r
                   for r in results]
    return tuple(results)


def finish() -> tuple:
    """Ends the pytest session (its fixtures were torn down with the last
    item run); nothing to report."""
    session, config = _state.get("session"), _state.get("config")
    if session is not None:
        try:
            config.hook.pytest_sessionfinish(session=session, exitstatus=0)
        finally:
            config._ensure_unconfigure()
    _state.clear()
    return ()


def uncached() -> tuple:
    """The source files this session compiled because the bytecode cache
    had nothing for them: ``(path, kind)`` pairs, ``kind`` ``"plain"`` or
    ``"pytest"`` (a module pytest rewrote). Only with a cache prefix set."""
    if not sys.pycache_prefix:
        return ()
    return bytecode.uncached(module for name, module in list(sys.modules.items())
                             if name not in _started_with)
