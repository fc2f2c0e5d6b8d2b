//! proptest strategies for the wire types, shared by the property tests of
//! the layers that carry them (the codec, the WIT conversions, value trees).

use proptest::prelude::*;

use super::{BinaryOp, CompareOp, HandleInfo, Kwargs, Node, Op, ReleaseEntry, UnaryOp, WireValue};

/// Cases per property: `PROPTEST_CASES` (set by `scripts/fuzz`) overrides
/// the smoke default that `cargo test` runs.
pub(crate) fn cases(default: u32) -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Any node, containers with small claimed lengths included.
pub(crate) fn node() -> impl Strategy<Value = Node> {
    prop_oneof![
        Just(Node::None),
        any::<bool>().prop_map(Node::Bool),
        any::<i64>().prop_map(Node::Int),
        "[0-9]{0,30}".prop_map(Node::BigInt),
        any::<f64>().prop_map(Node::Float),
        ".{0,12}".prop_map(Node::Str),
        proptest::collection::vec(any::<u8>(), 0..16).prop_map(|b| Node::Bytes(b.into())),
        (0u32..5).prop_map(Node::Tuple),
        (0u32..5).prop_map(Node::List),
        (0u32..3).prop_map(Node::Dict),
        (0u32..4).prop_map(Node::Set),
        (0u32..4).prop_map(Node::FrozenSet),
        (any::<u64>(), ".{0,8}", any::<u64>()).prop_map(|(id, type_name, opmask)| Node::Handle(
            HandleInfo {
                id,
                type_name,
                opmask
            }
        )),
        any::<u64>().prop_map(Node::Object),
        any::<u64>().prop_map(Node::Callback),
    ]
}

/// A node list: well-formed trees and broken ones alike.
pub(crate) fn nodes() -> impl Strategy<Value = Vec<Node>> {
    proptest::collection::vec(node(), 0..40)
}

fn value() -> impl Strategy<Value = WireValue> {
    nodes().prop_map(WireValue)
}

fn kwargs() -> impl Strategy<Value = Kwargs> {
    proptest::collection::vec(("[a-z_]{1,6}", value()), 0..3)
}

/// Every operation, each variant with random fields.
pub(crate) fn op() -> impl Strategy<Value = Op> {
    let target = any::<u64>;
    let name = || "[a-z_]{0,8}";
    let binary = prop::sample::select(vec![
        BinaryOp::Add,
        BinaryOp::Sub,
        BinaryOp::Mul,
        BinaryOp::TrueDiv,
        BinaryOp::FloorDiv,
        BinaryOp::Mod,
        BinaryOp::Pow,
        BinaryOp::LShift,
        BinaryOp::RShift,
        BinaryOp::BitAnd,
        BinaryOp::BitOr,
        BinaryOp::BitXor,
        BinaryOp::MatMul,
    ]);
    let compare = prop::sample::select(vec![
        CompareOp::Lt,
        CompareOp::Le,
        CompareOp::Eq,
        CompareOp::Ne,
        CompareOp::Gt,
        CompareOp::Ge,
    ]);
    let unary = prop::sample::select(vec![
        UnaryOp::Neg,
        UnaryOp::Pos,
        UnaryOp::Invert,
        UnaryOp::Abs,
    ]);
    prop_oneof![
        Just(Op::Ping),
        ".{0,16}".prop_map(Op::Eval),
        ".{0,16}".prop_map(Op::Execute),
        ".{0,16}".prop_map(Op::Define),
        name().prop_map(Op::ImportModule),
        (target(), name()).prop_map(|(target, name)| Op::GetAttr { target, name }),
        (target(), name(), value()).prop_map(|(target, name, value)| Op::SetAttr {
            target,
            name,
            value
        }),
        (target(), name()).prop_map(|(target, name)| Op::DelAttr { target, name }),
        (target(), value(), kwargs()).prop_map(|(target, args, kwargs)| Op::Call {
            target,
            args,
            kwargs
        }),
        (target(), name(), value(), kwargs()).prop_map(|(target, name, args, kwargs)| {
            Op::CallMethod {
                target,
                name,
                args,
                kwargs,
            }
        }),
        (target(), value()).prop_map(|(target, key)| Op::GetItem { target, key }),
        (target(), value(), value()).prop_map(|(target, key, value)| Op::SetItem {
            target,
            key,
            value
        }),
        (target(), value()).prop_map(|(target, key)| Op::DelItem { target, key }),
        target().prop_map(Op::Len),
        (target(), value()).prop_map(|(target, key)| Op::Contains { target, key }),
        (target(), any::<u32>()).prop_map(|(target, max_items)| Op::Iter { target, max_items }),
        (target(), any::<u32>()).prop_map(|(target, max_items)| Op::Next { target, max_items }),
        target().prop_map(Op::Repr),
        target().prop_map(Op::Str),
        target().prop_map(Op::Truth),
        target().prop_map(Op::Hash),
        (binary, target(), value(), any::<bool>()).prop_map(|(op, target, other, reflected)| {
            Op::Binary {
                op,
                target,
                other,
                reflected,
            }
        }),
        (compare, target(), value()).prop_map(|(op, target, other)| Op::Compare {
            op,
            target,
            other
        }),
        (unary, target()).prop_map(|(op, target)| Op::Unary { op, target }),
        target().prop_map(Op::Dir),
        (target(), any::<u32>()).prop_map(|(target, max_items)| Op::Obtain { target, max_items }),
        proptest::collection::vec((target(), any::<u32>()), 0..4).prop_map(|entries| {
            Op::Release(
                entries
                    .into_iter()
                    .map(|(id, count)| ReleaseEntry { id, count })
                    .collect(),
            )
        }),
        Just(Op::TableSize),
        proptest::collection::vec(".{0,8}", 0..4).prop_map(Op::SetArgv),
        (proptest::collection::vec(any::<u8>(), 0..32), ".{0,8}")
            .prop_map(|(source, filename)| Op::RunScript { source, filename }),
        Just(Op::Shutdown),
    ]
}

/// The variant's position in [`Op`]: an exhaustive match, so that a new
/// variant fails to compile here until the strategies cover it.
pub(crate) fn op_variant(op: &Op) -> usize {
    match op {
        Op::Ping => 0,
        Op::Eval(_) => 1,
        Op::Execute(_) => 2,
        Op::Define(_) => 3,
        Op::ImportModule(_) => 4,
        Op::GetAttr { .. } => 5,
        Op::SetAttr { .. } => 6,
        Op::DelAttr { .. } => 7,
        Op::Call { .. } => 8,
        Op::CallMethod { .. } => 9,
        Op::GetItem { .. } => 10,
        Op::SetItem { .. } => 11,
        Op::DelItem { .. } => 12,
        Op::Len(_) => 13,
        Op::Contains { .. } => 14,
        Op::Iter { .. } => 15,
        Op::Next { .. } => 16,
        Op::Repr(_) => 17,
        Op::Str(_) => 18,
        Op::Truth(_) => 19,
        Op::Hash(_) => 20,
        Op::Binary { .. } => 21,
        Op::Compare { .. } => 22,
        Op::Unary { .. } => 23,
        Op::Dir(_) => 24,
        Op::Obtain { .. } => 25,
        Op::Release(_) => 26,
        Op::TableSize => 27,
        Op::SetArgv(_) => 28,
        Op::RunScript { .. } => 29,
        Op::Shutdown => 30,
    }
}

/// How many variants [`op_variant`] numbers.
pub(crate) const OP_VARIANTS: usize = 31;
