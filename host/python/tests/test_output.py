"""Remote output goes to this process's sys.stdout / sys.stderr objects."""

from __future__ import annotations

import io
import sys


def test_capsys_sees_remote_output_in_order(con, capsys):
    con.execute("print('one')\nimport sys\nprint('two', file=sys.stderr)\nprint('three')")
    out, err = capsys.readouterr()
    assert out == "one\nthree\n"
    assert err == "two\n"


def test_output_comes_before_the_call_returns(con, capsys):
    print("before")
    con.execute("print('remote')")
    print("after")
    assert capsys.readouterr().out == "before\nremote\nafter\n"


def test_output_of_a_callback_interleaves(con, capsys):
    con.eval("lambda f: (print('a'), f(), print('c'))")(lambda: print("b"))
    assert capsys.readouterr().out == "a\nb\nc\n"


def test_redirected_stdout_and_split_characters(con, monkeypatch):
    sink = io.StringIO()
    monkeypatch.setattr(sys, "stdout", sink)
    con.execute("import sys\nsys.stdout.buffer.write('é'.encode()[:1])\nsys.stdout.flush()")
    con.execute("import sys\nsys.stdout.buffer.write('é'.encode()[1:] + b'!\\n')")
    assert sink.getvalue() == "é!\n"


def test_os_write_reaches_stdout(con, capfd):
    con.execute("import os\nos.write(1, b'fd one\\n')")
    assert "fd one" in capfd.readouterr().out
