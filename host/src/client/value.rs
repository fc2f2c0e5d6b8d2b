//! Values on the local side, and their conversion to Rust types:
//! a [`Value`] tree; `extract::<T>()` deserializes it with serde. (Outgoing
//! values are encoded by [`super::encode`].)

use bytes::Bytes;
use serde::de::{self, DeserializeOwned, IntoDeserializer, Visitor};
use serde::ser::{self, Serialize};

use super::encode::BIGINT_TOKEN;
use super::{Error, RemoteObject};
use crate::protocol::payload;

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
    /// `int` outside i64: decimal text, or past
    /// [`crate::protocol::DECIMAL_INT_BITS`] bits hexadecimal with a `0x`
    /// prefix (after any `-`)
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
