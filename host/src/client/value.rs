//! Values on the local side, and their conversion to and from Rust types.
//!
//! Outgoing: anything `Serialize` is encoded straight into wire nodes (a
//! `RemoteObject` or `Callback` inside it becomes a reference by id).
//! Incoming: a [`Value`] tree; `extract::<T>()` deserializes it with serde.

use bytes::Bytes;
use serde::de::{self, DeserializeOwned, IntoDeserializer, Visitor};
use serde::ser::{self, Serialize};

use super::{Error, RemoteObject};
use crate::protocol::{Node, WireValue, payload};

/// Newtype-struct name that marks a remote object reference in `Serialize`.
pub(crate) const OBJECT_TOKEN: &str = "$pushy::Object";
/// Newtype-struct name that marks a local callback in `Serialize`.
pub(crate) const CALLBACK_TOKEN: &str = "$pushy::Callback";
/// Deepest nesting accepted in either direction.
pub(crate) use crate::protocol::MAX_DEPTH;

/// A value from the sandbox: immutable data by value, everything else as a
/// [`RemoteObject`] handle.
#[derive(Clone, Debug)]
pub enum Value {
    /// `None`
    None,
    /// `bool`
    Bool(bool),
    /// `int` within i64
    Int(i64),
    /// `int` outside i64, in decimal
    BigInt(String),
    /// `float`
    Float(f64),
    /// `str`
    Str(String),
    /// `bytes`: a large payload shares the buffer it arrived in (no copy),
    /// and one sent as an argument goes to the connection without a copy.
    Bytes(Bytes),
    /// `tuple`
    Tuple(Vec<Value>),
    /// `list` (only from `obtain`)
    List(Vec<Value>),
    /// `dict` (only from `obtain`)
    Dict(Vec<(Value, Value)>),
    /// `set` (only from `obtain`)
    Set(Vec<Value>),
    /// `frozenset` (only from `obtain`)
    FrozenSet(Vec<Value>),
    /// Anything else: a handle to the object in the sandbox.
    Object(RemoteObject),
}

impl Value {
    /// Converts into a Rust type with serde, e.g. `value.extract::<Vec<i64>>()`.
    pub fn extract<T: DeserializeOwned>(&self) -> Result<T, Error> {
        T::deserialize(ValueDeserializer(self)).map_err(|e| Error::Conversion(e.0))
    }

    /// The payload of a `bytes` value, moved out without a copy (where
    /// `extract::<serde_bytes::ByteBuf>()` copies it). Dropping it lets the
    /// connection reuse the buffer it arrived in for the next large value.
    pub fn into_bytes(self) -> Result<Bytes, Error> {
        match self {
            Value::Bytes(bytes) => Ok(bytes),
            other => Err(Error::Conversion(format!(
                "expected bytes, got {}",
                other.kind()
            ))),
        }
    }

    /// The handle, if this value is a remote object.
    pub fn as_object(&self) -> Option<&RemoteObject> {
        match self {
            Value::Object(o) => Some(o),
            _ => None,
        }
    }

    /// The handle; an error if the value came by value.
    pub fn into_object(self) -> Result<RemoteObject, Error> {
        match self {
            Value::Object(o) => Ok(o),
            other => Err(Error::Conversion(format!(
                "expected a remote object, got {}",
                other.kind()
            ))),
        }
    }

    /// Whether this is `None`.
    pub fn is_none(&self) -> bool {
        matches!(self, Value::None)
    }

    /// A short name of the kind of value, for messages.
    pub fn kind(&self) -> &str {
        match self {
            Value::None => "None",
            Value::Bool(_) => "bool",
            Value::Int(_) | Value::BigInt(_) => "int",
            Value::Float(_) => "float",
            Value::Str(_) => "str",
            Value::Bytes(_) => "bytes",
            Value::Tuple(_) => "tuple",
            Value::List(_) => "list",
            Value::Dict(_) => "dict",
            Value::Set(_) => "set",
            Value::FrozenSet(_) => "frozenset",
            Value::Object(o) => o.type_name(),
        }
    }
}

impl Serialize for Value {
    fn serialize<S: ser::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use ser::{SerializeMap, SerializeSeq, SerializeTuple};
        match self {
            Value::None => s.serialize_unit(),
            Value::Bool(b) => s.serialize_bool(*b),
            Value::Int(i) => s.serialize_i64(*i),
            Value::BigInt(text) => s.serialize_newtype_struct(BIGINT_TOKEN, text),
            Value::Float(f) => s.serialize_f64(*f),
            Value::Str(text) => s.serialize_str(text),
            // Marked so that the encoder takes the payload itself (shared,
            // not copied) when it sees these very bytes.
            Value::Bytes(b) => payload::serialize(b, s),
            Value::Tuple(items) => {
                let mut t = s.serialize_tuple(items.len())?;
                for item in items {
                    t.serialize_element(item)?;
                }
                t.end()
            }
            Value::List(items) | Value::Set(items) | Value::FrozenSet(items) => {
                let mut seq = s.serialize_seq(Some(items.len()))?;
                for item in items {
                    seq.serialize_element(item)?;
                }
                seq.end()
            }
            Value::Dict(pairs) => {
                let mut map = s.serialize_map(Some(pairs.len()))?;
                for (k, v) in pairs {
                    map.serialize_entry(k, v)?;
                }
                map.end()
            }
            Value::Object(o) => o.serialize(s),
        }
    }
}

/// Marks an int outside i64 (decimal text) for our serializer.
const BIGINT_TOKEN: &str = "$pushy::BigInt";

// ---------------------------------------------------------------------------
// Serialize -> nodes

/// Error while encoding a Rust value for the sandbox.
#[derive(Debug)]
pub(crate) struct EncodeError(pub String);

impl std::fmt::Display for EncodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for EncodeError {}

impl ser::Error for EncodeError {
    fn custom<T: std::fmt::Display>(msg: T) -> Self {
        EncodeError(msg.to_string())
    }
}

/// What an encoded value refers to besides plain data.
#[derive(Default)]
pub(crate) struct Encoding {
    pub nodes: Vec<Node>,
    /// Local callbacks sent (each counts as one reference the guest holds).
    pub callbacks: Vec<u64>,
}

/// Encodes `value` for the connection `connection_uid`.
pub(crate) fn encode<T: Serialize + ?Sized>(
    value: &T,
    connection_uid: u64,
) -> Result<Encoding, EncodeError> {
    let mut encoding = Encoding::default();
    payload::encode_gathering(|| {
        value.serialize(NodeSerializer {
            out: &mut encoding,
            connection_uid,
            depth: 0,
        })
    })?;
    Ok(encoding)
}

/// Encodes call arguments: a tuple as is, `()` as no arguments, anything
/// else as the single argument.
pub(crate) fn encode_args<T: Serialize + ?Sized>(
    args: &T,
    connection_uid: u64,
) -> Result<Encoding, EncodeError> {
    let mut encoding = encode(args, connection_uid)?;
    match encoding.nodes.first() {
        Some(Node::Tuple(_)) => {}
        Some(Node::None) if encoding.nodes.len() == 1 => encoding.nodes[0] = Node::Tuple(0),
        _ => encoding.nodes.insert(0, Node::Tuple(1)),
    }
    Ok(encoding)
}

/// Splits an encoded dict/struct into keyword arguments.
pub(crate) fn split_kwargs(nodes: Vec<Node>) -> Result<Vec<(String, WireValue)>, EncodeError> {
    let mut iter = nodes.into_iter().peekable();
    let count = match iter.next() {
        Some(Node::Dict(n)) => n,
        Some(Node::None) | None => return Ok(Vec::new()),
        _ => {
            return Err(EncodeError(
                "keyword arguments must be a map or struct".into(),
            ));
        }
    };
    let mut kwargs = Vec::with_capacity(count as usize);
    let rest: Vec<Node> = iter.collect();
    let mut index = 0;
    for _ in 0..count {
        let key = match rest.get(index) {
            Some(Node::Str(key)) => key.clone(),
            _ => return Err(EncodeError("keyword argument names must be strings".into())),
        };
        index += 1;
        let end = subtree_end(&rest, index).ok_or_else(|| EncodeError("malformed value".into()))?;
        kwargs.push((key, WireValue(rest[index..end].to_vec())));
        index = end;
    }
    Ok(kwargs)
}

/// Index just past the subtree that starts at `start`, without recursion.
pub(crate) fn subtree_end(nodes: &[Node], start: usize) -> Option<usize> {
    let mut pending: u64 = 1;
    let mut index = start;
    while pending > 0 {
        let node = nodes.get(index)?;
        pending -= 1;
        pending += match node {
            Node::Tuple(n) | Node::List(n) | Node::Set(n) | Node::FrozenSet(n) => u64::from(*n),
            Node::Dict(n) => 2 * u64::from(*n),
            _ => 0,
        };
        index += 1;
    }
    Some(index)
}

struct NodeSerializer<'a> {
    out: &'a mut Encoding,
    connection_uid: u64,
    depth: usize,
}

impl<'a> NodeSerializer<'a> {
    fn push(self, node: Node) -> Result<(), EncodeError> {
        self.out.nodes.push(node);
        Ok(())
    }

    fn open(self, node: Node) -> Result<Compound<'a>, EncodeError> {
        if self.depth >= MAX_DEPTH {
            return Err(EncodeError(format!(
                "value nested deeper than {MAX_DEPTH} levels"
            )));
        }
        let index = self.out.nodes.len();
        self.out.nodes.push(node);
        Ok(Compound {
            out: self.out,
            connection_uid: self.connection_uid,
            depth: self.depth + 1,
            index,
            count: 0,
        })
    }

    fn child(&mut self) -> NodeSerializer<'_> {
        NodeSerializer {
            out: self.out,
            connection_uid: self.connection_uid,
            depth: self.depth + 1,
        }
    }
}

/// A container being encoded; its count is patched in at the end.
struct Compound<'a> {
    out: &'a mut Encoding,
    connection_uid: u64,
    depth: usize,
    index: usize,
    count: u32,
}

impl Compound<'_> {
    fn element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), EncodeError> {
        self.count += 1;
        value.serialize(NodeSerializer {
            out: self.out,
            connection_uid: self.connection_uid,
            depth: self.depth,
        })
    }

    fn finish(self) -> Result<(), EncodeError> {
        let count = self.count;
        match &mut self.out.nodes[self.index] {
            Node::Tuple(n) | Node::List(n) | Node::Set(n) | Node::FrozenSet(n) => *n = count,
            Node::Dict(n) => *n = count / 2,
            _ => unreachable!("compound opened with a container node"),
        }
        Ok(())
    }
}

impl ser::SerializeSeq for Compound<'_> {
    type Ok = ();
    type Error = EncodeError;
    fn serialize_element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), EncodeError> {
        self.element(value)
    }
    fn end(self) -> Result<(), EncodeError> {
        self.finish()
    }
}

impl ser::SerializeTuple for Compound<'_> {
    type Ok = ();
    type Error = EncodeError;
    fn serialize_element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), EncodeError> {
        self.element(value)
    }
    fn end(self) -> Result<(), EncodeError> {
        self.finish()
    }
}

impl ser::SerializeTupleStruct for Compound<'_> {
    type Ok = ();
    type Error = EncodeError;
    fn serialize_field<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), EncodeError> {
        self.element(value)
    }
    fn end(self) -> Result<(), EncodeError> {
        self.finish()
    }
}

impl ser::SerializeTupleVariant for Compound<'_> {
    type Ok = ();
    type Error = EncodeError;
    fn serialize_field<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), EncodeError> {
        self.element(value)
    }
    fn end(self) -> Result<(), EncodeError> {
        self.finish()
    }
}

impl ser::SerializeMap for Compound<'_> {
    type Ok = ();
    type Error = EncodeError;
    fn serialize_key<T: Serialize + ?Sized>(&mut self, key: &T) -> Result<(), EncodeError> {
        self.element(key)
    }
    fn serialize_value<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), EncodeError> {
        self.element(value)
    }
    fn end(self) -> Result<(), EncodeError> {
        self.finish()
    }
}

impl ser::SerializeStruct for Compound<'_> {
    type Ok = ();
    type Error = EncodeError;
    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        key: &'static str,
        value: &T,
    ) -> Result<(), EncodeError> {
        self.element(key)?;
        self.element(value)
    }
    fn end(self) -> Result<(), EncodeError> {
        self.finish()
    }
}

impl ser::SerializeStructVariant for Compound<'_> {
    type Ok = ();
    type Error = EncodeError;
    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        key: &'static str,
        value: &T,
    ) -> Result<(), EncodeError> {
        self.element(key)?;
        self.element(value)
    }
    fn end(self) -> Result<(), EncodeError> {
        self.finish()
    }
}

impl<'a> ser::Serializer for NodeSerializer<'a> {
    type Ok = ();
    type Error = EncodeError;
    type SerializeSeq = Compound<'a>;
    type SerializeTuple = Compound<'a>;
    type SerializeTupleStruct = Compound<'a>;
    type SerializeTupleVariant = Compound<'a>;
    type SerializeMap = Compound<'a>;
    type SerializeStruct = Compound<'a>;
    type SerializeStructVariant = Compound<'a>;

    fn serialize_bool(self, v: bool) -> Result<(), EncodeError> {
        self.push(Node::Bool(v))
    }
    fn serialize_i8(self, v: i8) -> Result<(), EncodeError> {
        self.push(Node::Int(v.into()))
    }
    fn serialize_i16(self, v: i16) -> Result<(), EncodeError> {
        self.push(Node::Int(v.into()))
    }
    fn serialize_i32(self, v: i32) -> Result<(), EncodeError> {
        self.push(Node::Int(v.into()))
    }
    fn serialize_i64(self, v: i64) -> Result<(), EncodeError> {
        self.push(Node::Int(v))
    }
    fn serialize_i128(self, v: i128) -> Result<(), EncodeError> {
        match i64::try_from(v) {
            Ok(v) => self.push(Node::Int(v)),
            Err(_) => self.push(Node::BigInt(v.to_string())),
        }
    }
    fn serialize_u8(self, v: u8) -> Result<(), EncodeError> {
        self.push(Node::Int(v.into()))
    }
    fn serialize_u16(self, v: u16) -> Result<(), EncodeError> {
        self.push(Node::Int(v.into()))
    }
    fn serialize_u32(self, v: u32) -> Result<(), EncodeError> {
        self.push(Node::Int(v.into()))
    }
    fn serialize_u64(self, v: u64) -> Result<(), EncodeError> {
        match i64::try_from(v) {
            Ok(v) => self.push(Node::Int(v)),
            Err(_) => self.push(Node::BigInt(v.to_string())),
        }
    }
    fn serialize_u128(self, v: u128) -> Result<(), EncodeError> {
        match i64::try_from(v) {
            Ok(v) => self.push(Node::Int(v)),
            Err(_) => self.push(Node::BigInt(v.to_string())),
        }
    }
    fn serialize_f32(self, v: f32) -> Result<(), EncodeError> {
        self.push(Node::Float(v.into()))
    }
    fn serialize_f64(self, v: f64) -> Result<(), EncodeError> {
        self.push(Node::Float(v))
    }
    fn serialize_char(self, v: char) -> Result<(), EncodeError> {
        self.push(Node::Str(v.to_string()))
    }
    fn serialize_str(self, v: &str) -> Result<(), EncodeError> {
        self.push(Node::Str(v.to_owned()))
    }
    fn serialize_bytes(self, v: &[u8]) -> Result<(), EncodeError> {
        // A large `Value::Bytes` is taken as it is; other bytes are copied.
        let bytes = payload::claim(v).unwrap_or_else(|| Bytes::copy_from_slice(v));
        self.push(Node::Bytes(bytes))
    }
    fn serialize_none(self) -> Result<(), EncodeError> {
        self.push(Node::None)
    }
    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result<(), EncodeError> {
        value.serialize(self)
    }
    fn serialize_unit(self) -> Result<(), EncodeError> {
        self.push(Node::None)
    }
    fn serialize_unit_struct(self, _name: &'static str) -> Result<(), EncodeError> {
        self.push(Node::None)
    }
    fn serialize_unit_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
    ) -> Result<(), EncodeError> {
        self.push(Node::Str(variant.to_owned()))
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        mut self,
        name: &'static str,
        value: &T,
    ) -> Result<(), EncodeError> {
        match name {
            OBJECT_TOKEN => {
                let (uid, id) = value.serialize(PairCapture)?;
                if uid != self.connection_uid {
                    return Err(EncodeError(format!(
                        "remote object {id} belongs to another connection"
                    )));
                }
                self.push(Node::Object(id))
            }
            CALLBACK_TOKEN => {
                let (uid, id) = value.serialize(PairCapture)?;
                if uid != self.connection_uid {
                    return Err(EncodeError(format!(
                        "callback {id} belongs to another connection"
                    )));
                }
                self.out.callbacks.push(id);
                self.push(Node::Callback(id))
            }
            BIGINT_TOKEN => {
                let mut text = Encoding::default();
                value.serialize(NodeSerializer {
                    out: &mut text,
                    connection_uid: self.connection_uid,
                    depth: self.depth,
                })?;
                match text.nodes.pop() {
                    Some(Node::Str(s)) => self.push(Node::BigInt(s)),
                    _ => Err(EncodeError("malformed big int".into())),
                }
            }
            _ => value.serialize(self.child()),
        }
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        value: &T,
    ) -> Result<(), EncodeError> {
        let mut map = self.open(Node::Dict(0))?;
        map.element(variant)?;
        map.element(value)?;
        map.finish()
    }
    fn serialize_seq(self, _len: Option<usize>) -> Result<Compound<'a>, EncodeError> {
        self.open(Node::List(0))
    }
    fn serialize_tuple(self, _len: usize) -> Result<Compound<'a>, EncodeError> {
        self.open(Node::Tuple(0))
    }
    fn serialize_tuple_struct(
        self,
        _name: &'static str,
        _len: usize,
    ) -> Result<Compound<'a>, EncodeError> {
        self.open(Node::Tuple(0))
    }
    fn serialize_tuple_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        _len: usize,
    ) -> Result<Compound<'a>, EncodeError> {
        // {variant: (fields...)}
        let out = self.out;
        out.nodes.push(Node::Dict(1));
        out.nodes.push(Node::Str(variant.to_owned()));
        NodeSerializer {
            out,
            connection_uid: self.connection_uid,
            depth: self.depth + 1,
        }
        .open(Node::Tuple(0))
    }
    fn serialize_map(self, _len: Option<usize>) -> Result<Compound<'a>, EncodeError> {
        self.open(Node::Dict(0))
    }
    fn serialize_struct(
        self,
        _name: &'static str,
        _len: usize,
    ) -> Result<Compound<'a>, EncodeError> {
        self.open(Node::Dict(0))
    }
    fn serialize_struct_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        _len: usize,
    ) -> Result<Compound<'a>, EncodeError> {
        let out = self.out;
        out.nodes.push(Node::Dict(1));
        out.nodes.push(Node::Str(variant.to_owned()));
        NodeSerializer {
            out,
            connection_uid: self.connection_uid,
            depth: self.depth + 1,
        }
        .open(Node::Dict(0))
    }
}

/// Implements every `Serializer` method not listed by hand as an error: the
/// capture serializers below accept exactly one shape.
macro_rules! refuse_other_shapes {
    ($ok:ty) => {
        fn serialize_bool(self, _: bool) -> Result<$ok, EncodeError> {
            Err(shape())
        }
        fn serialize_i8(self, _: i8) -> Result<$ok, EncodeError> {
            Err(shape())
        }
        fn serialize_i16(self, _: i16) -> Result<$ok, EncodeError> {
            Err(shape())
        }
        fn serialize_i32(self, _: i32) -> Result<$ok, EncodeError> {
            Err(shape())
        }
        fn serialize_i64(self, _: i64) -> Result<$ok, EncodeError> {
            Err(shape())
        }
        fn serialize_u8(self, _: u8) -> Result<$ok, EncodeError> {
            Err(shape())
        }
        fn serialize_u16(self, _: u16) -> Result<$ok, EncodeError> {
            Err(shape())
        }
        fn serialize_u32(self, _: u32) -> Result<$ok, EncodeError> {
            Err(shape())
        }
        fn serialize_f32(self, _: f32) -> Result<$ok, EncodeError> {
            Err(shape())
        }
        fn serialize_f64(self, _: f64) -> Result<$ok, EncodeError> {
            Err(shape())
        }
        fn serialize_char(self, _: char) -> Result<$ok, EncodeError> {
            Err(shape())
        }
        fn serialize_str(self, _: &str) -> Result<$ok, EncodeError> {
            Err(shape())
        }
        fn serialize_bytes(self, _: &[u8]) -> Result<$ok, EncodeError> {
            Err(shape())
        }
        fn serialize_none(self) -> Result<$ok, EncodeError> {
            Err(shape())
        }
        fn serialize_some<T: Serialize + ?Sized>(self, _: &T) -> Result<$ok, EncodeError> {
            Err(shape())
        }
        fn serialize_unit(self) -> Result<$ok, EncodeError> {
            Err(shape())
        }
        fn serialize_unit_struct(self, _: &'static str) -> Result<$ok, EncodeError> {
            Err(shape())
        }
        fn serialize_unit_variant(
            self,
            _: &'static str,
            _: u32,
            _: &'static str,
        ) -> Result<$ok, EncodeError> {
            Err(shape())
        }
        fn serialize_newtype_struct<T: Serialize + ?Sized>(
            self,
            _: &'static str,
            _: &T,
        ) -> Result<$ok, EncodeError> {
            Err(shape())
        }
        fn serialize_newtype_variant<T: Serialize + ?Sized>(
            self,
            _: &'static str,
            _: u32,
            _: &'static str,
            _: &T,
        ) -> Result<$ok, EncodeError> {
            Err(shape())
        }
        fn serialize_seq(self, _: Option<usize>) -> Result<Self::SerializeSeq, EncodeError> {
            Err(shape())
        }
        fn serialize_tuple_struct(
            self,
            _: &'static str,
            _: usize,
        ) -> Result<Self::SerializeTupleStruct, EncodeError> {
            Err(shape())
        }
        fn serialize_tuple_variant(
            self,
            _: &'static str,
            _: u32,
            _: &'static str,
            _: usize,
        ) -> Result<Self::SerializeTupleVariant, EncodeError> {
            Err(shape())
        }
        fn serialize_map(self, _: Option<usize>) -> Result<Self::SerializeMap, EncodeError> {
            Err(shape())
        }
        fn serialize_struct(
            self,
            _: &'static str,
            _: usize,
        ) -> Result<Self::SerializeStruct, EncodeError> {
            Err(shape())
        }
        fn serialize_struct_variant(
            self,
            _: &'static str,
            _: u32,
            _: &'static str,
            _: usize,
        ) -> Result<Self::SerializeStructVariant, EncodeError> {
            Err(shape())
        }
    };
}

fn shape() -> EncodeError {
    EncodeError("malformed handle reference".into())
}

/// Reads the `(connection uid, id)` pair inside our marker newtypes.
struct PairCapture;

impl ser::Serializer for PairCapture {
    type Ok = (u64, u64);
    type Error = EncodeError;
    type SerializeSeq = ser::Impossible<(u64, u64), EncodeError>;
    type SerializeTuple = PairTuple;
    type SerializeTupleStruct = ser::Impossible<(u64, u64), EncodeError>;
    type SerializeTupleVariant = ser::Impossible<(u64, u64), EncodeError>;
    type SerializeMap = ser::Impossible<(u64, u64), EncodeError>;
    type SerializeStruct = ser::Impossible<(u64, u64), EncodeError>;
    type SerializeStructVariant = ser::Impossible<(u64, u64), EncodeError>;

    fn serialize_tuple(self, _len: usize) -> Result<PairTuple, EncodeError> {
        Ok(PairTuple(Vec::with_capacity(2)))
    }

    fn serialize_u64(self, _: u64) -> Result<(u64, u64), EncodeError> {
        Err(shape())
    }

    refuse_other_shapes!((u64, u64));
}

struct PairTuple(Vec<u64>);

impl ser::SerializeTuple for PairTuple {
    type Ok = (u64, u64);
    type Error = EncodeError;
    fn serialize_element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), EncodeError> {
        self.0.push(value.serialize(U64Capture)?);
        Ok(())
    }
    fn end(self) -> Result<(u64, u64), EncodeError> {
        match self.0[..] {
            [uid, id] => Ok((uid, id)),
            _ => Err(EncodeError("malformed handle reference".into())),
        }
    }
}

struct U64Capture;

impl ser::Serializer for U64Capture {
    type Ok = u64;
    type Error = EncodeError;
    type SerializeSeq = ser::Impossible<u64, EncodeError>;
    type SerializeTuple = ser::Impossible<u64, EncodeError>;
    type SerializeTupleStruct = ser::Impossible<u64, EncodeError>;
    type SerializeTupleVariant = ser::Impossible<u64, EncodeError>;
    type SerializeMap = ser::Impossible<u64, EncodeError>;
    type SerializeStruct = ser::Impossible<u64, EncodeError>;
    type SerializeStructVariant = ser::Impossible<u64, EncodeError>;

    fn serialize_u64(self, v: u64) -> Result<u64, EncodeError> {
        Ok(v)
    }

    fn serialize_tuple(self, _: usize) -> Result<Self::SerializeTuple, EncodeError> {
        Err(shape())
    }

    refuse_other_shapes!(u64);
}

// ---------------------------------------------------------------------------
// Value -> Rust types

#[derive(Debug)]
struct DecodeError(String);

impl std::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for DecodeError {}

impl de::Error for DecodeError {
    fn custom<T: std::fmt::Display>(msg: T) -> Self {
        DecodeError(msg.to_string())
    }
}

struct ValueDeserializer<'a>(&'a Value);

impl<'de> IntoDeserializer<'de, DecodeError> for ValueDeserializer<'de> {
    type Deserializer = Self;
    fn into_deserializer(self) -> Self {
        self
    }
}

impl<'de> de::Deserializer<'de> for ValueDeserializer<'de> {
    type Error = DecodeError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DecodeError> {
        match self.0 {
            Value::None => visitor.visit_unit(),
            Value::Bool(b) => visitor.visit_bool(*b),
            Value::Int(i) => visitor.visit_i64(*i),
            Value::BigInt(text) => {
                if let Ok(v) = text.parse::<u64>() {
                    visitor.visit_u64(v)
                } else if let Ok(v) = text.parse::<i128>() {
                    visitor.visit_i128(v)
                } else {
                    visitor.visit_str(text)
                }
            }
            Value::Float(f) => visitor.visit_f64(*f),
            Value::Str(s) => visitor.visit_str(s),
            Value::Bytes(b) => visitor.visit_bytes(b),
            Value::Tuple(items)
            | Value::List(items)
            | Value::Set(items)
            | Value::FrozenSet(items) => visitor.visit_seq(de::value::SeqDeserializer::new(
                items.iter().map(ValueDeserializer),
            )),
            Value::Dict(pairs) => visitor.visit_map(de::value::MapDeserializer::new(
                pairs
                    .iter()
                    .map(|(k, v)| (ValueDeserializer(k), ValueDeserializer(v))),
            )),
            Value::Object(o) => Err(DecodeError(format!(
                "a remote {} is a handle, not data; call obtain() for a copy",
                o.type_name()
            ))),
        }
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DecodeError> {
        match self.0 {
            Value::None => visitor.visit_none(),
            _ => visitor.visit_some(self),
        }
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DecodeError> {
        match self.0 {
            Value::Str(s) => visitor.visit_enum(s.as_str().into_deserializer()),
            other => Err(DecodeError(format!(
                "expected a variant name, got {}",
                other.kind()
            ))),
        }
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, DecodeError> {
        visitor.visit_newtype_struct(self)
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf unit unit_struct seq tuple
        tuple_struct map struct identifier ignored_any
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn large_bytes_values_are_sent_without_a_copy() {
        let large = Bytes::from(vec![7u8; payload::SHARE_AT_LEAST]);
        let small = Bytes::from(vec![7u8; 100]);
        let args = (
            Value::Bytes(large.clone()),
            Value::Bytes(small.clone()),
            serde_bytes::ByteBuf::from(large.to_vec()),
        );
        let enc = encode_args(&args, 1).unwrap();
        let payloads: Vec<&Bytes> = enc
            .nodes
            .iter()
            .filter_map(|node| match node {
                Node::Bytes(bytes) => Some(bytes),
                _ => None,
            })
            .collect();
        assert_eq!(payloads.len(), 3);
        // The large `Value::Bytes` is the caller's buffer itself...
        assert_eq!(payloads[0].as_ptr(), large.as_ptr());
        // ...small ones and plain byte buffers are copied, equal.
        assert_ne!(payloads[1].as_ptr(), small.as_ptr());
        assert_eq!(payloads[1], &small);
        assert_eq!(payloads[2], &large);
        assert_ne!(payloads[2].as_ptr(), large.as_ptr());
    }

    #[test]
    fn args_are_wrapped_in_a_tuple() {
        let enc = encode_args(&(2, "x"), 1).unwrap();
        assert_eq!(
            enc.nodes,
            vec![Node::Tuple(2), Node::Int(2), Node::Str("x".into())]
        );
        let enc = encode_args(&(), 1).unwrap();
        assert_eq!(enc.nodes, vec![Node::Tuple(0)]);
        let enc = encode_args(&vec![1u8, 2], 1).unwrap();
        assert_eq!(
            enc.nodes,
            vec![Node::Tuple(1), Node::List(2), Node::Int(1), Node::Int(2)]
        );
    }

    #[test]
    fn structs_become_dicts_and_split_into_kwargs() {
        #[derive(serde::Serialize)]
        struct Kw {
            sep: &'static str,
            big: u64,
        }
        let enc = encode(
            &Kw {
                sep: "-",
                big: u64::MAX,
            },
            1,
        )
        .unwrap();
        let kwargs = split_kwargs(enc.nodes).unwrap();
        assert_eq!(
            kwargs[0],
            ("sep".into(), WireValue(vec![Node::Str("-".into())]))
        );
        assert_eq!(
            kwargs[1],
            (
                "big".into(),
                WireValue(vec![Node::BigInt(u64::MAX.to_string())])
            )
        );
    }

    #[test]
    fn subtree_end_skips_nested_containers() {
        let nodes = vec![
            Node::Dict(1),
            Node::Str("k".into()),
            Node::Tuple(2),
            Node::Int(1),
            Node::List(0),
            Node::None,
        ];
        assert_eq!(subtree_end(&nodes, 0), Some(5));
        assert_eq!(subtree_end(&nodes, 2), Some(5));
        assert_eq!(subtree_end(&nodes[..3], 0), None);
    }

    #[test]
    fn extract_converts_nested_values() {
        let v = Value::Tuple(vec![
            Value::Int(1),
            Value::List(vec![Value::Str("a".into())]),
            Value::None,
        ]);
        let (a, b, c): (i64, Vec<String>, Option<i32>) = v.extract().unwrap();
        assert_eq!((a, b, c), (1, vec!["a".to_owned()], None));
        assert!(Value::Str("x".into()).extract::<i64>().is_err());
    }

    #[test]
    fn too_deep_values_are_refused() {
        let mut v = Value::None;
        for _ in 0..(MAX_DEPTH + 1) {
            v = Value::Tuple(vec![v]);
        }
        assert!(encode(&v, 1).is_err());
        // Drop iteratively-built deep value without blowing the stack in tests.
        drop(v);
    }
}
