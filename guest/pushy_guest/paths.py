"""The session's python path: `--path` directories and archives and a
virtualenv's site-packages, which the host mounts read-only at their host
paths, so `__file__` and tracebacks name the host's files."""

from __future__ import annotations

import sys

_installed: list[str] = []


def install(entries: list[str]) -> None:
    """Puts `entries` at the front of `sys.path`, in order, in place of those
    installed before (a preloaded snapshot already has them)."""
    global _installed
    for entry in _installed:
        try:
            sys.path.remove(entry)
        except ValueError:
            pass
    sys.path[0:0] = entries
    _installed = list(entries)
