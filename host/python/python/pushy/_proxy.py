"""Proxies: local stand-ins for objects in the sandbox.

Every attribute access, call, operator and protocol method goes to the
remote object (one round trip each; iteration is batched). A proxy of a
remote dict, list, set, tuple, module or builtin exception passes
``isinstance`` against the builtin type through ``__class__`` — not by
subclassing it: a subclass of ``dict`` or ``list`` would carry an empty
builtin body that C code reads directly (``",".join(proxy)``, ``dict(proxy)``
and ``json.dumps`` would see nothing, silently), while a proxy that only
*says* it is a list gets the generic protocols (iteration, ``keys()``), which
work. ``type(proxy)`` stays the proxy class.
"""

from __future__ import annotations

import builtins
import collections
import types
from typing import Any, Dict, Optional

from . import _core
from .errors import ConnectionClosed, SessionTerminated

_getattr = _core.attr_get
_setattr = _core.attr_set
_delattr = _core.attr_del
_call = _core.call
_call_method = _core.call_method
_module_call = _core.module_call
_getitem = _core.item_get
_setitem = _core.item_set
_delitem = _core.item_del
_binary = _core.binary
_compare = _core.compare
_unary = _core.unary
_type_name = _core.type_name
_opmask = _core.opmask

PYAPI = "pushy_guest.pyapi"

# Bits of the opmask (the dunders the remote type has; protocol::opmask).
_CALL, _GETITEM, _LEN, _ITER, _HASH, _BOOL = 1 << 0, 1 << 1, 1 << 4, 1 << 6, 1 << 10, 1 << 11

# Names a proxy answers itself; everything else is the remote object's.
_LOCAL_NAMES = frozenset((
    "__class__", "__reduce__", "__reduce_ex__", "__copy__", "__deepcopy__",
    "__getstate__", "__setstate__", "__getnewargs__", "__getnewargs_ex__",
))

# Remote types whose proxies say they are the local builtin one.
_TYPED: Dict[str, type] = {
    "builtins.dict": dict, "builtins.list": list, "builtins.set": set,
    "builtins.frozenset": frozenset, "builtins.tuple": tuple, "builtins.bytearray": bytearray,
    "builtins.module": types.ModuleType,
    "collections.OrderedDict": collections.OrderedDict,
    "collections.defaultdict": collections.defaultdict,
    "collections.Counter": collections.Counter, "collections.deque": collections.deque,
}
_TYPED.update({
    f"builtins.{name}": value for name, value in vars(builtins).items()
    if isinstance(value, type) and issubclass(value, BaseException)
})


# A remote container compared with a local one of these is compared by
# value (sent, the local one would be a capability, never equal to it).
_DATA = (list, dict, set, frozenset)
_DATA_NAMES = frozenset(("builtins.list", "builtins.dict", "builtins.set", "builtins.frozenset"))


def _short(proxy: Any) -> str:
    return _type_name(proxy).rsplit(".", 1)[-1]


def _class_of(proxy: Any) -> type:
    return _TYPED.get(_type_name(proxy), type(proxy))


def _not_copyable(self: Any, *args: Any) -> Any:
    raise TypeError(
        f"cannot pickle or copy a proxy of a remote {_type_name(self)}; "
        "pushy.obtain(proxy) makes a local copy of a remote container")


def _local_message(value: BaseException) -> str:
    if len(value.args) == 1 and isinstance(value.args[0], str):
        return value.args[0]
    return str(value)



def _text(value: Any) -> str:
    """A remote string as a local one. One with lone surrogates (from
    `surrogateescape`, say) cannot travel as UTF-8 and comes as a proxy:
    its code points then come as bytes, `surrogatepass`-encoded."""
    if isinstance(value, str):
        return value
    data = _core.call_method(value, "encode", ("utf-8", "surrogatepass"))
    return data.decode("utf-8", "surrogatepass")

class Proxy(_core.ProxyBase):
    """A remote object. Attribute access, calls, operators, ``len``, ``in``,
    indexing and slicing, iteration, ``repr``/``str``, ``bool``, ``hash`` and
    ``with`` act on it in the sandbox; ``pushy.obtain(proxy)`` copies a
    remote container here. The same remote object gives the same proxy while
    it lives; when the proxy is collected the remote object is released (in
    batches, see ``Connection.gc_interval``)."""

    __slots__ = ()

    def __getattribute__(self, name: str) -> Any:
        if name in _LOCAL_NAMES:
            return object.__getattribute__(self, name)
        return _getattr(self, name)

    def __setattr__(self, name: str, value: Any) -> None:
        _setattr(self, name, value)

    def __delattr__(self, name: str) -> None:
        _delattr(self, name)

    __class__ = property(_class_of)  # type: ignore[assignment]
    __reduce__ = __reduce_ex__ = __copy__ = __deepcopy__ = __getstate__ = _not_copyable

    def __repr__(self) -> str:
        # A repr that raises gets in the way of debuggers, logs and
        # tracebacks: a proxy whose session is gone says so instead.
        try:
            return _text(_core.repr_of(self))
        except (ConnectionClosed, SessionTerminated) as error:
            return f"<pushy proxy: {type(error).__name__}>"

    def __str__(self) -> str:
        return _text(_core.str_of(self))

    def __format__(self, spec: str) -> str:
        if not spec:
            return _text(_core.str_of(self))
        return _text(_module_call(self, "builtins", "format", (self, spec)))

    def __bytes__(self) -> bytes:
        return _module_call(self, "builtins", "bytes", (self,))

    def __bool__(self) -> bool:
        if not _opmask(self) & (_BOOL | _LEN):
            return True  # object's own truth: no need to ask
        return _core.truth(self)

    def __len__(self) -> int:
        if not _opmask(self) & _LEN:
            raise TypeError(f"object of type '{_short(self)}' has no len()")
        return _core.length(self)

    def __iter__(self) -> Any:
        if not _opmask(self) & (_ITER | _GETITEM):
            raise TypeError(f"'{_short(self)}' object is not iterable")
        return _core.iterate(self)

    def __next__(self) -> Any:
        return _call_method(self, "__next__", ())

    def __reversed__(self) -> Any:
        return _module_call(self, "builtins", "reversed", (self,))

    def __contains__(self, item: Any) -> bool:
        return _core.contains(self, item)

    def __getitem__(self, key: Any) -> Any:
        if type(key) is slice:
            return _module_call(self, PYAPI, "getslice", (self, key.start, key.stop, key.step))
        return _getitem(self, key)

    def __setitem__(self, key: Any, value: Any) -> None:
        if type(key) is slice:
            _module_call(self, PYAPI, "setslice", (self, key.start, key.stop, key.step, value))
        else:
            _setitem(self, key, value)

    def __delitem__(self, key: Any) -> None:
        if type(key) is slice:
            _module_call(self, PYAPI, "delslice", (self, key.start, key.stop, key.step))
        else:
            _delitem(self, key)

    def __hash__(self) -> int:
        if not _opmask(self) & _HASH:
            raise TypeError(f"unhashable type: '{_short(self)}'")
        return _core.hash_of(self)

    def __eq__(self, other: Any) -> Any:  # type: ignore[override]
        if type(other) in _DATA and _type_name(self) in _DATA_NAMES:
            return _core.obtain(self) == other
        return _compare(self, "eq", other)

    def __ne__(self, other: Any) -> Any:  # type: ignore[override]
        if type(other) in _DATA and _type_name(self) in _DATA_NAMES:
            return _core.obtain(self) != other
        return _compare(self, "ne", other)

    def __lt__(self, other: Any) -> Any:
        return _compare(self, "lt", _operand(self, other))

    def __le__(self, other: Any) -> Any:
        return _compare(self, "le", _operand(self, other))

    def __gt__(self, other: Any) -> Any:
        return _compare(self, "gt", _operand(self, other))

    def __ge__(self, other: Any) -> Any:
        return _compare(self, "ge", _operand(self, other))

    def __neg__(self) -> Any:
        return _unary(self, "neg")

    def __pos__(self) -> Any:
        return _unary(self, "pos")

    def __invert__(self) -> Any:
        return _unary(self, "invert")

    def __abs__(self) -> Any:
        return _unary(self, "abs")

    def __divmod__(self, other: Any) -> Any:
        return _module_call(self, "builtins", "divmod", (self, other))

    def __rdivmod__(self, other: Any) -> Any:
        return _module_call(self, "builtins", "divmod", (other, self))

    def __pow__(self, other: Any, modulo: Any = None) -> Any:
        if modulo is None:
            return _binary(self, "pow", other, False)
        return _module_call(self, "builtins", "pow", (self, other, modulo))

    def __rpow__(self, other: Any) -> Any:
        return _binary(self, "pow", other, True)

    def __ipow__(self, other: Any, modulo: Any = None) -> Any:
        return _module_call(self, "operator", "ipow", (self, _operand(self, other)))

    def __int__(self) -> int:
        return _module_call(self, "builtins", "int", (self,))

    def __float__(self) -> float:
        return _module_call(self, "builtins", "float", (self,))

    def __complex__(self) -> complex:
        return complex(_module_call(self, "builtins", "float", (self.real,)),
                       _module_call(self, "builtins", "float", (self.imag,)))

    def __index__(self) -> int:
        return _module_call(self, "operator", "index", (self,))

    def __round__(self, digits: Optional[int] = None) -> Any:
        args = (self,) if digits is None else (self, digits)
        return _module_call(self, "builtins", "round", args)

    def __trunc__(self) -> Any:
        return _module_call(self, "math", "trunc", (self,))

    def __floor__(self) -> Any:
        return _module_call(self, "math", "floor", (self,))

    def __ceil__(self) -> Any:
        return _module_call(self, "math", "ceil", (self,))

    def __enter__(self) -> Any:
        return _call_method(self, "__enter__", ())

    def __exit__(self, kind: Any, value: Any, traceback: Any) -> bool:
        """The remote ``__exit__`` gets the block's exception: the remote
        exception itself if it came from this session, else one of the same
        builtin class (or a CallbackError naming the local class)."""
        if value is None:
            return _module_call(self, PYAPI, "exit_context", (self, None, None, None))
        remote = getattr(value, "remote_exception", None)
        if not isinstance(remote, _core.ProxyBase):
            remote = None
        kind = type(value)
        name = f"{kind.__module__}.{kind.__qualname__}"
        try:
            return _module_call(self, PYAPI, "exit_context",
                                (self, remote, name, _local_message(value)))
        except Exception as failure:
            if getattr(failure, "session_ended", False):
                return False  # the block's own exception says more
            raise

    def __dir__(self) -> list:
        return list(_core.dir_of(self))

    def __instancecheck__(self, instance: Any) -> bool:
        return _module_call(self, "builtins", "isinstance", (instance, self))

    def __subclasscheck__(self, subclass: Any) -> bool:
        return _module_call(self, "builtins", "issubclass", (subclass, self))


def _operand(anchor: Any, other: Any) -> Any:
    """A local list, dict or set as the operand of an operator: a remote
    copy (operators read their operand; a capability of it would not be a
    list to the remote one's operator)."""
    kind = type(other)
    if kind is list or kind is set:
        return _module_call(anchor, "builtins", kind.__name__, (tuple(other),))
    if kind is dict:
        return _module_call(anchor, "builtins", "dict", (tuple(other.items()),))
    return other


def _binary_methods(name: str) -> None:
    def forward(self: Any, other: Any) -> Any:
        return _binary(self, name, _operand(self, other), False)

    def reflected(self: Any, other: Any) -> Any:
        return _binary(self, name, _operand(self, other), True)

    def in_place(self: Any, other: Any) -> Any:
        # The remote object's own in-place operator: a remote list is
        # extended where it is, not replaced by a new one.
        return _module_call(self, "operator", f"i{name}", (self, _operand(self, other)))

    for prefix, method in (("", forward), ("r", reflected), ("i", in_place)):
        method.__name__ = f"__{prefix}{name}__"
        method.__qualname__ = f"Proxy.{method.__name__}"
        setattr(Proxy, method.__name__, method)


for _name in ("add", "sub", "mul", "truediv", "floordiv", "mod", "lshift", "rshift",
              "and", "or", "xor", "matmul"):
    _binary_methods(_name)
del _name


class CallableProxy(Proxy):
    """A remote callable (a function, a class, a bound method)."""

    __slots__ = ()

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return _call(self, args, kwargs or None)


class ModuleProxy(Proxy):
    """A remote module: a submodule its package has not imported is
    imported on attribute access (``con.modules.xml.dom.minidom``)."""

    __slots__ = ()

    def __getattribute__(self, name: str) -> Any:
        if name in _LOCAL_NAMES:
            return object.__getattribute__(self, name)
        try:
            value = _getattr(self, name)
        except AttributeError:
            if name.startswith("__"):
                raise
            return _module_call(self, PYAPI, "submodule", (self, name))
        if type(value) is CallableProxy:
            recent = _core.companion_of(self).recent
            recent[id(value)] = value
            recent.move_to_end(id(value))
            if len(recent) > _RECENT_CALLABLES:
                recent.popitem(last=False)
        return value


# Module callables kept alive per connection (see Companion.recent).
_RECENT_CALLABLES = 128

PROXY_CLASSES: Dict[str, type] = {"builtins.module": ModuleProxy}


def is_proxy(value: Any) -> bool:
    """Whether ``value`` is a proxy of a remote object."""
    return isinstance(value, _core.ProxyBase)

