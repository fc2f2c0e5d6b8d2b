//! Outgoing values: anything `Serialize` encoded straight into wire nodes,
//! a [`super::RemoteObject`] or [`super::Callback`] inside it becoming a
//! reference by id (the marker newtypes of [`OBJECT_TOKEN`] and
//! [`CALLBACK_TOKEN`]).
//!
//! Over 500 lines because serde's `Serializer` has some thirty methods, each
//! mapping one Rust shape to nodes; about a quarter of the file is tests.

use bytes::Bytes;
use serde::ser::{self, Serialize};

use crate::protocol::{Node, WireValue, payload};

/// Newtype-struct name that marks a remote object reference in `Serialize`.
pub(crate) const OBJECT_TOKEN: &str = "$pushy::Object";
/// Newtype-struct name that marks a local callback in `Serialize`.
pub(crate) const CALLBACK_TOKEN: &str = "$pushy::Callback";
use crate::protocol::MAX_DEPTH;

/// Marks an int outside i64 (decimal text) for our serializer.
pub(crate) const BIGINT_TOKEN: &str = "$pushy::BigInt";

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
            OBJECT_TOKEN | CALLBACK_TOKEN => {
                let (uid, id) = reference(self.out, value)?;
                let callback = name == CALLBACK_TOKEN;
                if uid != self.connection_uid {
                    let what = if callback {
                        "callback"
                    } else {
                        "remote object"
                    };
                    return Err(EncodeError(format!(
                        "{what} {id} belongs to another connection"
                    )));
                }
                if callback {
                    self.out.callbacks.push(id);
                    self.push(Node::Callback(id))
                } else {
                    self.push(Node::Object(id))
                }
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

/// The `(connection uid, id)` pair inside our marker newtypes, read by
/// encoding it as nodes like any other value, at the end of `out` (no
/// buffer of its own), and taking those nodes back off.
fn reference<T: Serialize + ?Sized>(
    out: &mut Encoding,
    value: &T,
) -> Result<(u64, u64), EncodeError> {
    fn number(node: &Node) -> Option<u64> {
        match node {
            Node::Int(i) => u64::try_from(*i).ok(),
            Node::BigInt(text) => text.parse().ok(),
            _ => None,
        }
    }
    let start = out.nodes.len();
    value.serialize(NodeSerializer {
        out: &mut *out,
        connection_uid: 0,
        depth: 0,
    })?;
    let pair = match &out.nodes[start..] {
        [Node::Tuple(2), uid, id] => number(uid).zip(number(id)),
        _ => None,
    };
    out.nodes.truncate(start);
    pair.ok_or_else(|| EncodeError("malformed handle reference".into()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::Value;

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
