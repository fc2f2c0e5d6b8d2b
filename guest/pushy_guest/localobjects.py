"""Objects of the local side, as the sandbox sees them: their public surface only.

The Python package passes a local mapping, list or other object as one local
callback, `dispatch(op, *args, **kwargs)`, and makes its wrapper here
(`wrap`, one call per object). Every operation on the wrapper is one call of
that callback, with `op` one of a fixed set (`OPS`); the local side refuses
names that start with `_` and never hands out its modules, frames or code,
so guest code can reach nothing of the local process but what the object
offers publicly. Local failures arrive typed (a missing key is a KeyError,
see `callbacks.local_exception`), which `exec` with a wrapped mapping as its
locals needs.
"""

from __future__ import annotations

import weakref
from collections.abc import MutableMapping, MutableSequence, MutableSet
from typing import Any, Callable, Iterator

# What the local side's dispatch answers; anything else it refuses.
OPS = frozenset((
    "getattr", "setattr", "delattr", "call", "getitem", "setitem", "delitem",
    "len", "contains", "iter", "repr", "str", "bool", "dir",
))
# Items asked for per round trip when iterating a local object.
_BATCH = 256


class LocalObject:
    """A local object: attributes, calls, items, iteration, all by asking."""

    __slots__ = ("_pushy_dispatch", "_pushy_type", "__weakref__")

    def __init__(self, dispatch: Callable[..., Any], type_name: str) -> None:
        object.__setattr__(self, "_pushy_dispatch", dispatch)
        object.__setattr__(self, "_pushy_type", type_name)

    def __getattr__(self, name: str) -> Any:
        # Only reached for names the wrapper lacks; private ones are never
        # asked for (the local side would refuse them anyway).
        if name.startswith("_"):
            raise AttributeError(f"local {self._pushy_type} object has no public attribute {name!r}")
        return self._pushy_dispatch("getattr", name)

    def __setattr__(self, name: str, value: Any) -> None:
        self._pushy_dispatch("setattr", name, value)

    def __delattr__(self, name: str) -> None:
        self._pushy_dispatch("delattr", name)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._pushy_dispatch("call", *args, **kwargs)

    def __getitem__(self, key: Any) -> Any:
        return self._pushy_dispatch("getitem", key)

    def __setitem__(self, key: Any, value: Any) -> None:
        self._pushy_dispatch("setitem", key, value)

    def __delitem__(self, key: Any) -> None:
        self._pushy_dispatch("delitem", key)

    def __len__(self) -> int:
        return self._pushy_dispatch("len")

    def __contains__(self, item: Any) -> bool:
        return self._pushy_dispatch("contains", item)

    def __iter__(self) -> Iterator[Any]:
        batch, done, more = self._pushy_dispatch("iter", _BATCH)
        return _batches(batch, done, more)

    def __bool__(self) -> bool:
        return self._pushy_dispatch("bool")

    def __repr__(self) -> str:
        return self._pushy_dispatch("repr")

    def __str__(self) -> str:
        return self._pushy_dispatch("str")

    def __dir__(self) -> list:
        return list(self._pushy_dispatch("dir"))


def _batches(batch: tuple, done: bool, more: Callable[[int], tuple]) -> Iterator[Any]:
    while True:
        yield from batch
        if done:
            return
        batch, done = more(_BATCH)


class LocalMapping(LocalObject):
    """A local mapping (a dict): usable as `exec`'s locals."""

    __slots__ = ()


class LocalSequence(LocalObject):
    """A local sequence (a list)."""

    __slots__ = ()


class LocalSet(LocalObject):
    """A local set."""

    __slots__ = ()


MutableMapping.register(LocalMapping)
MutableSequence.register(LocalSequence)
MutableSet.register(LocalSet)

_KINDS = {"mapping": LocalMapping, "sequence": LocalSequence, "set": LocalSet, "object": LocalObject}
# Wrappers by their dispatch callback's id, while they live: the local side
# sends the same callback for the same object, and gets the same wrapper.
_wrappers: "weakref.WeakValueDictionary[int, LocalObject]" = weakref.WeakValueDictionary()


def wrap(dispatch: Callable[..., Any], kind: str, type_name: str) -> LocalObject:
    """The sandbox's view of one local object, served by `dispatch` (a
    local callback): the same wrapper for the same callback while it lives."""
    key = getattr(dispatch, "_id", None)
    wrapper = _wrappers.get(key) if key is not None else None
    if wrapper is None:
        wrapper = _KINDS.get(kind, LocalObject)(dispatch, type_name)
        if key is not None:
            _wrappers[key] = wrapper
    return wrapper


def callback_id(wrapper: LocalObject) -> Any:
    """The local side's id of the callback serving `wrapper` (it hands the
    local object back as itself)."""
    return getattr(object.__getattribute__(wrapper, "_pushy_dispatch"), "_id", None)
