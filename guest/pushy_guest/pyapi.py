"""What the local side's Python package asks of the sandbox in one call
where the protocol has no operation of its own: slices (a slice object does
not cross by value), a with-block's exit with its exception, submodules on
attribute access, eval/exec with namespaces of the caller's choosing.
"""

from __future__ import annotations

import importlib
import linecache
import types
from typing import Any

from .callbacks import local_exception

_MAX_CACHED_SOURCES = 256
_sources: list[str] = []
_compiled = [0]


def getslice(target: Any, start: Any, stop: Any, step: Any) -> Any:
    return target[start:stop:step]


def setslice(target: Any, start: Any, stop: Any, step: Any, value: Any) -> None:
    target[start:stop:step] = value


def delslice(target: Any, start: Any, stop: Any, step: Any) -> None:
    del target[start:stop:step]


def make_slice(start: Any, stop: Any, step: Any) -> slice:
    return slice(start, stop, step)


def exit_context(manager: Any, exception: Any, type_name: Any, message: Any) -> bool:
    """`manager.__exit__` as a with-statement calls it: with the exception
    that ended the block (this session's own, or one the local side names),
    or with three Nones. True if it suppressed the exception."""
    if exception is None and type_name is not None:
        exception = local_exception(type_name, message)
    exit_method = type(manager).__exit__
    if exception is None:
        return bool(exit_method(manager, None, None, None))
    return bool(exit_method(manager, type(exception), exception, exception.__traceback__))


def submodule(module: types.ModuleType, name: str) -> Any:
    """`module.name`, importing `module.name` as a submodule if the package
    has no such attribute yet (`modules.xml.dom.minidom`)."""
    try:
        return getattr(module, name)
    except AttributeError:
        if not hasattr(module, "__path__"):
            raise
        try:
            return importlib.import_module(f"{module.__name__}.{name}")
        except ModuleNotFoundError:
            pass
        raise


def _code(source: Any, mode: str) -> Any:
    if isinstance(source, types.CodeType):
        return source
    return compile_source(source, mode)


def compile_source(source: str, mode: str, filename: str = "") -> types.CodeType:
    """`compile`, the source kept for tracebacks (bounded)."""
    if not filename:
        _compiled[0] += 1
        filename = f"<pushy-{_compiled[0]}>"
    code = compile(source, filename, mode, dont_inherit=True)
    linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
    _sources.append(filename)
    if len(_sources) > _MAX_CACHED_SOURCES:
        linecache.cache.pop(_sources.pop(0), None)
    return code


def evaluate(source: Any, globals_: dict, locals_: Any) -> Any:
    return eval(_code(source, "eval"), globals_, locals_)


def execute(source: Any, globals_: dict, locals_: Any) -> None:
    exec(_code(source, "exec"), globals_, locals_)
