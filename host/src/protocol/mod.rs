//! The wire protocol between the local side and a sandbox host: data only.
//!
//! Nothing here knows about tokio or wasmtime, so the protocol can be read,
//! tested and versioned on its own. Values cross as a flat, pre-order list of
//! [`Node`]s (the same shape as the WIT interface), which keeps decoding free
//! of recursion: a hostile peer cannot overflow the stack with deep nesting.

use bytes::Bytes;
use serde::{Deserialize, Serialize};

mod messages;
mod ops;
pub mod payload;
#[cfg(test)]
pub(crate) mod strategies;

pub use messages::*;
pub use ops::*;

/// Version of this protocol; both ends must agree during the handshake.
pub const PROTOCOL_VERSION: u32 = 4;

/// Deepest nesting of a value, in either direction: a deeper value is
/// refused with an error before anything is sent.
///
/// The guest mirrors it as `MAX_DEPTH` in `guest/pushy_guest/values.py`
/// (`tests/guest_constants.rs` checks that the two agree). It is 200 because
/// of the guest's recursion: it encodes and decodes one Python frame per
/// level, on top of whatever stack the user's code holds (a callback's nested
/// request is dispatched inside the user's frames), all within Python's
/// recursion limit of 1,000 frames.
pub const MAX_DEPTH: usize = 200;

/// An int of more bits than this crosses as hexadecimal text ([`Node::BigInt`]):
/// decimal text of it would pass Python's `sys.int_max_str_digits` (4,300
/// digits by default, on either side), and decimal conversion of big ints is
/// quadratic where hexadecimal is linear.
pub const DECIMAL_INT_BITS: u64 = 14_000;

/// Most `str`/`bytes` payload, in bytes, of one value the guest sends; it
/// refuses a larger one with `ValueTooLarge` (a `ValueError`).
///
/// Mirrors `MAX_VALUE_BYTES` in `guest/pushy_guest/values.py`; the host
/// sizes how much the guest may hand it in one call from it.
pub const MAX_VALUE_BYTES: usize = 256 << 20;

/// Most nodes of one value the guest sends; it refuses more with
/// `ValueTooLarge`.
///
/// Mirrors `MAX_VALUE_NODES` in `guest/pushy_guest/values.py`; the host
/// sizes how much the guest may hand it in one call from it.
pub const MAX_VALUE_NODES: usize = 4 << 20;

/// Qualified name of the guest exception raised for a handle id the session
/// never issued or already released (`InvalidHandle` in
/// `guest/pushy_guest/table.py`), as its error reports it; the client
/// recognises such errors by [`ErrorKind::InvalidHandle`], not by this name.
pub const INVALID_HANDLE_TYPE: &str = "pushy_guest.table.InvalidHandle";

/// Bit positions of [`HandleInfo::opmask`]: the dunders an object's type has.
///
/// Mirrors `OPMASK_DUNDERS` in `guest/pushy_guest/table.py`.
pub mod opmask {
    /// `__call__`
    pub const CALL: u64 = 1 << 0;
    /// `__getitem__`
    pub const GETITEM: u64 = 1 << 1;
    /// `__setitem__`
    pub const SETITEM: u64 = 1 << 2;
    /// `__delitem__`
    pub const DELITEM: u64 = 1 << 3;
    /// `__len__`
    pub const LEN: u64 = 1 << 4;
    /// `__contains__`
    pub const CONTAINS: u64 = 1 << 5;
    /// `__iter__`
    pub const ITER: u64 = 1 << 6;
    /// `__next__`
    pub const NEXT: u64 = 1 << 7;
    /// `__enter__`
    pub const ENTER: u64 = 1 << 8;
    /// `__exit__`
    pub const EXIT: u64 = 1 << 9;
    /// `__hash__` (not `None`)
    pub const HASH: u64 = 1 << 10;
    /// `__bool__`
    pub const BOOL: u64 = 1 << 11;
    /// `__add__`
    pub const ADD: u64 = 1 << 12;
    /// `__sub__`
    pub const SUB: u64 = 1 << 13;
    /// `__mul__`
    pub const MUL: u64 = 1 << 14;
}

/// A handle to an object in the guest's object table.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct HandleInfo {
    /// Table id, unique within a session.
    pub id: u64,
    /// Qualified type name, e.g. `builtins.list`.
    pub type_name: String,
    /// See [`opmask`].
    pub opmask: u64,
}

/// One node of a value in pre-order; containers are followed by their children.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub enum Node {
    /// `None`
    None,
    /// `bool`
    Bool(bool),
    /// `int` within i64
    Int(i64),
    /// `int` outside i64: decimal text, or past [`DECIMAL_INT_BITS`] bits
    /// hexadecimal with a `0x` prefix (after any `-`)
    BigInt(String),
    /// `float`
    Float(f64),
    /// `str`
    Str(String),
    /// `bytes`; when decoded from a frame, a large payload shares the
    /// frame's buffer (see [`payload`]).
    Bytes(#[serde(with = "payload")] Bytes),
    /// `tuple` of the next n values
    Tuple(u32),
    /// `list` of the next n values (by value: only from `obtain` or from the local side)
    List(u32),
    /// `dict` of the next n key/value pairs
    Dict(u32),
    /// `set` of the next n values
    Set(u32),
    /// `frozenset` of the next n values
    FrozenSet(u32),
    /// A handle the guest hands out (guest to local).
    Handle(HandleInfo),
    /// A guest object the local side holds, by id (local to guest).
    Object(u64),
    /// A callable on the local side, by its id there (local to guest).
    Callback(u64),
}

/// A value: a non-empty pre-order list of nodes.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
pub struct WireValue(pub Vec<Node>);

impl WireValue {
    /// `None`.
    pub fn none() -> Self {
        WireValue(vec![Node::None])
    }

    /// The empty tuple (no arguments).
    pub fn empty_tuple() -> Self {
        WireValue(vec![Node::Tuple(0)])
    }
}

/// Keyword arguments.
pub type Kwargs = Vec<(String, WireValue)>;
