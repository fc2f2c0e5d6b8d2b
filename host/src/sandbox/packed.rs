//! The packed form of the commonest operation: a call with positional
//! arguments only, each a plain value or a handle.
//!
//! Lifting an `op` into the guest makes componentize-py build one Python
//! object per record, variant case and node, each through a dataclass
//! `__init__` running in the interpreter: for `d.get("k")` four objects and
//! their frames before the guest does anything. Packed, the whole call is
//! one `list<u8>` the guest turns back into Python values with a single
//! `marshal.loads` (C code), as the tuple `(target, name, args, handles)`:
//! `name` is the method's name or `None` for a plain call, and `handles`
//! lists the positions in `args` that hold handle ids rather than values.
//!
//! Only the subset of CPython's `marshal` format needed here is written:
//! `None`, booleans, ints (`i` for 32 bits, `l` in 15-bit digits beyond),
//! binary floats, UTF-8 strings, bytes and tuples, with no back-references.
//! Anything else (keyword arguments, containers, big ints, callbacks, a
//! large payload) takes the general path.

use crate::protocol::{HandleInfo, Node, Op, WireValue};

/// Largest packed call: a bigger payload is lowered from where it lies by
/// the general path rather than copied into the packed buffer.
const MAX_PACKED: usize = 4096;

/// `op` packed, if it is a call or method call that fits the packed form.
pub(crate) fn pack_op(op: &Op) -> Option<Vec<u8>> {
    match op {
        Op::Call {
            target,
            args,
            kwargs,
        } if kwargs.is_empty() => pack_call(*target, None, args),
        Op::CallMethod {
            target,
            name,
            args,
            kwargs,
        } if kwargs.is_empty() => pack_call(*target, Some(name), args),
        _ => None,
    }
}

/// `call(target, *args)` (`name` `None`) or `call-method`, packed; `None`
/// when the call does not fit the packed form.
pub(crate) fn pack_call(target: u64, name: Option<&str>, args: &WireValue) -> Option<Vec<u8>> {
    let (first, items) = args.0.split_first()?;
    let &Node::Tuple(count) = first else {
        return None;
    };
    if count as usize != items.len() || items.len() > u8::MAX as usize {
        return None;
    }
    let mut out = Marshal(Vec::with_capacity(64));
    out.small_tuple(4);
    out.int(i64::try_from(target).ok()?);
    match name {
        Some(name) => out.str(name),
        None => out.0.push(b'N'),
    }
    out.small_tuple(items.len());
    let mut handles = Vec::new();
    for (index, node) in items.iter().enumerate() {
        match node {
            Node::None => out.0.push(b'N'),
            Node::Bool(true) => out.0.push(b'T'),
            Node::Bool(false) => out.0.push(b'F'),
            Node::Int(i) => out.int(*i),
            Node::Float(f) => {
                out.0.push(b'g');
                out.0.extend_from_slice(&f.to_le_bytes());
            }
            Node::Str(s) => out.str(s),
            Node::Bytes(b) => out.bytes(b),
            Node::Object(id) | Node::Handle(HandleInfo { id, .. }) => {
                out.int(i64::try_from(*id).ok()?);
                handles.push(index);
            }
            _ => return None,
        }
        if out.0.len() > MAX_PACKED {
            return None;
        }
    }
    out.small_tuple(handles.len());
    for index in handles {
        out.int(index as i64);
    }
    Some(out.0)
}

/// Writes values in CPython's `marshal` format.
struct Marshal(Vec<u8>);

impl Marshal {
    fn small_tuple(&mut self, len: usize) {
        debug_assert!(len <= u8::MAX as usize);
        self.0.push(b')');
        self.0.push(len as u8);
    }

    fn int(&mut self, value: i64) {
        if let Ok(small) = i32::try_from(value) {
            self.0.push(b'i');
            self.0.extend_from_slice(&small.to_le_bytes());
            return;
        }
        // `l`: the number of 15-bit digits, negative for a negative value,
        // then the digits of the magnitude, least significant first.
        let magnitude = value.unsigned_abs();
        let count = (64 - magnitude.leading_zeros()).div_ceil(15) as i32;
        self.0.push(b'l');
        self.0
            .extend_from_slice(&(if value < 0 { -count } else { count }).to_le_bytes());
        for digit in 0..count {
            let digit = (magnitude >> (15 * digit)) & 0x7fff;
            self.0.extend_from_slice(&(digit as u16).to_le_bytes());
        }
    }

    fn str(&mut self, text: &str) {
        self.0.push(b'u');
        self.0.extend_from_slice(&(text.len() as u32).to_le_bytes());
        self.0.extend_from_slice(text.as_bytes());
    }

    fn bytes(&mut self, data: &[u8]) {
        self.0.push(b's');
        self.0.extend_from_slice(&(data.len() as u32).to_le_bytes());
        self.0.extend_from_slice(data);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Positional arguments of the kinds the packed form carries: plain
    /// values and references to held objects.
    fn packable_args() -> impl Strategy<Value = Vec<Node>> {
        let node = prop_oneof![
            Just(Node::None),
            any::<bool>().prop_map(Node::Bool),
            any::<i64>().prop_map(Node::Int),
            prop_oneof![
                Just(i32::MIN as i64),
                Just(i32::MAX as i64 + 1),
                Just(i64::MIN)
            ]
            .prop_map(Node::Int),
            any::<f64>().prop_map(Node::Float),
            ".{0,12}".prop_map(Node::Str),
            proptest::collection::vec(any::<u8>(), 0..16).prop_map(|b| Node::Bytes(b.into())),
            (0u64..1 << 40).prop_map(Node::Object),
        ];
        proptest::collection::vec(node, 0..12)
    }

    proptest! {
        #![proptest_config(ProptestConfig {
            cases: crate::protocol::strategies::cases(256),
            ..ProptestConfig::default()
        })]

        #[test]
        fn calls_of_plain_arguments_always_pack(target in 0u64..1 << 40, items in packable_args()) {
            let mut nodes = vec![Node::Tuple(items.len() as u32)];
            nodes.extend(items);
            let args = WireValue(nodes);
            let call = Op::Call { target, args: args.clone(), kwargs: vec![] };
            prop_assert!(pack_op(&call).is_some());
            let method = Op::CallMethod { target, name: "m".into(), args: args.clone(), kwargs: vec![] };
            prop_assert!(pack_op(&method).is_some());
            // Keywords take the general path.
            let keywords = Op::Call { target, args, kwargs: vec![("k".into(), WireValue::none())] };
            prop_assert!(pack_op(&keywords).is_none());
        }
    }

    fn args(nodes: Vec<Node>) -> WireValue {
        let mut all = vec![Node::Tuple(nodes.len() as u32)];
        all.extend(nodes);
        WireValue(all)
    }

    #[test]
    fn a_method_call_packs_as_marshal_bytes() {
        // marshal.dumps((7, "get", ("k", None), ()), 4) without FLAG_REF.
        let packed = pack_call(
            7,
            Some("get"),
            &args(vec![Node::Str("k".into()), Node::None]),
        );
        let mut expected = vec![b')', 4, b'i', 7, 0, 0, 0, b'u', 3, 0, 0, 0];
        expected.extend_from_slice(b"get");
        expected.extend_from_slice(&[b')', 2, b'u', 1, 0, 0, 0, b'k', b'N', b')', 0]);
        assert_eq!(packed.as_deref(), Some(expected.as_slice()));
    }

    #[test]
    fn ints_beyond_32_bits_are_15_bit_digits() {
        let mut out = Marshal(Vec::new());
        out.int(1 << 31);
        // 2^31 = 2 * 2^30: digits [0, 0, 2].
        assert_eq!(out.0, [b'l', 3, 0, 0, 0, 0, 0, 0, 0, 2, 0]);
        let mut out = Marshal(Vec::new());
        out.int(i64::MIN);
        // -2^63: 5 digits (2^63 = 8 * 2^60), count negative.
        let mut expected = vec![b'l'];
        expected.extend_from_slice(&(-5i32).to_le_bytes());
        expected.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 0, 8, 0]);
        assert_eq!(out.0, expected);
    }

    #[test]
    fn handles_are_listed_by_position() {
        let handle = Node::Handle(HandleInfo {
            id: 9,
            type_name: "builtins.list".into(),
            opmask: 0,
        });
        let packed =
            pack_call(1, None, &args(vec![Node::Int(5), handle, Node::Object(3)])).unwrap();
        // ... ("N" for no name) ... handles: (1, 2)
        assert_eq!(&packed[..8], &[b')', 4, b'i', 1, 0, 0, 0, b'N']);
        assert!(packed.ends_with(&[b')', 2, b'i', 1, 0, 0, 0, b'i', 2, 0, 0, 0]));
    }

    #[test]
    fn calls_and_method_calls_without_keywords_are_packed() {
        let call = |kwargs| Op::Call {
            target: 3,
            args: args(vec![Node::Int(1)]),
            kwargs,
        };
        assert_eq!(
            pack_op(&call(vec![])),
            pack_call(3, None, &args(vec![Node::Int(1)]))
        );
        assert!(pack_op(&call(vec![])).is_some());
        assert!(pack_op(&call(vec![("k".into(), WireValue::none())])).is_none());
        let method = Op::CallMethod {
            target: 3,
            name: "get".into(),
            args: args(vec![]),
            kwargs: vec![],
        };
        assert_eq!(pack_op(&method), pack_call(3, Some("get"), &args(vec![])));
        assert!(pack_op(&Op::Len(3)).is_none());
    }

    #[test]
    fn what_does_not_fit_takes_the_general_path() {
        let nested = WireValue(vec![Node::Tuple(1), Node::List(0)]);
        assert!(pack_call(1, None, &nested).is_none());
        assert!(pack_call(1, None, &args(vec![Node::BigInt("1".repeat(30))])).is_none());
        assert!(pack_call(1, None, &args(vec![Node::Callback(2)])).is_none());
        let big = Node::Bytes(vec![0u8; MAX_PACKED + 1].into());
        assert!(pack_call(1, None, &args(vec![big])).is_none());
        let not_a_tuple = WireValue(vec![Node::Int(1)]);
        assert!(pack_call(1, None, &not_a_tuple).is_none());
        let short = WireValue(vec![Node::Tuple(2), Node::Int(1)]);
        assert!(pack_call(1, None, &short).is_none());
        assert!(pack_call(u64::MAX, None, &args(vec![])).is_none());
    }
}
