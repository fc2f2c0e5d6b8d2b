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


_warm()
