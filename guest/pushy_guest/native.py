"""A clear ImportError for compiled extensions built for the host.

A package copied from the host's site-packages may hold `fast.cpython-311-
x86_64-linux-gnu.so`, `fast.abi3.so` or `fast.pyd`. The sandbox runs only
WebAssembly and cannot load code from a file at all. Two ways an import
of one used to fail, neither naming the cause:

- suffixes WASI CPython does not know (a platform tag, `.pyd`): the
  path-based finder does not see the file, and the import fails with a
  bare "No module named 'fast'", sending the user looking for a file that is
  right there. A finder after the path-based one (so it runs only when
  every other finder missed) turns that miss into the error below.
- suffixes it knows (`.so`, `.abi3.so`): the path-based finder's extension
  loader tries dlopen and fails with "library not found". Its path hook is
  rebuilt with a loader that says why instead.
"""

from __future__ import annotations

import os
import re
import sys
from importlib.machinery import ExtensionFileLoader, FileFinder, ModuleSpec, PathFinder
from types import ModuleType
from typing import Iterable, Optional

# `name.so`, `name.pyd`, or with a platform tag: `name.abi3.so`,
# `name.cpython-311-x86_64-linux-gnu.so`, `name.cp311-win_amd64.pyd`,
# `name.pypy310-pp73-x86_64-linux-gnu.so`.
_EXTENSION = re.compile(r"^(?P<stem>[^.]+)(?:\.(?:abi3|cpython-[^.]+|cp\d+[^.]*|pypy[^.]*))?\.(?:so|pyd)$")


def native_extension_error(name: str, path: Optional[str]) -> ImportError:
    return ImportError(
        f"cannot import {name!r} from {path!r}: it is a native extension built "
        "for the host, and native extensions cannot load in the pushy sandbox "
        "(only pure-Python packages work)",
        name=name, path=path)


class NativeExtensionLoader:
    """Fails to load, saying why (no module is ever created)."""

    def create_module(self, spec: ModuleSpec) -> Optional[ModuleType]:
        raise native_extension_error(spec.name, spec.origin)

    def exec_module(self, module: ModuleType) -> None:
        raise AssertionError("create_module always raises")


class HostExtensionLoader(ExtensionFileLoader):
    """The path-based finder's loader of `.so` / `.abi3.so` files."""

    def create_module(self, spec: ModuleSpec) -> Optional[ModuleType]:
        try:
            return super().create_module(spec)
        except ImportError:
            # dlopen's own reason is always "library not found": as the
            # cause it would only head the traceback with noise.
            raise native_extension_error(spec.name, spec.origin) from None


class NativeExtensionFinder:
    """A `sys.meta_path` finder of host-native extension modules."""

    def __init__(self) -> None:
        self._loader = NativeExtensionLoader()
        # directory -> (mtime, {module stem: file name}); a miss of an
        # optional import (`try: import _speedups`) repeats, so a directory
        # is listed again only when it changed.
        self._listings: dict[str, tuple[float, dict[str, str]]] = {}

    def find_spec(self, fullname: str, path: Optional[Iterable[str]] = None,
                  target: Optional[ModuleType] = None) -> Optional[ModuleSpec]:
        stem = fullname.rpartition(".")[2]
        for directory in sys.path if path is None else path:
            if not isinstance(directory, str):
                continue
            filename = self._extensions(directory or ".").get(stem)
            if filename is not None:
                origin = os.path.join(directory, filename)
                spec = ModuleSpec(fullname, self._loader, origin=origin)
                spec.has_location = True
                return spec
        return None

    def _extensions(self, directory: str) -> dict[str, str]:
        try:
            mtime = os.stat(directory).st_mtime
            cached = self._listings.get(directory)
            if cached is not None and cached[0] == mtime:
                return cached[1]
            names = os.listdir(directory)
        except (OSError, ValueError):
            # Not a directory, gone, unreadable, or a zip file: nothing to say.
            return {}
        found: dict[str, str] = {}
        for name in sorted(names):
            match = _EXTENSION.match(name)
            if match is not None:
                found.setdefault(match.group("stem"), name)
        self._listings[directory] = (mtime, found)
        return found

    def invalidate_caches(self) -> None:
        self._listings.clear()


def install() -> NativeExtensionFinder:
    """Rebuilds the path hook with `HostExtensionLoader` and puts the finder
    right after the path-based one (last if it is absent)."""
    from importlib import _bootstrap_external
    loaders = [(HostExtensionLoader if loader is ExtensionFileLoader else loader, suffixes)
               for loader, suffixes in _bootstrap_external._get_supported_file_loaders()]
    file_finder_hook = FileFinder.path_hook(*loaders)
    sys.path_hooks[:] = [
        file_finder_hook if "FileFinder.path_hook" in getattr(hook, "__qualname__", "") else hook
        for hook in sys.path_hooks]
    # Finders made with the old hook would keep its loader.
    sys.path_importer_cache.clear()

    finder = NativeExtensionFinder()
    position = next((i + 1 for i, f in enumerate(sys.meta_path) if f is PathFinder),
                    len(sys.meta_path))
    sys.meta_path.insert(position, finder)
    return finder
