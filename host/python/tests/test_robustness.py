"""Calls that must end, whatever the other threads, the sandbox's code or
the host do: a callback waiting for another thread of the connection, a
session that ends inside a nested call, guest code that drops a nested
request, Ctrl-C while another thread's call runs, a host that stops
answering."""

from __future__ import annotations

import os
import pathlib
import signal
import subprocess
import sys
import threading
import time

import pytest

import pushy

from conftest import TOKEN, pushy_binary


def test_a_callback_may_wait_for_another_thread_using_the_connection(con):
    """The other thread's call nests inside the callback (it would wait
    for the callback's call to end otherwise: a deadlock)."""
    results = []

    def handed_off():
        worker = threading.Thread(target=lambda: results.append(con.eval("40 + 2")))
        worker.start()
        worker.join(20)
        return not worker.is_alive()

    assert con.eval("lambda f: f()")(handed_off) is True
    assert results == [42]
    assert con.eval("1 + 1") == 2


def test_the_other_threads_callbacks_run_on_that_thread(con):
    seen = []

    def where():
        seen.append(threading.current_thread().name)
        return len(seen)

    def handed_off():
        worker = threading.Thread(
            target=lambda: seen.append(con.eval("lambda f: f()")(where)), name="worker")
        worker.start()
        worker.join(20)
        return seen

    assert con.eval("lambda f: f()")(handed_off) == ["worker", 1]


def test_a_session_that_ends_inside_a_nested_call_ends_every_waiting_call(connect):
    con = connect(timeout=1)
    inner = []

    def loops():
        try:
            con.eval("exec('while True: pass')")
        except pushy.TimeLimitExceeded as error:
            inner.append(error)
            raise

    started = time.monotonic()
    with pytest.raises(pushy.TimeLimitExceeded):
        con.eval("lambda f: f()")(loops)
    assert time.monotonic() - started < 10
    assert len(inner) == 1
    with pytest.raises(pushy.PushyError):
        con.eval("1")


def test_guest_code_that_drops_a_nested_request_does_not_hang_it(con):
    """Sandboxed code driving the host's callback import itself, and
    returning while a callback's own request is pending: the request fails,
    the outer call returns."""
    failures = []

    def nested():
        try:
            return con.eval("2")
        except pushy.PushyError as error:
            failures.append(error)
            raise

    con.execute(
        "def drop(cb):\n"
        "    from wit_world.imports import host\n"
        "    session = cb._proxies._session\n"
        "    host.call_local(cb._id, session.encode_args(()), [])\n"
        "    return 'dropped'\n")
    assert con.eval("drop")(nested) == "dropped"
    assert len(failures) == 1
    assert "without answering" in str(failures[0])
    assert con.eval("1 + 1") == 2


def test_ctrl_c_while_another_threads_call_runs(con):
    """The main thread waits for the connection's call lock; Ctrl-C raises
    there at once (the other call ends with the session)."""
    outcome = []

    def long_call():
        try:
            con.execute("import time\nend = time.time() + 20\nwhile time.time() < end: pass")
            outcome.append("finished")
        except pushy.PushyError as error:
            outcome.append(type(error))

    worker = threading.Thread(target=long_call)
    worker.start()
    time.sleep(0.5)
    timer = threading.Timer(0.5, os.kill, (os.getpid(), signal.SIGINT))
    timer.start()
    started = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        con.eval("1")
    assert time.monotonic() - started < 3
    con.interrupt()
    worker.join(20)
    assert outcome and outcome[0] != "finished"


def _children() -> list[int]:
    me = os.getpid()
    return [int(pid) for pid in pathlib.Path(f"/proc/{me}/task/{me}/children").read_text().split()]


@pytest.fixture
def stopped_host():
    """A function that SIGSTOPs a process until the test ends."""
    stopped = []

    def stop(pid: int) -> None:
        os.kill(pid, signal.SIGSTOP)
        stopped.append(pid)

    yield stop
    for pid in stopped:
        try:
            os.kill(pid, signal.SIGCONT)
        except ProcessLookupError:
            pass  # killed meanwhile


def test_a_stopped_local_host_is_given_up_after_its_time_limit(stopped_host):
    before = set(_children())
    con = pushy.connect("local:", timeout=1)
    try:
        (child,) = set(_children()) - before
        assert con.eval("1 + 1") == 2
        stopped_host(child)
        started = time.monotonic()
        with pytest.raises(pushy.ConnectionClosed, match="did not answer"):
            con.eval("2 + 2")
        assert time.monotonic() - started < 15
    finally:
        con.close()


def test_a_stopped_daemon_is_given_up_after_its_time_limit(tmp_path, stopped_host):
    token = tmp_path / "token"
    token.write_text(TOKEN)
    token.chmod(0o600)
    daemon = subprocess.Popen(
        [str(pushy_binary()), "serve", "--listen", "127.0.0.1:0", "--token-file", str(token)],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        assert daemon.stderr is not None
        address = daemon.stderr.readline().split("listening on ", 1)[1].strip()
        con = pushy.connect(f"daemon:{address}", token_file=token, timeout=1)
        assert con.eval("1 + 1") == 2
        stopped_host(daemon.pid)
        started = time.monotonic()
        with pytest.raises(pushy.ConnectionClosed, match="did not answer"):
            con.eval("2 + 2")
        assert time.monotonic() - started < 15
        con.close()
    finally:
        daemon.kill()
        daemon.wait()


def test_ctrl_c_in_nested_callbacks_of_a_stopped_host_waits_one_grace(stopped_host):
    """Every nesting level gives up at the same moment, not one grace each."""
    before = set(_children())
    con = pushy.connect("local:")
    try:
        (child,) = set(_children()) - before

        def level(n: int):
            if n == 0:
                stopped_host(child)
                threading.Timer(0.3, os.kill, (os.getpid(), signal.SIGINT)).start()
                return con.eval("1")
            return con.eval("lambda f, n: f(n)")(level, n - 1)

        started = time.monotonic()
        with pytest.raises(KeyboardInterrupt):
            level(3)
        assert time.monotonic() - started < 9
    finally:
        con.close()


def test_a_request_past_the_message_limit_is_refused_and_the_session_goes_on(con):
    con.execute("kept = 'still here'")
    with pytest.raises(pushy.BadArgument, match="a message is at most"):
        con.eval("len")(b"x" * (270 << 20))
    assert con.eval("kept") == "still here"


def test_a_terminal_ctrl_c_reaching_the_local_host_is_left_to_the_caller():
    """A terminal's Ctrl-C goes to the whole process group: the local: host
    ignores it (no traceback), the caller's KeyboardInterrupt ends the call."""
    script = (
        "import os, signal, threading, pushy\n"
        "con = pushy.connect('local:')\n"
        "assert con.eval('1') == 1\n"
        "threading.Timer(0.5, os.killpg, (os.getpgid(0), signal.SIGINT)).start()\n"
        "try:\n"
        "    con.execute('while True: pass')\n"
        "except KeyboardInterrupt:\n"
        "    print('interrupted')\n"
        "con.close()\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=60, start_new_session=True)
    assert done.stdout.strip() == "interrupted", done.stderr
    assert "Traceback" not in done.stderr, done.stderr


def test_each_call_has_its_own_time_limit_nested_ones_too(connect):
    """A nested call (from a callback) has its own limit, and its time is
    the local side's for the call it is inside, as the callback's is."""
    con = connect(timeout=2)

    def nested():
        return con.eval("__import__('time').sleep(1.2) or 'nested'")

    outer = con.eval("lambda f: (__import__('time').sleep(1.2), f())[1]")
    assert outer(nested) == "nested"


def test_other_threads_calls_inside_a_callback_are_not_charged_to_it(connect):
    con = connect(timeout=2)
    results = {}

    def slow_callback():
        time.sleep(2.5)  # local time: not the call's
        return "local"

    outer = con.eval("lambda f: (__import__('time').sleep(1.2), f())[1]")
    worker = threading.Thread(target=lambda: results.update(a=outer(slow_callback)))
    worker.start()
    time.sleep(1.5)
    for name in "bc":
        results[name] = con.eval(f"__import__('time').sleep(0.5) or {name!r}")
    worker.join(20)
    assert results == {"a": "local", "b": "b", "c": "c"}


def test_values_past_the_limits_are_typed_errors_and_the_session_goes_on(con):
    deep = ()
    for _ in range(300):
        deep = (deep,)
    with pytest.raises(pushy.BadArgument, match="nested deeper"):
        con.eval("len")(deep)
    # The other way: the sandbox's builtin ValueError, no internal name.
    with pytest.raises(ValueError, match="nested deeper") as caught:
        con.eval("(lambda f: f(f, 300))(lambda f, n: (f(f, n - 1),) if n else ())")
    assert not isinstance(caught.value, pushy.RemoteError)
    assert con.eval("1 + 1") == 2


def test_a_deep_recursion_error_is_reported_promptly(connect):
    con = connect(timeout=20)
    con.execute("import sys\nsys.setrecursionlimit(50_000)\ndef down(n):\n    return down(n + 1)\n")
    started = time.monotonic()
    with pytest.raises(RecursionError):
        con.eval("down(0)")
    assert time.monotonic() - started < 10
