"""Local objects passed to the sandbox: capabilities, not a window.

Plain data (None, bool, int, float, str, bytes, tuples of them) is copied.
A local function becomes a callable in the sandbox. Any other local object
— a dict, a list, an instance — becomes, in the sandbox, a wrapper
(``pushy_guest.localobjects``) served by one local callback, ``dispatch(op,
*args)``, where ``op`` is one of a fixed set: items, length, membership,
iteration, calls, ``repr``/``str``, and attributes whose names do not start
with ``_``. So sandboxed code can use what the object offers publicly and
nothing else: no ``__globals__``, ``__code__``, ``__closure__``,
``__class__``, ``__dict__`` or ``__subclasses__`` walks. Modules, frames,
code objects and tracebacks are never handed out, whichever way they would
leave (an argument, a return value, an attribute, an item). What is passed
is what is granted: a local object whose public attribute is ``os.system``
hands out ``os.system``.

Identity: a local object sent again, while the sandbox (or a proxy here)
still holds what it was sent as, arrives as the same object there.
"""

from __future__ import annotations

import collections
import collections.abc
import functools
import itertools
import threading
import types
from typing import Any, Callable, Dict, Iterator, Optional, Tuple
import weakref

from . import _core

PYAPI = "pushy_guest.pyapi"
LOCALOBJECTS = "pushy_guest.localobjects"

# The sandbox's wrapper classes (guest/pushy_guest/localobjects.py).
WRAPPER_TYPES = [f"{LOCALOBJECTS}.{name}" for name in
                 ("LocalObject", "LocalMapping", "LocalSequence", "LocalSet")]

_REFUSED = (types.ModuleType, types.FrameType, types.CodeType, types.TracebackType)
# Passed as plain callbacks: calling them is all they offer.
_FUNCTIONS = (
    types.FunctionType, types.BuiltinFunctionType, types.MethodType,
    types.MethodWrapperType, types.WrapperDescriptorType, types.MethodDescriptorType,
    types.ClassMethodDescriptorType, functools.partial,
)
# Entries of the caches past which dead ones are swept.
_SWEEP_AT = 1024


class Companion:
    """The package's state of one connection (the extension hands it to
    the hooks): the callbacks and wrappers sent, and output decoders."""

    def __init__(self) -> None:
        # id(local object) -> callback id: valid while the callback is
        # registered, because its handler holds the object (so the id is
        # not reused meanwhile).
        self.callbacks: Dict[int, int] = {}
        # id(local object) -> (callback id, weakref to the wrapper's proxy).
        self.wrappers: Dict[int, Tuple[int, Any]] = {}
        # callback id -> the local object it serves (while it is registered:
        # swept with the caches), to hand it back as itself.
        self.objects: Dict[int, Any] = {}
        # handle id of a wrapper's proxy -> its callback id (ids are never
        # reused in a session; an entry goes with its proxy).
        self.by_handle: Dict[int, int] = {}
        # Set on a thread while it makes a wrapper: that reply stays a proxy.
        self.making = threading.local()
        self.sweep_at = _SWEEP_AT
        self.decoders: Dict[int, Any] = {}
        # Callables of modules used lately (``con.modules.os.getpid``): kept
        # alive, so that the next access finds the same proxy instead of
        # making one and releasing it after every call.
        self.recent: "collections.OrderedDict[int, Any]" = collections.OrderedDict()
        # The sandbox's errno names by number (WASI's numbers), once asked.
        self.errno_names: Optional[Dict[int, str]] = None


def _type_name(obj: Any) -> str:
    kind = type(obj)
    return f"{kind.__module__}.{kind.__qualname__}"


def _refuse(obj: Any) -> None:
    raise TypeError(
        f"a local {type(obj).__name__} is never handed to the sandbox: pushy passes local "
        "objects as capabilities (functions, mappings, sequences and other objects through "
        "their public attributes), never modules, frames, code or tracebacks")


def _public(name: Any) -> str:
    if not isinstance(name, str) or name.startswith("_"):
        raise AttributeError(
            f"{name!r} is not public: the sandbox sees only attributes of local objects "
            "whose names do not start with '_'")
    return name


def _batch(iterator: Iterator[Any], count: int) -> Tuple[Tuple[Any, ...], bool]:
    count = max(1, min(int(count), 65536))
    items = tuple(itertools.islice(iterator, count))
    return items, len(items) < count


def dispatcher(obj: Any) -> Callable[..., Any]:
    """The one callback through which the sandbox uses ``obj``."""

    def dispatch(op: str, *args: Any, **kwargs: Any) -> Any:
        if op == "getattr":
            return getattr(obj, _public(args[0]))
        if op == "call":
            return obj(*args, **kwargs)
        if op == "getitem":
            return obj[args[0]]
        if op == "setitem":
            obj[args[0]] = args[1]
            return None
        if op == "delitem":
            del obj[args[0]]
            return None
        if op == "len":
            return len(obj)
        if op == "contains":
            return args[0] in obj
        if op == "iter":
            iterator = iter(obj)
            items, done = _batch(iterator, args[0])

            def more(count: int) -> Tuple[Tuple[Any, ...], bool]:
                return _batch(iterator, count)

            return items, done, more
        if op == "setattr":
            setattr(obj, _public(args[0]), args[1])
            return None
        if op == "delattr":
            delattr(obj, _public(args[0]))
            return None
        if op == "repr":
            return repr(obj)
        if op == "str":
            return str(obj)
        if op == "bool":
            return bool(obj)
        if op == "dir":
            return tuple(name for name in dir(obj) if not name.startswith("_"))
        raise ValueError(f"no such operation on a local object: {op!r}")

    return dispatch


def _kind(obj: Any) -> str:
    if isinstance(obj, collections.abc.Mapping):
        return "mapping"
    if isinstance(obj, collections.abc.Sequence) and not isinstance(obj, (str, bytes)):
        return "sequence"
    if isinstance(obj, collections.abc.Set):
        return "set"
    return "object"


def _sweep(core: Any, companion: Companion) -> None:
    """Forgets entries whose callback has been released."""
    for key, callback_id in list(companion.callbacks.items()):
        if core.revive_callback(callback_id) is None:
            del companion.callbacks[key]
    for key, (callback_id, _) in list(companion.wrappers.items()):
        if core.revive_callback(callback_id) is None:
            del companion.wrappers[key]
    for callback_id in list(companion.objects):
        if core.revive_callback(callback_id) is None:
            del companion.objects[callback_id]
    companion.sweep_at = max(_SWEEP_AT, 2 * (len(companion.callbacks) + len(companion.wrappers)))


def _callback(core: Any, companion: Companion, function: Any) -> Any:
    key = id(function)
    known = companion.callbacks.get(key)
    if known is not None:
        revived = core.revive_callback(known)
        if revived is not None:
            return revived
    if len(companion.callbacks) >= companion.sweep_at:
        _sweep(core, companion)
    made = core.callback(function)
    companion.callbacks[key] = made.id
    return made


def _wrapper(core: Any, companion: Companion, obj: Any) -> Any:
    key = id(obj)
    known = companion.wrappers.get(key)
    callback: Optional[Any] = None
    if known is not None:
        callback_id, proxy_ref = known
        proxy = proxy_ref()
        if proxy is not None:
            return proxy
        callback = core.revive_callback(callback_id)
    if callback is None:
        if len(companion.wrappers) >= companion.sweep_at:
            _sweep(core, companion)
        callback = core.callback(dispatcher(obj))
    companion.making.active = True
    try:
        proxy = _core.module_call(core, LOCALOBJECTS, "wrap", (callback, _kind(obj), _type_name(obj)))
    finally:
        companion.making.active = False
    companion.wrappers[key] = (callback.id, weakref.ref(proxy))
    companion.objects[callback.id] = obj
    handle = _core.info(proxy)[0]
    companion.by_handle[handle] = callback.id
    weakref.finalize(proxy, companion.by_handle.pop, handle, None)
    return proxy


def unwrap(companion: Companion, proxy: Any) -> Any:
    """The local object a sandbox wrapper serves, for the wrapper handed
    back (the extension's hook); a wrapper of nothing of ours stays a proxy."""
    if getattr(companion.making, "active", False):
        return proxy
    callback_id = companion.by_handle.get(_core.info(proxy)[0])
    if callback_id is None:
        try:
            callback_id = _core.module_call(proxy, LOCALOBJECTS, "callback_id", (proxy,))
        except Exception:  # noqa: BLE001 - not one of ours after all
            return proxy
    return companion.objects.get(callback_id, proxy)


def localize(core: Any, companion: Companion, obj: Any) -> Any:
    """What to send for a local object that is not plain data (the
    extension's hook): a proxy or a registered callback."""
    if isinstance(obj, _REFUSED):
        _refuse(obj)
    # Immutable values the wire has no node for: made in the sandbox.
    if isinstance(obj, slice):
        return _core.module_call(core, PYAPI, "make_slice", (obj.start, obj.stop, obj.step))
    if obj is Ellipsis:
        return core.eval("...")
    if obj is NotImplemented:
        return core.eval("NotImplemented")
    if isinstance(obj, complex):
        return _core.module_call(core, "builtins", "complex", (obj.real, obj.imag))
    if isinstance(obj, frozenset):
        return _core.module_call(core, "builtins", "frozenset", (tuple(obj),))
    if isinstance(obj, range):
        return _core.module_call(core, "builtins", "range", (obj.start, obj.stop, obj.step))
    if isinstance(obj, _FUNCTIONS):
        return _callback(core, companion, obj)
    return _wrapper(core, companion, obj)
