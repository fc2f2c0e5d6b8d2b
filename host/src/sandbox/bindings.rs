//! The WIT boundary: the one `bindgen!` of the crate, and the conversions
//! between the generated types and the wire protocol's.
//!
//! Every conversion moves strings and byte buffers instead of copying them.
//!
//! Over 500 lines because `bindgen!` makes two forms of every type (owned
//! results, borrowed params) and each `Op` variant needs a conversion into
//! both; a property test at the bottom holds the two to agreement.

use crate::protocol as wire;

wasmtime::component::bindgen!({
    path: "../wit",
    world: "agent",
    imports: { default: trappable },
    ownership: Borrowing { duplicate_if_necessary: true },
});

pub(crate) use self::pushy::agent::host;
pub(crate) use self::pushy::agent::types as wit;

pub(crate) fn value_to_wit(value: wire::WireValue) -> Vec<wit::NodeResult> {
    value.0.into_iter().map(node_to_wit).collect()
}

fn node_to_wit(node: wire::Node) -> wit::NodeResult {
    match node {
        wire::Node::None => wit::NodeResult::None,
        wire::Node::Bool(b) => wit::NodeResult::Boolean(b),
        wire::Node::Int(i) => wit::NodeResult::Int(i),
        wire::Node::BigInt(s) => wit::NodeResult::BigInt(s),
        wire::Node::Float(f) => wit::NodeResult::Float(f),
        wire::Node::Str(s) => wit::NodeResult::Str(s),
        wire::Node::Bytes(b) => wit::NodeResult::Bytes(b.into()),
        wire::Node::Tuple(n) => wit::NodeResult::Tuple(n),
        wire::Node::List(n) => wit::NodeResult::List(n),
        wire::Node::Dict(n) => wit::NodeResult::Dict(n),
        wire::Node::Set(n) => wit::NodeResult::Set(n),
        wire::Node::FrozenSet(n) => wit::NodeResult::Frozenset(n),
        // A handle coming back from the local side is just a reference by id.
        wire::Node::Handle(h) => wit::NodeResult::Object(h.id),
        wire::Node::Object(id) => wit::NodeResult::Object(id),
        wire::Node::Callback(id) => wit::NodeResult::Callback(id),
    }
}

pub(crate) fn value_from_wit(nodes: Vec<wit::NodeResult>) -> wire::WireValue {
    wire::WireValue(nodes.into_iter().map(node_from_wit).collect())
}

fn node_from_wit(node: wit::NodeResult) -> wire::Node {
    match node {
        wit::NodeResult::None => wire::Node::None,
        wit::NodeResult::Boolean(b) => wire::Node::Bool(b),
        wit::NodeResult::Int(i) => wire::Node::Int(i),
        wit::NodeResult::BigInt(s) => wire::Node::BigInt(s),
        wit::NodeResult::Float(f) => wire::Node::Float(f),
        wit::NodeResult::Str(s) => wire::Node::Str(s),
        wit::NodeResult::Bytes(b) => wire::Node::Bytes(b.into()),
        wit::NodeResult::Tuple(n) => wire::Node::Tuple(n),
        wit::NodeResult::List(n) => wire::Node::List(n),
        wit::NodeResult::Dict(n) => wire::Node::Dict(n),
        wit::NodeResult::Set(n) => wire::Node::Set(n),
        wit::NodeResult::Frozenset(n) => wire::Node::FrozenSet(n),
        wit::NodeResult::Handle(h) => wire::Node::Handle(handle_from_wit(h)),
        wit::NodeResult::Object(id) => wire::Node::Object(id),
        wit::NodeResult::Callback(id) => wire::Node::Callback(id),
        wit::NodeResult::BytesText(text) => wire::Node::Bytes(super::latin1::to_bytes(text).into()),
        // A guest that lies about ASCII only garbles its own bytes.
        wit::NodeResult::BytesAscii(text) => wire::Node::Bytes(text.into_bytes().into()),
    }
}

fn handle_from_wit(h: wit::HandleInfoResult) -> wire::HandleInfo {
    wire::HandleInfo {
        id: h.id,
        type_name: h.type_name,
        opmask: h.opmask,
    }
}

pub(crate) fn kwargs_to_wit(kwargs: wire::Kwargs) -> Vec<(String, Vec<wit::NodeResult>)> {
    kwargs
        .into_iter()
        .map(|(k, v)| (k, value_to_wit(v)))
        .collect()
}

pub(crate) fn kwargs_from_wit(kwargs: Vec<(String, Vec<wit::NodeResult>)>) -> wire::Kwargs {
    kwargs
        .into_iter()
        .map(|(k, v)| (k, value_from_wit(v)))
        .collect()
}

pub(crate) fn op_to_wit(op: wire::Op) -> wit::OpResult {
    use wire::Op as O;
    use wit::OpResult as W;
    match op {
        O::Ping => W::Ping,
        O::Eval(s) => W::Eval(s),
        O::Execute(s) => W::Execute(s),
        O::Define(s) => W::Define(s),
        O::ImportModule(s) => W::ImportModule(s),
        O::GetAttr { target, name } => W::GetAttr(wit::AttrArgsResult { target, name }),
        O::SetAttr {
            target,
            name,
            value,
        } => W::SetAttr(wit::SetAttrArgsResult {
            target,
            name,
            value: value_to_wit(value),
        }),
        O::DelAttr { target, name } => W::DelAttr(wit::AttrArgsResult { target, name }),
        O::Call {
            target,
            args,
            kwargs,
        } => W::Call(wit::CallArgsResult {
            target,
            args: value_to_wit(args),
            kwargs: kwargs_to_wit(kwargs),
        }),
        O::CallMethod {
            target,
            name,
            args,
            kwargs,
        } => W::CallMethod(wit::MethodArgsResult {
            target,
            name,
            args: value_to_wit(args),
            kwargs: kwargs_to_wit(kwargs),
        }),
        O::GetItem { target, key } => W::GetItem(wit::ItemArgsResult {
            target,
            key: value_to_wit(key),
        }),
        O::SetItem { target, key, value } => W::SetItem(wit::SetItemArgsResult {
            target,
            key: value_to_wit(key),
            value: value_to_wit(value),
        }),
        O::DelItem { target, key } => W::DelItem(wit::ItemArgsResult {
            target,
            key: value_to_wit(key),
        }),
        O::Len(t) => W::Len(t),
        O::Contains { target, key } => W::Contains(wit::ItemArgsResult {
            target,
            key: value_to_wit(key),
        }),
        O::Iter { target, max_items } => W::Iter(wit::BatchArgs { target, max_items }),
        O::Next { target, max_items } => W::Next(wit::BatchArgs { target, max_items }),
        O::Repr(t) => W::Repr(t),
        O::Str(t) => W::Str(t),
        O::Truth(t) => W::Truth(t),
        O::Hash(t) => W::Hash(t),
        O::Binary {
            op,
            target,
            other,
            reflected,
        } => W::Binary(wit::BinaryArgsResult {
            op: binary_op(op),
            target,
            other: value_to_wit(other),
            reflected,
        }),
        O::Compare { op, target, other } => W::Compare(wit::CompareArgsResult {
            op: compare_op(op),
            target,
            other: value_to_wit(other),
        }),
        O::Unary { op, target } => W::Unary(wit::UnaryArgs {
            op: unary_op(op),
            target,
        }),
        O::Dir(t) => W::Dir(t),
        O::Obtain { target, max_items } => W::Obtain(wit::BatchArgs { target, max_items }),
        O::Release(entries) => W::Release(
            entries
                .into_iter()
                .map(|e| wit::ReleaseEntry {
                    id: e.id,
                    count: e.count,
                })
                .collect(),
        ),
        O::TableSize => W::TableSize,
        O::Shutdown => W::Shutdown,
        O::SetArgv(argv) => W::SetArgv(argv),
        O::RunScript { source, filename } => W::RunScript((source, filename)),
    }
}

/// Calls `call` with `op` in the borrowed form the `dispatch` export takes:
/// strings and `bytes` payloads are lowered into the guest straight from
/// the decoded message (for a large payload, from the frame it arrived in),
/// with no intermediate owned copy.
pub(crate) fn with_op_param<R>(op: &wire::Op, call: impl FnOnce(wit::OpParam<'_>) -> R) -> R {
    use wit::OpParam as W;
    if let Some(packed) = super::packed::pack_op(op) {
        return call(W::CallPacked(&packed));
    }
    with_general_op_param(op, call)
}

/// [`with_op_param`] without the packed path: every op as its own variant,
/// field for field what [`op_to_wit`] makes of it (a test holds the two
/// conversions to agreement).
fn with_general_op_param<R>(op: &wire::Op, call: impl FnOnce(wit::OpParam<'_>) -> R) -> R {
    use wire::Op as O;
    use wit::OpParam as W;
    match op {
        O::Ping => call(W::Ping),
        O::Eval(s) => call(W::Eval(s)),
        O::Execute(s) => call(W::Execute(s)),
        O::Define(s) => call(W::Define(s)),
        O::ImportModule(s) => call(W::ImportModule(s)),
        O::GetAttr { target, name } => call(W::GetAttr(wit::AttrArgsParam {
            target: *target,
            name,
        })),
        O::SetAttr {
            target,
            name,
            value,
        } => call(W::SetAttr(wit::SetAttrArgsParam {
            target: *target,
            name,
            value: &nodes_param(value),
        })),
        O::DelAttr { target, name } => call(W::DelAttr(wit::AttrArgsParam {
            target: *target,
            name,
        })),
        O::Call {
            target,
            args,
            kwargs,
        } => with_kwargs_param(kwargs, |kwargs| {
            call(W::Call(wit::CallArgsParam {
                target: *target,
                args: &nodes_param(args),
                kwargs,
            }))
        }),
        O::CallMethod {
            target,
            name,
            args,
            kwargs,
        } => with_kwargs_param(kwargs, |kwargs| {
            call(W::CallMethod(wit::MethodArgsParam {
                target: *target,
                name,
                args: &nodes_param(args),
                kwargs,
            }))
        }),
        O::GetItem { target, key } => call(W::GetItem(wit::ItemArgsParam {
            target: *target,
            key: &nodes_param(key),
        })),
        O::SetItem { target, key, value } => call(W::SetItem(wit::SetItemArgsParam {
            target: *target,
            key: &nodes_param(key),
            value: &nodes_param(value),
        })),
        O::DelItem { target, key } => call(W::DelItem(wit::ItemArgsParam {
            target: *target,
            key: &nodes_param(key),
        })),
        O::Len(t) => call(W::Len(*t)),
        O::Contains { target, key } => call(W::Contains(wit::ItemArgsParam {
            target: *target,
            key: &nodes_param(key),
        })),
        O::Iter { target, max_items } => call(W::Iter(wit::BatchArgs {
            target: *target,
            max_items: *max_items,
        })),
        O::Next { target, max_items } => call(W::Next(wit::BatchArgs {
            target: *target,
            max_items: *max_items,
        })),
        O::Repr(t) => call(W::Repr(*t)),
        O::Str(t) => call(W::Str(*t)),
        O::Truth(t) => call(W::Truth(*t)),
        O::Hash(t) => call(W::Hash(*t)),
        O::Binary {
            op,
            target,
            other,
            reflected,
        } => call(W::Binary(wit::BinaryArgsParam {
            op: binary_op(*op),
            target: *target,
            other: &nodes_param(other),
            reflected: *reflected,
        })),
        O::Compare { op, target, other } => call(W::Compare(wit::CompareArgsParam {
            op: compare_op(*op),
            target: *target,
            other: &nodes_param(other),
        })),
        O::Unary { op, target } => call(W::Unary(wit::UnaryArgs {
            op: unary_op(*op),
            target: *target,
        })),
        O::Dir(t) => call(W::Dir(*t)),
        O::Obtain { target, max_items } => call(W::Obtain(wit::BatchArgs {
            target: *target,
            max_items: *max_items,
        })),
        O::Release(entries) => {
            let entries: Vec<wit::ReleaseEntry> = entries
                .iter()
                .map(|e| wit::ReleaseEntry {
                    id: e.id,
                    count: e.count,
                })
                .collect();
            call(W::Release(&entries))
        }
        O::TableSize => call(W::TableSize),
        O::Shutdown => call(W::Shutdown),
        O::SetArgv(argv) => {
            let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
            call(W::SetArgv(&argv))
        }
        O::RunScript { source, filename } => call(W::RunScript((source.as_slice(), filename))),
    }
}

fn nodes_param(value: &wire::WireValue) -> Vec<wit::NodeParam<'_>> {
    value.0.iter().map(node_param).collect()
}

fn node_param(node: &wire::Node) -> wit::NodeParam<'_> {
    use wit::NodeParam as P;
    match node {
        wire::Node::None => P::None,
        wire::Node::Bool(b) => P::Boolean(*b),
        wire::Node::Int(i) => P::Int(*i),
        wire::Node::BigInt(s) => P::BigInt(s),
        wire::Node::Float(f) => P::Float(*f),
        wire::Node::Str(s) => P::Str(s),
        wire::Node::Bytes(b) => P::Bytes(b),
        wire::Node::Tuple(n) => P::Tuple(*n),
        wire::Node::List(n) => P::List(*n),
        wire::Node::Dict(n) => P::Dict(*n),
        wire::Node::Set(n) => P::Set(*n),
        wire::Node::FrozenSet(n) => P::Frozenset(*n),
        // A handle coming back from the local side is just a reference by id.
        wire::Node::Handle(h) => P::Object(h.id),
        wire::Node::Object(id) => P::Object(*id),
        wire::Node::Callback(id) => P::Callback(*id),
    }
}

fn with_kwargs_param<R>(kwargs: &wire::Kwargs, call: impl FnOnce(wit::KwargsParam<'_>) -> R) -> R {
    let values: Vec<Vec<wit::NodeParam<'_>>> =
        kwargs.iter().map(|(_, value)| nodes_param(value)).collect();
    let pairs: Vec<(&str, &[wit::NodeParam<'_>])> = kwargs
        .iter()
        .zip(&values)
        .map(|((name, _), nodes)| (name.as_str(), nodes.as_slice()))
        .collect();
    call(&pairs)
}

fn binary_op(op: wire::BinaryOp) -> wit::BinaryOp {
    use wire::BinaryOp as B;
    match op {
        B::Add => wit::BinaryOp::Add,
        B::Sub => wit::BinaryOp::Sub,
        B::Mul => wit::BinaryOp::Mul,
        B::TrueDiv => wit::BinaryOp::Truediv,
        B::FloorDiv => wit::BinaryOp::Floordiv,
        B::Mod => wit::BinaryOp::Modulo,
        B::Pow => wit::BinaryOp::Pow,
        B::LShift => wit::BinaryOp::Lshift,
        B::RShift => wit::BinaryOp::Rshift,
        B::BitAnd => wit::BinaryOp::BitAnd,
        B::BitOr => wit::BinaryOp::BitOr,
        B::BitXor => wit::BinaryOp::BitXor,
        B::MatMul => wit::BinaryOp::Matmul,
    }
}

fn compare_op(op: wire::CompareOp) -> wit::CompareOp {
    use wire::CompareOp as C;
    match op {
        C::Lt => wit::CompareOp::Lt,
        C::Le => wit::CompareOp::Le,
        C::Eq => wit::CompareOp::Eq,
        C::Ne => wit::CompareOp::Ne,
        C::Gt => wit::CompareOp::Gt,
        C::Ge => wit::CompareOp::Ge,
    }
}

fn unary_op(op: wire::UnaryOp) -> wit::UnaryOp {
    use wire::UnaryOp as U;
    match op {
        U::Neg => wit::UnaryOp::Neg,
        U::Pos => wit::UnaryOp::Pos,
        U::Invert => wit::UnaryOp::Invert,
        U::Abs => wit::UnaryOp::Abs,
    }
}

pub(crate) fn reply_from_wit(reply: wit::Reply) -> wire::Reply {
    match reply {
        wit::Reply::Ok(v) => wire::Reply::Ok(value_from_wit(v)),
        wit::Reply::Error(e) => wire::Reply::Error(wire::ErrorInfo {
            type_name: e.type_name,
            bases: e.bases,
            message: e.message,
            traceback: e.traceback,
            exception: e.exception.map(handle_from_wit),
            memory_limit_hit: false,
            kind: match e.kind {
                wit::ErrorKind::Exception => wire::ErrorKind::Exception,
                wit::ErrorKind::InvalidHandle => wire::ErrorKind::InvalidHandle,
            },
        }),
    }
}

pub(crate) fn reply_to_wit(reply: wire::Reply) -> wit::Reply {
    match reply {
        wire::Reply::Ok(v) => wit::Reply::Ok(value_to_wit(v)),
        wire::Reply::Error(e) => wit::Reply::Error(wit::ErrorInfo {
            type_name: e.type_name,
            bases: e.bases,
            message: e.message,
            traceback: e.traceback,
            exception: e.exception.map(|h| wit::HandleInfoResult {
                id: h.id,
                type_name: h.type_name,
                opmask: h.opmask,
            }),
            kind: match e.kind {
                wire::ErrorKind::Exception => wit::ErrorKind::Exception,
                wire::ErrorKind::InvalidHandle => wit::ErrorKind::InvalidHandle,
            },
        }),
    }
}

pub(crate) fn inbound_to_wit(inbound: wire::Inbound) -> wit::Inbound {
    match inbound {
        wire::Inbound::Done(reply) => wit::Inbound::Done(reply_to_wit(reply)),
        wire::Inbound::Request(op) => wit::Inbound::Request(op_to_wit(op)),
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use proptest::strategy::ValueTree;
    use proptest::test_runner::{Config, TestRunner};

    use super::*;

    use crate::protocol::strategies::{OP_VARIANTS, cases, nodes, op, op_variant};

    /// The two conversions of an op, owned (nested requests) and borrowed
    /// (the `dispatch` export), as text: the generated types differ only in
    /// their names' suffix.
    fn both_forms(op: &wire::Op) -> (String, String) {
        let owned = format!("{:?}", op_to_wit(op.clone()));
        let borrowed = with_general_op_param(op, |param| format!("{param:?}"));
        (
            owned.replace("Result", "").replace("Param", ""),
            borrowed.replace("Result", "").replace("Param", ""),
        )
    }

    #[test]
    fn owned_and_borrowed_conversions_of_every_op_agree() {
        let mut runner = TestRunner::new(Config::with_cases(cases(512)));
        runner
            .run(&op(), |op| {
                let (owned, borrowed) = both_forms(&op);
                prop_assert_eq!(owned, borrowed, "{:?}", op);
                Ok(())
            })
            .unwrap();
    }

    #[test]
    fn the_op_strategy_reaches_every_variant() {
        let mut runner = TestRunner::deterministic();
        let strategy = op();
        let mut seen = [false; OP_VARIANTS];
        for _ in 0..4000 {
            let op = strategy.new_tree(&mut runner).unwrap().current();
            seen[op_variant(&op)] = true;
        }
        let missing: Vec<usize> = (0..OP_VARIANTS).filter(|&i| !seen[i]).collect();
        assert!(missing.is_empty(), "variants never generated: {missing:?}");
    }

    #[test]
    fn values_survive_wire_to_wit_and_back() {
        fn same(a: &wire::Node, b: &wire::Node) -> bool {
            match (a, b) {
                // NaN is not equal to itself; compare bits.
                (wire::Node::Float(x), wire::Node::Float(y)) => x.to_bits() == y.to_bits(),
                // A handle travelling back to the guest is a reference by id.
                (wire::Node::Handle(h), wire::Node::Object(id)) => h.id == *id,
                _ => a == b,
            }
        }
        let mut runner = TestRunner::new(Config::with_cases(cases(256)));
        runner
            .run(&nodes(), |input| {
                let back = value_from_wit(value_to_wit(wire::WireValue(input.clone())));
                prop_assert_eq!(back.0.len(), input.len());
                for (a, b) in input.iter().zip(&back.0) {
                    prop_assert!(same(a, b), "{:?} became {:?}", a, b);
                }
                Ok(())
            })
            .unwrap();
    }
}
