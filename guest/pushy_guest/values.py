"""Encoding between Python objects and WIT value nodes.

A value is a pre-order list of nodes. Immutable values (None, bool, int,
float, str, bytes, and tuples of such) travel by value; everything else
travels as a handle from the object table. `obtain` deep-copies lists,
dicts and sets by value instead.
"""

from __future__ import annotations

from typing import Any, Callable

from wit_world.imports.types import (
    HandleInfo, Node_BigInt, Node_Boolean, Node_Bytes, Node_BytesAscii, Node_BytesText,
    Node_Callback, Node_Dict, Node_Float, Node_Frozenset, Node_Handle, Node_Int, Node_List, Node_None_,
    Node_Object, Node_Set, Node_Str, Node_Tuple,
)

from .table import ObjectTable

# Limits shared with the host: its `protocol` module has each under the same
# name (tests/guest_constants.rs checks that they agree).
# Nesting deeper than this is refused with ValueError before anything is sent.
MAX_DEPTH = 200
# Total str/bytes payload of one value; larger values are refused.
MAX_VALUE_BYTES = 256 * 1024 * 1024
# Nodes of one value (the host's HOSTCALL_FUEL allows for these).
MAX_VALUE_NODES = 4 * 1024 * 1024
_INT_MIN = -(1 << 63)
_INT_MAX = (1 << 63) - 1
_NONE = Node_None_()
# Nodes whose `.value` is the Python value itself.
_PLAIN = frozenset((Node_Int, Node_Str, Node_Float, Node_Bytes, Node_Boolean))
_TRUE = Node_Boolean(True)
_FALSE = Node_Boolean(False)



# An int past this many bits crosses as hexadecimal text: decimal text of it
# would pass `sys.int_max_str_digits` (4300 by default, on either side) and
# costs quadratic time to make and read; hexadecimal costs linear time.
DECIMAL_INT_BITS = 14_000


def int_text(value: int) -> str:
    """A big int as wire text: decimal, or ``0x`` hexadecimal past
    ``DECIMAL_INT_BITS`` bits."""
    if value.bit_length() <= DECIMAL_INT_BITS:
        return str(value)
    return hex(value)


def int_from_text(text: str) -> int:
    """The int of wire text from ``int_text`` (or the local side's)."""
    if text.startswith(("0x", "-0x")):
        return int(text, 16)
    return int(text)

# A value past the limits is a plain ValueError: it reaches the local side
# as the builtin class (a subclass here would arrive as a RemoteError naming
# this module).
ValueTooLarge = ValueError


class Encoder:
    """Turns Python objects into nodes, handing out handles from `table`."""

    def __init__(self, table: ObjectTable) -> None:
        self.table = table
        self.max_value_bytes = MAX_VALUE_BYTES

    def encode(self, obj: Any) -> list:
        nodes: list = []
        self._budget = self.max_value_bytes
        self._sent: list[tuple[int, int]] = []
        try:
            self._encode(obj, nodes, 0)
        except BaseException:
            # Handles counted for a value that is never sent must not leak.
            for handle, count in self._sent:
                self.table.release(handle, count)
            raise
        return nodes

    def _handle(self, obj: Any, nodes: list) -> None:
        handle, name, opmask = self.table.send(obj)
        self._sent.append((handle, 1))
        nodes.append(Node_Handle(HandleInfo(handle, name, opmask)))

    def _charge(self, size: int) -> None:
        self._budget -= size
        if self._budget < 0:
            raise ValueTooLarge(
                f"value too large to send (limit {self.max_value_bytes} bytes)")

    def _encode(self, obj: Any, nodes: list, depth: int) -> None:
        kind = type(obj)
        if obj is None:
            nodes.append(_NONE)
        elif kind is bool:
            nodes.append(_TRUE if obj else _FALSE)
        elif kind is int:
            if _INT_MIN <= obj <= _INT_MAX:
                nodes.append(Node_Int(obj))
            else:
                text = int_text(obj)
                self._charge(len(text))
                nodes.append(Node_BigInt(text))
        elif kind is float:
            nodes.append(Node_Float(obj))
        elif kind is str:
            if not obj.isascii():
                try:
                    obj.encode("utf-8")
                except UnicodeEncodeError:
                    # Lone surrogates cannot cross as UTF-8: keep it remote.
                    self._handle(obj, nodes)
                    return
            self._charge(len(obj))
            nodes.append(Node_Str(obj))
        elif kind is bytes:
            self._charge(len(obj))
            # Never `list<u8>` out of the guest: componentize-py 0.25.1 leaks
            # the buffer of every `list<u8>` it lowers (export results and
            # import arguments alike); strings are freed. latin-1 maps each
            # byte to one char, losslessly (see `bytes-text` in wit/agent.wit).
            # ASCII is tried first: in wasm its decoder checks and copies in
            # one pass (about 0.6x latin-1's time for 16 MiB ASCII, see
            # scripts/guest_bytes_text.py), and it stops at the first byte
            # >= 0x80; the host then takes the text as is.
            try:
                nodes.append(Node_BytesAscii(obj.decode("ascii")))
            except UnicodeDecodeError:
                nodes.append(Node_BytesText(obj.decode("latin-1")))
        elif kind is tuple:
            if depth >= MAX_DEPTH:
                raise ValueError(f"value nested deeper than {MAX_DEPTH} levels")
            if len(nodes) + len(obj) > MAX_VALUE_NODES:
                raise ValueTooLarge(f"value too large to send (more than {MAX_VALUE_NODES} items)")
            nodes.append(Node_Tuple(len(obj)))
            for item in obj:
                self._encode(item, nodes, depth + 1)
        else:
            self._handle(obj, nodes)

    def obtain(self, obj: Any, max_items: int) -> list:
        """Deep copy of containers by value (at most `max_items` nodes)."""
        nodes: list = []
        self._budget = self.max_value_bytes
        self._sent = []
        max_items = min(max_items, MAX_VALUE_NODES)
        try:
            self._obtain(obj, nodes, 0, max_items)
        except BaseException:
            for handle, count in self._sent:
                self.table.release(handle, count)
            raise
        return nodes

    def _obtain(self, obj: Any, nodes: list, depth: int, max_items: int) -> None:
        if len(nodes) >= max_items:
            raise ValueTooLarge(f"value has more than {max_items} items")
        if depth >= MAX_DEPTH:
            raise ValueError(f"value nested deeper than {MAX_DEPTH} levels")
        kind = type(obj)
        if kind is list or kind is tuple:
            nodes.append((Node_List if kind is list else Node_Tuple)(len(obj)))
            for item in obj:
                self._obtain(item, nodes, depth + 1, max_items)
        elif kind is dict:
            nodes.append(Node_Dict(len(obj)))
            for key, item in obj.items():
                self._obtain(key, nodes, depth + 1, max_items)
                self._obtain(item, nodes, depth + 1, max_items)
        elif kind is set or kind is frozenset:
            nodes.append((Node_Set if kind is set else Node_Frozenset)(len(obj)))
            for item in obj:
                self._obtain(item, nodes, depth + 1, max_items)
        else:
            self._encode(obj, nodes, depth)


class Decoder:
    """Turns nodes from the host back into Python objects."""

    def __init__(self, table: ObjectTable, callback: Callable[[int], Any]) -> None:
        self.table = table
        self.callback = callback

    def decode(self, nodes: list) -> Any:
        if not nodes:
            raise ValueError("empty value")
        value, end = self._decode(nodes, 0, 0)
        if end != len(nodes):
            raise ValueError("trailing nodes after value")
        return value

    def decode_args(self, nodes: list) -> tuple:
        # Fast path for the common call: a flat tuple of plain values/handles.
        if nodes and type(nodes[0]) is Node_Tuple and nodes[0].value == len(nodes) - 1:
            items = []
            get = self.table.get
            for index in range(1, len(nodes)):
                node = nodes[index]
                kind = type(node)
                if kind in _PLAIN:
                    items.append(node.value)
                elif kind is Node_Object:
                    items.append(get(node.value))
                elif kind is Node_None_:
                    items.append(None)
                else:
                    break
            else:
                return tuple(items)
        value = self.decode(nodes)
        if type(value) is not tuple:
            raise TypeError("arguments must be a tuple")
        return value

    def _decode(self, nodes: list, index: int, depth: int) -> tuple[Any, int]:
        if depth > MAX_DEPTH:
            raise ValueError(f"value nested deeper than {MAX_DEPTH} levels")
        if index >= len(nodes):
            raise ValueError("value ends inside a container")
        node = nodes[index]
        kind = type(node)
        index += 1
        if kind is Node_Int or kind is Node_Str or kind is Node_Float \
                or kind is Node_Bytes or kind is Node_Boolean:
            return node.value, index
        if kind is Node_None_:
            return None, index
        if kind is Node_Object or kind is Node_Handle:
            handle = node.value if kind is Node_Object else node.value.id
            return self.table.get(handle), index
        if kind is Node_Callback:
            return self.callback(node.value), index
        if kind is Node_BigInt:
            return int_from_text(node.value), index
        count = node.value
        if kind is Node_Dict:
            result = {}
            for _ in range(count):
                key, index = self._decode(nodes, index, depth + 1)
                result[key], index = self._decode(nodes, index, depth + 1)
            return result, index
        items = []
        for _ in range(count):
            item, index = self._decode(nodes, index, depth + 1)
            items.append(item)
        if kind is Node_Tuple:
            return tuple(items), index
        if kind is Node_List:
            return items, index
        if kind is Node_Set:
            return set(items), index
        if kind is Node_Frozenset:
            return frozenset(items), index
        raise ValueError(f"unknown node {kind.__name__}")
