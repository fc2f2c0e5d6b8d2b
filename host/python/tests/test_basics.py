"""Pushy 0.5's API: connect, modules, eval, execute, compile, files, close
(after Pushy's unittest/ and RPyC's test_classic)."""

from __future__ import annotations

import pathlib

import pytest

import pushy


def test_eval_execute_and_the_main_namespace(con):
    assert con.eval("1 + 2") == 3
    con.execute("x = 5")
    assert con.eval("x * 2") == 10
    assert con.namespace["x"] == 5


def test_modules_are_imported_on_first_use_and_cached(con):
    pid = con.modules.os.getpid()
    assert isinstance(pid, int)
    assert con.modules.os is con.modules.os
    assert con.modules["os.path"].join("a", "b") == "a/b"
    assert con.modules.sys.version_info[:2] == (3, 14)


def test_submodules_import_on_attribute_access(con):
    document = con.modules.xml.dom.minidom.parseString("<a><b/></a>")
    assert document.documentElement.tagName == "a"
    # A package whose submodule nobody imported yet.
    assert con.modules.email.headerregistry.Address is not None


def test_a_missing_module_or_attribute_is_the_builtin_error(con):
    with pytest.raises(ModuleNotFoundError):
        con.modules.no_such_module_here
    with pytest.raises(AttributeError):
        con.modules.os.no_such_attribute
    assert not hasattr(con.modules.os, "no_such_attribute")
    assert hasattr(con.modules.os, "getcwd")


def test_immutable_values_come_by_value(con):
    assert con.eval("None") is None
    assert con.eval("True") is True
    assert con.eval("2 ** 100") == 2 ** 100
    assert con.eval("-(2 ** 70)") == -(2 ** 70)
    assert con.eval("1.5") == 1.5
    assert con.eval("'héllo'") == "héllo"
    assert con.eval("b'\\x00\\xff'") == b"\x00\xff"
    assert con.eval("(1, ('a', None), b'')") == (1, ("a", None), b"")
    value = con.eval("[1, 2]")
    assert pushy.is_proxy(value)


def test_ints_past_the_decimal_digit_limit_cross_both_ways(con):
    """Past Python's 4300-digit limit for int <-> str (both sides have it)."""
    huge = 10 ** 200_000 + 12345
    assert con.eval("lambda x: x + 1")(huge) == huge + 1
    assert con.eval("lambda x: -x")(-huge) == huge
    assert con.eval("10 ** 6000 - 1") == 10 ** 6000 - 1
    assert con.eval("lambda x: x == 7 ** 9000")(7 ** 9000) is True


def test_arguments_go_by_value(con):
    echo = con.eval("lambda *a, **k: (a, tuple(sorted(k.items())))")
    assert echo(1, "x", b"y", None, 2 ** 80, -1.25, (1, (2,)), flag=True) == (
        (1, "x", b"y", None, 2 ** 80, -1.25, (1, (2,))), (("flag", True),))


def test_execute_with_a_local_mapping_as_locals(con):
    ns = {}
    con.execute("def abc():\n    return 123", locals=ns)
    assert ns["abc"]() == 123
    con.execute("y = 7\nz = y + 1", locals=ns)
    assert ns["y"] == 7 and ns["z"] == 8
    assert con.eval("y * z", locals=ns) == 56
    # A name missing from the mapping falls back to the globals, as exec does.
    assert con.eval("len('abc')", locals=ns) == 3
    with pytest.raises(NameError):
        con.eval("not_defined_anywhere", locals={})


def test_globals_must_be_a_remote_dict(con):
    remote = con.modules.builtins.dict()
    con.execute("q = 3", globals=remote)
    assert remote["q"] == 3
    assert con.eval("q", globals=remote) == 3
    with pytest.raises(TypeError):
        con.eval("1", globals={})


def _helper_default():
    return 10


def compiled_function(a, b=2, *rest, scale=_helper_default(), **named):
    import math  # imports in the sandbox

    return (a + b) * scale, rest, sorted(named), math.sqrt(16)


def decorated(function):
    return function


@decorated
def with_decorator(x):
    return x + 1


def test_compile_a_local_function(con):
    remote = con.compile(compiled_function)
    assert pushy.is_proxy(remote) and callable(remote)
    assert remote(1) == (30, (), [], 4.0)
    assert remote(1, b=3, scale=2) == (8, (), [], 4.0)
    assert remote(1, 2, 3, 4, k=1) == (30, (3, 4), ["k"], 4.0)
    # It runs in the sandbox: its os is the sandbox's.
    where = con.compile(pid_here)
    assert where() == con.modules.os.getpid()
    assert con.compile(with_decorator)(1) == 2


def pid_here():
    import os

    return os.getpid()


def test_compile_source_and_eval_code(con):
    code = con.compile("1 + 2", "eval")
    assert con.eval(code) == 3
    statements = con.compile("w = 41\nw += 1")
    con.execute(statements)
    assert con.eval("w") == 42
    with pytest.raises(SyntaxError):
        con.compile("def (", "exec")



def test_compile_a_lambda(con):
    offset = 10
    add = con.compile(lambda a, b=offset * 2: a + b)
    assert add(1) == 21 and add(1, 2) == 3
    assert con.compile(lambda *args, **kw: (args, sorted(kw)))(1, x=2) == ((1,), ["x"])
    assert con.remote_import("os.path").join("a", "b") == "a/b"


def test_compile_tells_lambdas_on_one_line_apart(con):
    square, cube = (lambda x: x * x), (lambda x: x ** 3)
    one = lambda: 1; two = lambda: 2  # noqa: E702, E731
    k = 10
    plus, times = (lambda x: x + k), (lambda x: x * k)
    assert con.compile(cube)(3) == 27 and con.compile(square)(3) == 9
    assert con.compile(two)() == 2 and con.compile(one)() == 1
    assert con.compile(times)(3) == 30 and con.compile(plus)(3) == 13


def test_compile_a_closure_takes_its_variables_as_they_are_now(con):
    scale, seen = 3, []

    def scaled(x):
        seen.append(x)  # a local list: a capability the sandbox calls through
        return x * scale, """two
lines"""

    def counter():
        count = 0

        def bump():
            nonlocal count
            count += 1
            return count
        return bump

    remote = con.compile(scaled)
    assert remote(2) == (6, "two\nlines")  # the string literal's text exactly
    assert seen == [2]
    bump = con.compile(counter())
    assert (bump(), bump()) == (1, 2)  # its cell lives remotely now
    offset = 5
    assert con.compile(lambda a: a + offset)(1) == 6

    def unbound():
        return later  # noqa: F821 (bound after the compile)

    with pytest.raises(NameError, match="later"):
        con.compile(unbound)
    later = 1  # noqa: F841


def test_putfile_and_getfile_through_the_private_tmp(con, tmp_path: pathlib.Path):
    source = tmp_path / "in.bin"
    payload = bytes(range(256)) * 40000  # 10 MiB, several chunks
    source.write_bytes(payload)
    con.putfile(source, "/tmp/x.bin")
    assert con.modules.os.path.getsize("/tmp/x.bin") == len(payload)
    con.execute("open('/tmp/y.txt', 'w').write('made remotely')")
    target = tmp_path / "out.txt"
    con.getfile("/tmp/y.txt", target)
    assert target.read_text() == "made remotely"
    back = tmp_path / "back.bin"
    con.getfile("/tmp/x.bin", back)
    assert back.read_bytes() == payload
    with pytest.raises(FileNotFoundError):
        con.getfile("/tmp/missing", tmp_path / "never")
    # The sandbox has no host files.
    with pytest.raises(FileNotFoundError):
        con.getfile(str(source), tmp_path / "never")


def test_close_is_idempotent_and_ends_the_proxies(connect):
    con = connect()
    remote = con.eval("[1]")
    con.close()
    con.close()
    assert con.closed
    with pytest.raises(pushy.ConnectionClosed):
        con.eval("1")
    with pytest.raises(pushy.ConnectionClosed):
        len(remote)
    # repr never raises (debuggers, logs, tracebacks print proxies).
    assert repr(remote) == "<pushy proxy: ConnectionClosed>"


def test_with_closes(target, daemon):
    options = {"token_file": daemon.token_file} if target.startswith("daemon:") else {}
    with pushy.connect(target, **options) as con:
        assert con.eval("6 * 7") == 42
    assert con.closed
    with pytest.raises(pushy.ConnectionClosed):
        con.eval("1")


def test_obtain_copies_containers(con):
    remote = con.eval("{'a': [1, 2, {3}], 'b': (4, frozenset({5}))}")
    local = pushy.obtain(remote)
    assert type(local) is dict
    assert local == {"a": [1, 2, {3}], "b": (4, frozenset({5}))}
    assert type(local["a"]) is list
    # Objects that are not containers stay proxies.
    mixed = pushy.obtain(con.eval("[object()]"))
    assert type(mixed) is list and pushy.is_proxy(mixed[0])
    assert pushy.obtain(5) == 5


def test_help_is_useful():
    doc = pushy.connect.__doc__
    for word in ("embedded:", "local:", "daemon:", "timeout", "memory_mib", "mounts", "preload"):
        assert word in doc
    assert pushy.Connection.execute.__doc__
    assert pushy.Proxy.__doc__


def test_a_bad_target_is_a_clear_error():
    with pytest.raises(pushy.UnsupportedTarget):
        pushy.connect("http://example")
    with pytest.raises(ValueError):
        pushy.connect("embedded:", timeout=-1)
