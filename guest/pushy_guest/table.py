"""The object table: objects the local side holds handles to.

Each entry counts how many times its handle was sent. The local side
releases (id, count) pairs; an entry is freed only when every send has been
released, so a release that races a re-send of the same object never frees a
live one. Releases of unknown ids, or beyond the count, are ignored.
"""

from __future__ import annotations

from typing import Any

# Bit positions of the opmask; the host's `protocol::opmask` names the bits it uses.
OPMASK_DUNDERS = (
    "__call__", "__getitem__", "__setitem__", "__delitem__", "__len__",
    "__contains__", "__iter__", "__next__", "__enter__", "__exit__",
    "__hash__", "__bool__", "__add__", "__sub__", "__mul__", "__truediv__",
    "__floordiv__", "__mod__", "__pow__", "__lshift__", "__rshift__",
    "__and__", "__or__", "__xor__", "__matmul__", "__neg__", "__pos__",
    "__invert__", "__abs__", "__index__", "__float__", "__await__",
)


class InvalidHandle(LookupError):
    """A handle id that this session never issued, or that was released.

    The host knows it by its qualified name (`protocol::INVALID_HANDLE_TYPE`):
    moving or renaming it means changing that too."""


class Entry:
    """One object of the table and how many times its handle was sent.

    Slotted, so `entry.obj` reads as fast as indexing a list: the hot path,
    a method call on a held handle, reads it once per call."""

    __slots__ = ("obj", "count")

    def __init__(self, obj: Any, count: int) -> None:
        self.obj = obj
        self.count = count


class Entries(dict[int, Entry]):
    """handle id -> Entry; looking up an id that is not in the table raises
    InvalidHandle (the per-call paths index it directly: no Python frame
    per lookup)."""

    __slots__ = ()

    def __missing__(self, handle: int) -> Entry:
        raise InvalidHandle(f"no object with handle {handle} in this session")


class ObjectTable:
    def __init__(self) -> None:
        self._next_id = 1
        self.entries = Entries()
        # id(object) -> handle id, while the object is in the table
        self._ids: dict[int, int] = {}
        self._opmasks: dict[type, int] = {}
        self._type_names: dict[type, str] = {}

    def __len__(self) -> int:
        return len(self.entries)

    def send(self, obj: Any) -> tuple[int, str, int]:
        """Counts one more send of `obj`; returns (id, type name, opmask)."""
        handle = self._ids.get(id(obj))
        if handle is None:
            handle = self._next_id
            self._next_id += 1
            self.entries[handle] = Entry(obj, 1)
            self._ids[id(obj)] = handle
        else:
            self.entries[handle].count += 1
        kind = type(obj)
        name = self._type_names.get(kind)
        if name is None:
            name = qualified_name(kind)
            self._type_names[kind] = name
            self._opmasks[kind] = compute_opmask(kind)
        return handle, name, self._opmasks[kind]

    def clear(self) -> None:
        """Forgets every entry and starts ids again from 1 (a preloaded
        snapshot must start as a fresh session does)."""
        self.entries.clear()
        self._ids.clear()
        self._next_id = 1

    def get(self, handle: int) -> Any:
        return self.entries[handle].obj

    def release(self, handle: int, count: int) -> None:
        entry = self.entries.get(handle)
        if entry is None:
            return
        entry.count -= count
        if entry.count <= 0:
            del self.entries[handle]
            del self._ids[id(entry.obj)]


def qualified_name(kind: type) -> str:
    module = getattr(kind, "__module__", None) or "builtins"
    return wit_text(f"{module}.{getattr(kind, '__qualname__', kind.__name__)}")


def wit_text(text: str) -> str:
    """`text` as a WIT string can carry it: a string must be valid UTF-8,
    and lowering one with a lone surrogate traps the instance, so those are
    escaped (`\\ud800`)."""
    if text.isascii():
        return text
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text


def compute_opmask(kind: type) -> int:
    """The dunders instances of `kind` have, found as Python finds special
    methods: in the type's MRO, not through `getattr(kind, ...)`, which also
    sees the metaclass (every class has `type.__call__`, so every object
    looked callable)."""
    mask = 0
    mro = getattr(kind, "__mro__", (kind,))
    for bit, dunder in enumerate(OPMASK_DUNDERS):
        for base in mro:
            namespace = getattr(base, "__dict__", {})
            if dunder in namespace:
                if namespace[dunder] is not None:
                    mask |= 1 << bit
                break
    return mask
