"""Serves the standard library (and the agent's own modules) from memory.

During pre-initialisation the stdlib is mounted at PYTHONHOME; we compile
every module there and keep the marshalled code (and the zlib-compressed
source, for tracebacks). At run time nothing is mounted, and this finder
answers imports from that store, with no host filesystem access at all.
"""

from __future__ import annotations

import marshal
import os
import sys
import zlib
from importlib.machinery import ModuleSpec
from types import ModuleType
from typing import Optional, Sequence

# Directories that hold no importable modules, or only tools for other hosts.
_SKIP_DIRS = {"__pycache__", "site-packages", "venv", "ensurepip", "idlelib",
              "turtledemo", "config-3.14-wasm32-wasi", "__phello__"}


class StdlibStore:
    """Marshalled code objects of a source tree, keyed by module name."""

    def __init__(self) -> None:
        # name -> (is_package, origin, marshalled code, compressed source)
        self.modules: dict[str, tuple[bool, str, bytes, bytes]] = {}

    def collect(self, root: str, prefix: str = "") -> None:
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames[:] = sorted(d for d in dirnames if d not in _SKIP_DIRS)
            rel = os.path.relpath(dirpath, root)
            package = "" if rel == "." else rel.replace(os.sep, ".")
            if package and "__init__.py" not in filenames:
                # Namespace-less directories (data only) are not packages.
                dirnames[:] = []
                continue
            for filename in sorted(filenames):
                if not filename.endswith(".py"):
                    continue
                stem = filename[:-3]
                is_package = stem == "__init__"
                if is_package:
                    name = package
                elif package:
                    name = f"{package}.{stem}"
                else:
                    name = stem
                if not name:
                    continue
                path = os.path.join(dirpath, filename)
                with open(path, "rb") as handle:
                    source = handle.read()
                try:
                    code = compile(source, path, "exec", dont_inherit=True, optimize=0)
                except SyntaxError:
                    continue
                self.modules[prefix + name] = (
                    is_package, path, marshal.dumps(code), zlib.compress(source, 6))


class MemoryLoader:
    """Loader for modules held by a `StdlibStore`."""

    def __init__(self, store: StdlibStore) -> None:
        self._store = store

    def create_module(self, spec: ModuleSpec) -> Optional[ModuleType]:
        return None

    def exec_module(self, module: ModuleType) -> None:
        entry = self._store.modules[module.__spec__.name]
        exec(marshal.loads(entry[2]), module.__dict__)

    def get_source(self, fullname: str) -> Optional[str]:
        entry = self._store.modules.get(fullname)
        if entry is None:
            return None
        return zlib.decompress(entry[3]).decode("utf-8", "replace")

    def is_package(self, fullname: str) -> bool:
        return self._store.modules[fullname][0]


class MemoryFinder:
    """A `sys.meta_path` finder over a `StdlibStore`."""

    def __init__(self, store: StdlibStore) -> None:
        self._store = store
        self._loader = MemoryLoader(store)

    def find_spec(self, fullname: str, path: Optional[Sequence[str]] = None,
                  target: Optional[ModuleType] = None) -> Optional[ModuleSpec]:
        entry = self._store.modules.get(fullname)
        if entry is None:
            return None
        is_package, origin = entry[0], entry[1]
        spec = ModuleSpec(fullname, self._loader, origin=origin, is_package=is_package)
        spec.has_location = True
        if is_package:
            spec.submodule_search_locations = [os.path.dirname(origin)]
        return spec

    def invalidate_caches(self) -> None:
        pass


def install(store: StdlibStore) -> MemoryFinder:
    """Puts the finder just before the path-based one: builtin and frozen
    modules still win, and the filesystem is only consulted on a miss."""
    finder = MemoryFinder(store)
    from importlib.machinery import PathFinder
    position = next((i for i, f in enumerate(sys.meta_path) if f is PathFinder),
                    len(sys.meta_path))
    sys.meta_path.insert(position, finder)
    return finder

