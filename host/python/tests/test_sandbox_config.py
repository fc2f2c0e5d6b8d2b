"""What the sandbox sees: path=, mounts=, preload=, and the limits given
to connect (the command line's flags, as keywords)."""

from __future__ import annotations

import pathlib

import pytest

import pushy


def local_target(target: str) -> bool:
    return not target.startswith("daemon:")


def test_path_puts_a_directory_on_sys_path(connect, target, tmp_path: pathlib.Path):
    if not local_target(target):
        pytest.skip("a daemon client cannot name this machine's files")
    (tmp_path / "mylib.py").write_text("def hello():\n    return 'hi from mylib'\n")
    con = connect(path=[tmp_path])
    assert con.modules.mylib.hello() == "hi from mylib"
    assert con.modules.mylib.__file__ == str(tmp_path / "mylib.py")
    with pytest.raises(ValueError):
        connect(path=[tmp_path / "missing"])


def test_mounts(connect, target, tmp_path: pathlib.Path):
    if not local_target(target):
        pytest.skip("a daemon client cannot name this machine's files")
    (tmp_path / "in.txt").write_text("from the host")
    con = connect(mounts=[(tmp_path, "/data")])
    assert con.eval("open('/data/in.txt').read()") == "from the host"
    con.execute("open('/data/out.txt', 'w').write('from the sandbox')")
    assert (tmp_path / "out.txt").read_text() == "from the sandbox"
    read_only = connect(mounts=[f"{tmp_path}:/ro:ro"])
    assert read_only.eval("open('/ro/in.txt').read()") == "from the host"
    with pytest.raises(OSError):
        read_only.execute("open('/ro/new.txt', 'w')")
    with pytest.raises(ValueError):
        connect(mounts=["no-guest-path"])


def test_preload(connect, target, tmp_path: pathlib.Path):
    if not local_target(target):
        pytest.skip("a daemon client cannot preload")
    (tmp_path / "heavy.py").write_text("import json\nLOADED = 42\n")
    con = connect(path=[tmp_path], preload=["heavy"])
    assert con.eval("__import__('sys').modules['heavy'].LOADED") == 42
    with pytest.raises(ValueError):
        connect(preload=["not a module name"])


def test_limits_are_keywords(connect):
    con = connect(timeout=30, memory_mib=256, output_limit_mib=1, scratch_mib=1)
    assert con.eval("1") == 1
    # The output limit: the rest is cut with a notice.
    con.execute("print('x' * (3 << 20))")
    # The scratch limit: /tmp is full past 1 MiB.
    with pytest.raises(OSError):
        con.execute("open('/tmp/big', 'wb').write(b'x' * (2 << 20))")


def test_a_memory_limit_too_small_for_the_sandbox(target, daemon):
    options = {"token_file": daemon.token_file} if target.startswith("daemon:") else {}
    # No session starts: the same class whichever host found it out.
    with pytest.raises(pushy.ConnectError):
        pushy.connect(target, memory_mib=1, **options)


@pytest.mark.parametrize("name", ["memory_mib", "output_limit_mib", "scratch_mib"])
@pytest.mark.parametrize("value", [-5, 2 ** 70])
def test_an_unusable_size_is_a_value_error_naming_it(target, daemon, name, value):
    options = {"token_file": daemon.token_file} if target.startswith("daemon:") else {}
    with pytest.raises(ValueError, match=name):
        pushy.connect(target, **{name: value}, **options)


def test_a_tiny_timeout_limits_the_calls_not_the_start(connect):
    con = connect(timeout=0.0001)
    with pytest.raises(pushy.TimeLimitExceeded, match="0.001 s"):
        con.execute("while True: pass")
