"""The bytecode cache of `pushy test` under pytest.

Every test file runs in a fresh session, and a read-only project cannot
hold `__pycache__`: without a cache, each session compiles the project's
modules (and pytest rewrites its test modules) from source again. The host
keeps a cache directory, mounted read-only as `sys.pycache_prefix` in the
test sessions; they report what they had to compile (`uncached`), and a
separate writer session, which runs no code of the project, compiles those
sources into it (`write`). A test session can therefore never put bytecode
there that another one loads: what is written is compiled from the source
file itself, by this module.

Modules are cached as hash-checked files (CPython compares the source's
hash, so an edit that keeps the size and mtime is still seen); pytest's
rewrites carry the source's mtime and size, as pytest writes them. A cached
file that no longer matches its source is reported again and rewritten.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path
from typing import Any, Iterable

#: Most entries one report or one write takes.
MAX_ENTRIES = 10_000

#: Settings under which pytest's rewrite differs from the default one
#: written here: the cache then holds no rewritten modules of the project.
_REWRITE_SETTINGS = ("enable_assertion_pass_hook",)


def _stdlib_dirs() -> tuple:
    return tuple({os.path.dirname(os.__file__), sys.prefix, sys.base_prefix} - {""})


def _rewritten_pyc(path: Path) -> Path:
    from _pytest.assertion.rewrite import PYC_TAIL, get_cache_dir
    return get_cache_dir(path) / (path.name[:-3] + PYC_TAIL)


def _fresh(origin: str, pyc: Path, rewritten: bool) -> bool:
    """Whether the cached file is there and matches the source now."""
    if rewritten:
        from _pytest.assertion.rewrite import _read_pyc
        return _read_pyc(Path(origin), pyc, _Quiet.trace) is not None
    try:
        with open(pyc, "rb") as file:
            header = file.read(16)
    except OSError:
        return False
    if len(header) < 16 or header[:4] != importlib.util.MAGIC_NUMBER:
        return False
    if not int.from_bytes(header[4:8], "little") & 1:
        return False  # timestamp-based: written otherwise, rewrite it
    with open(origin, "rb") as file:
        return importlib.util.source_hash(file.read()) == header[8:16]


def uncached(modules: Iterable[Any]) -> tuple:
    """``(path, kind)`` of the imported modules compiled from source here:
    with no cached file, or one that does not match the source."""
    stdlib = _stdlib_dirs()
    found = []
    for module in list(modules):
        spec = getattr(module, "__spec__", None)
        origin = getattr(spec, "origin", None)
        if not (isinstance(origin, str) and origin.endswith(".py") and spec.has_location):
            continue
        if origin.startswith(stdlib):
            continue
        rewritten = type(spec.loader).__name__ == "AssertionRewritingHook"
        try:
            pyc = _rewritten_pyc(Path(origin)) if rewritten else Path(
                importlib.util.cache_from_source(origin))
            if _fresh(origin, pyc, rewritten):
                continue
        except Exception:  # noqa: BLE001 - not cacheable: left out
            continue
        found.append((origin, "pytest" if rewritten else "plain"))
        if len(found) >= MAX_ENTRIES:
            break
    return tuple(found)


class _Quiet:
    """What pytest's pyc writer wants of its state: a trace function."""

    @staticmethod
    def trace(*_args: Any) -> None:
        return None


def _rewrites_differ(rootdir: str) -> bool:
    for name in ("pytest.ini", ".pytest.ini", "pyproject.toml", "tox.ini", "setup.cfg"):
        try:
            text = Path(rootdir, name).read_text(errors="replace")
        except OSError:
            continue
        if any(setting in text for setting in _REWRITE_SETTINGS):
            return True
    return False


def write(entries: Iterable[tuple], pycache: str, rootdir: str) -> int:
    """Compiles each ``(path, kind)`` into the cache at ``pycache``; returns
    how many were written. A path that is not a plain absolute ``.py`` file
    is skipped (the entries come from test sessions)."""
    import py_compile
    sys.pycache_prefix = pycache
    sys.dont_write_bytecode = False
    rewrite = not _rewrites_differ(rootdir)
    written = 0
    for path, kind in list(entries)[:MAX_ENTRIES]:
        if not (isinstance(path, str) and os.path.isabs(path) and path.endswith(".py")
                and os.path.normpath(path) == path and os.path.isfile(path)):
            continue
        try:
            if kind == "plain":
                py_compile.compile(path, doraise=True, quiet=2,
                                   invalidation_mode=py_compile.PycInvalidationMode.CHECKED_HASH)
            elif kind == "pytest" and rewrite:
                from _pytest.assertion.rewrite import _rewrite_test, _write_pyc
                source = Path(path)
                pyc = _rewritten_pyc(source)
                pyc.parent.mkdir(parents=True, exist_ok=True)
                stat, code = _rewrite_test(source, None)
                if not _write_pyc(_Quiet(), code, stat, pyc):
                    continue
            else:
                continue
        except Exception:  # noqa: BLE001 - a source that does not compile stays uncached
            continue
        written += 1
    return written
