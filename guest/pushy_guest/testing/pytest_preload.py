"""What `pushy test` preloads into the snapshot its pytest sessions start
from: pytest, its built-in plugins, and the plugins the environment
installs (`pytest11` entry points, such as pytest-xdist). Configuring pytest
imports all of them in every session otherwise, compiled from source each
time (the sandbox reads no bytecode caches of the host's Python): most of
a small test file's time. A plugin that fails to import is left for pytest
to report when it loads it."""

import importlib

import pytest  # noqa: F401
from _pytest.config import default_plugins


def _warm() -> None:
    for name in default_plugins:
        try:
            importlib.import_module(f"_pytest.{name}")
        except Exception:  # noqa: BLE001, S112 - pytest reports it in the session
            continue
    try:
        from importlib.metadata import entry_points
        plugins = entry_points(group="pytest11")
    except Exception:  # noqa: BLE001 - no metadata to read
        return
    for plugin in plugins:
        try:
            plugin.load()
        except Exception:  # noqa: BLE001, S112 - pytest reports it in the session
            continue


#: The throwaway test file of the rehearsal: a fixture using others,
#: parametrize, a mark, a pass and an assertion that fails (its report).
_REHEARSAL = """\
import pytest


@pytest.fixture
def value(monkeypatch, capsys):
    monkeypatch.setattr("os.sep", "/")
    print("captured")
    return 1


@pytest.mark.parametrize("n", [1, 2])
def test_passes(value, n):
    assert value + n > n


def test_fails():
    assert [1, 2] == [1, 3]
"""


def _rehearse() -> None:
    """One pytest run in this process over a throwaway file, undone after:
    the snapshot then holds pytest's code as it is once it has run (the
    interpreter specialises bytecode as it runs it, and fills its caches),
    so each file's session starts on warm code instead of warming it up
    again. Whatever happens is left for the sessions to meet."""
    import io
    import os
    import sys
    directory = "/tmp/pushy-rehearsal"
    saved = (list(sys.path), sys.argv, os.getcwd(), sys.stdout, sys.stderr,
             sys.dont_write_bytecode, list(sys.meta_path))
    try:
        os.makedirs(directory, exist_ok=True)
        with open(os.path.join(directory, "test_rehearsal.py"), "w") as file:
            file.write(_REHEARSAL)
        os.chdir(directory)
        sys.dont_write_bytecode = True
        sys.argv = ["pytest"]
        sys.stdout = sys.stderr = io.StringIO()
        pytest.main(["-p", "no:cacheprovider", "-p", "no:faulthandler", "-p", "no:stepwise",
                     "-p", "no:tmpdir", "--capture=sys", "-q", "test_rehearsal.py"])
    except BaseException:  # noqa: BLE001, S110 - only a warm-up
        pass
    finally:
        (sys.path[:], sys.argv, cwd, sys.stdout, sys.stderr, sys.dont_write_bytecode,
         sys.meta_path[:]) = saved
        os.chdir(cwd)
        for name in [name for name in sys.modules if name.startswith("test_rehearsal")]:
            del sys.modules[name]
        for name in ("test_rehearsal.py",):
            try:
                os.remove(os.path.join(directory, name))
            except OSError:
                pass
        try:
            os.rmdir(directory)
        except OSError:
            pass


_warm()
_rehearse()
