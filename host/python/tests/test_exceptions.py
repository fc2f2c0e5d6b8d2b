"""Remote exceptions as local ones; limits and failures as PushyErrors
(after Pushy's unittest/ and RPyC's test_classic)."""

from __future__ import annotations

import traceback

import pytest

import pushy


def test_a_remote_key_error_is_a_key_error(con):
    with pytest.raises(KeyError) as caught:
        con.eval("{}['missing']")
    error = caught.value
    assert type(error) is KeyError
    assert error.args == ("missing",)
    assert "KeyError: 'missing'" in error.remote_traceback
    assert "{}['missing']" in error.remote_traceback
    shown = "".join(traceback.format_exception(type(error), error, error.__traceback__))
    # Python 3.11+ prints the remote traceback with the exception.
    import sys
    if sys.version_info >= (3, 11):
        assert "Remote traceback" in shown


def test_builtin_exceptions_keep_their_class_and_arguments(con):
    cases = {
        "1 / 0": ZeroDivisionError,
        "int('x')": ValueError,
        "[][1]": IndexError,
        "undefined_name": NameError,
        "open('/tmp/nothing-here')": FileNotFoundError,
        "len(5)": TypeError,
        "next(iter([]))": StopIteration,
        "__import__('nothing_such')": ModuleNotFoundError,
    }
    for source, kind in cases.items():
        with pytest.raises(kind) as caught:
            con.eval(source)
        assert type(caught.value) is kind, source
    with pytest.raises(OSError) as caught:
        con.eval("open('/tmp/nothing-here')")
    assert caught.value.errno == 2 and caught.value.filename == "/tmp/nothing-here"
    with pytest.raises(SyntaxError):
        con.execute("def (")


def test_a_user_defined_exception_is_a_remote_error(con):
    con.execute("class Custom(Exception):\n    pass\nclass Invalid(ValueError):\n    pass")
    with pytest.raises(pushy.RemoteError) as caught:
        con.execute("raise Custom('bad thing')")
    error = caught.value
    assert error.type_name == "__main__.Custom"
    assert error.message == "bad thing"
    assert "raise Custom('bad thing')" in error.remote_traceback
    assert "Custom: bad thing" in str(error)
    assert pushy.is_proxy(error.remote_exception)
    # Caught by its nearest builtin base too.
    with pytest.raises(ValueError) as caught:
        con.execute("raise Invalid('no')")
    assert isinstance(caught.value, pushy.RemoteError)
    assert caught.value.type_name == "__main__.Invalid"


def test_an_exception_group_is_a_remote_error_naming_it(con):
    # asyncio.TaskGroup raises these; its sub-exceptions stay remote.
    with pytest.raises(pushy.RemoteError) as caught:
        con.execute("raise ExceptionGroup('two failed', [ValueError(1), KeyError(2)])")
    assert caught.value.type_name == "builtins.ExceptionGroup"
    assert "two failed" in str(caught.value)
    assert pushy.is_proxy(caught.value.remote_exception)
    assert con.eval("1 + 1") == 2


def test_text_with_lone_surrogates_reads_back_exactly(con):
    text = con.eval("b'bad \\xff byte'.decode('utf-8', 'surrogateescape')")
    assert str(text) == "bad \udcff byte"
    assert repr(text) == repr("bad \udcff byte")
    with pytest.raises(ValueError) as caught:
        con.execute("raise ValueError(b'x\\xff'.decode('utf-8', 'surrogateescape'))")
    assert "x" in str(caught.value)  # str() raised TypeError before


def test_the_session_goes_on_after_an_exception(con):
    with pytest.raises(ZeroDivisionError):
        con.eval("1 / 0")
    assert con.eval("1 + 1") == 2


def test_time_limit(connect):
    con = connect(timeout=1)
    assert con.eval("sum(range(1000))") == 499500  # obeyed
    with pytest.raises(pushy.TimeLimitExceeded) as caught:
        con.execute("while True:\n    pass")
    assert caught.value.session_ended
    assert isinstance(caught.value, TimeoutError)
    with pytest.raises(pushy.SessionTerminated):
        con.eval("1")


def test_time_limit_while_sleeping(connect):
    con = connect(timeout=0.5)
    with pytest.raises(pushy.TimeLimitExceeded):
        con.modules.time.sleep(30)


def test_memory_limit(connect):
    con = connect(memory_mib=64)
    assert len(con.eval("bytearray(8 << 20)")) == 8 << 20  # obeyed
    with pytest.raises(MemoryError) as caught:
        con.eval("bytearray(200 << 20)")
    assert isinstance(caught.value, pushy.MemoryLimitExceeded)


def test_os_exit_ends_the_session(con):
    with pytest.raises(pushy.SessionExited) as caught:
        con.execute("import os\nos._exit(3)")
    assert caught.value.status == 3


def test_a_wrong_token_is_refused(daemon, tmp_path):
    wrong = tmp_path / "token"
    wrong.write_text("not-the-token-at-all-0000\n")
    wrong.chmod(0o600)
    with pytest.raises(pushy.AuthenticationFailed):
        pushy.connect(daemon.url, token_file=wrong)
    with pytest.raises(pushy.ConnectError):
        pushy.connect("daemon:127.0.0.1:1", token_file=daemon.token_file)


def test_a_daemon_client_cannot_mount_or_preload(daemon, tmp_path):
    for options in ({"path": [tmp_path]}, {"preload": ["json"]}, {"mounts": [(tmp_path, "/data")]}):
        with pytest.raises(ValueError):
            pushy.connect(daemon.url, token_file=daemon.token_file, **options)


def test_an_interrupt_from_another_thread(con):
    import threading

    timer = threading.Timer(0.5, con.interrupt)
    timer.start()
    with pytest.raises(pushy.Interrupted):
        con.execute("while True:\n    pass")
    timer.join()
    with pytest.raises(pushy.SessionTerminated):
        con.eval("1")


def test_ctrl_c_interrupts_a_long_call(con):
    import os
    import signal
    import threading

    timer = threading.Timer(0.5, os.kill, (os.getpid(), signal.SIGINT))
    timer.start()
    with pytest.raises(KeyboardInterrupt):
        con.modules.time.sleep(20)
    timer.join()
    with pytest.raises(pushy.PushyError):
        con.eval("1")
