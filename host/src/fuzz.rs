//! Property-based fuzzing of the parsers that face untrusted bytes: the
//! frame decoder, the value conversion between wire and WIT, and building
//! value trees from wire nodes. (cargo-fuzz needs a nightly toolchain, which
//! this project's machines do not have; proptest runs on stable.)
//! `scripts/fuzz` runs these with many cases; `cargo test` runs a smoke.

use bytes::BytesMut;
use proptest::prelude::*;
use tokio_util::codec::{Decoder, Encoder};

use crate::protocol::{ClientMessage, HandleInfo, Node, Op, ServerMessage, WireValue};
use crate::sandbox::fuzzing::{pack_call, value_from_wit, value_to_wit};
use crate::transport::WireCodec;

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

pub(crate) fn nodes() -> impl Strategy<Value = Vec<Node>> {
    proptest::collection::vec(node(), 0..40)
}

fn same(a: &Node, b: &Node) -> bool {
    match (a, b) {
        // NaN is not equal to itself; compare bits.
        (Node::Float(x), Node::Float(y)) => x.to_bits() == y.to_bits(),
        // A handle travelling back to the guest is a reference by id.
        (Node::Handle(h), Node::Object(id)) => h.id == *id,
        _ => a == b,
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(256), ..ProptestConfig::default() })]

    #[test]
    fn frame_decoder_never_panics_on_random_bytes(input in proptest::collection::vec(any::<u8>(), 0..512)) {
        let mut host = WireCodec::<ClientMessage, ServerMessage>::new(4096);
        let mut client = WireCodec::<ServerMessage, ClientMessage>::new(4096);
        for codec_input in [input.clone(), input] {
            let mut buf = BytesMut::from(&codec_input[..]);
            while let Ok(Some(_)) = host.decode(&mut buf) {}
            let mut buf = BytesMut::from(&codec_input[..]);
            while let Ok(Some(_)) = client.decode(&mut buf) {}
            let mut buf = BytesMut::from(&codec_input[..]);
            let _ = host.decode_eof(&mut buf);
        }
    }

    #[test]
    fn frames_with_random_bodies_decode_or_fail_cleanly(body in proptest::collection::vec(any::<u8>(), 0..256)) {
        let mut framed = BytesMut::from(&(body.len() as u32).to_be_bytes()[..]);
        framed.extend_from_slice(&body);
        let mut host = WireCodec::<ClientMessage, ServerMessage>::default();
        let _ = host.decode(&mut framed);
    }

    #[test]
    fn requests_round_trip_through_the_codec(id in any::<u64>(), target in any::<u64>(), args in nodes()) {
        let message = ClientMessage::Request {
            id,
            op: Op::Call { target, args: WireValue(args), kwargs: vec![] },
        };
        let mut client = WireCodec::<ServerMessage, ClientMessage>::default();
        let mut host = WireCodec::<ClientMessage, ServerMessage>::default();
        let mut buf = BytesMut::new();
        client.encode(message.clone(), &mut buf).unwrap();
        let decoded = host.decode(&mut buf).unwrap().unwrap();
        // Compare through the debug form: NaN != NaN under PartialEq.
        prop_assert_eq!(format!("{decoded:?}"), format!("{message:?}"));
    }

    #[test]
    fn values_survive_wire_to_wit_and_back(input in nodes()) {
        let back = value_from_wit(value_to_wit(WireValue(input.clone())));
        prop_assert_eq!(back.0.len(), input.len());
        for (a, b) in input.iter().zip(&back.0) {
            prop_assert!(same(a, b), "{a:?} became {b:?}");
        }
    }
}

/// Cases per property: `PROPTEST_CASES` overrides the smoke default.
fn cases(default: u32) -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

#[test]
fn value_trees_from_random_nodes_never_panic() {
    use proptest::test_runner::{Config, TestRunner};
    let rt = runtime();
    rt.block_on(async {
        let (outbound, _requests) = tokio::sync::mpsc::unbounded_channel();
        let (_replies, inbound) = tokio::sync::mpsc::unbounded_channel();
        let con = crate::Connection::start(outbound, inbound, crate::ConnectionConfig::default());
        let mut runner = TestRunner::new(Config::with_cases(cases(512)));
        runner
            .run(&nodes(), |input| {
                // Malformed trees are a typed error, never a panic.
                let _ = con.shared.value_from_wire(WireValue(input));
                Ok(())
            })
            .unwrap();
    });
}

fn op() -> impl Strategy<Value = Op> {
    use crate::protocol::{BinaryOp, CompareOp, ReleaseEntry};
    let target = 0u64..16;
    let seeds = prop::sample::select(vec![
        "[1, 2, 3]",
        "{'a': 1, 2: [3]}",
        "object()",
        "range(5)",
        "iter([1, 2, 3])",
        "b'xy'",
        "(1, (2, 3))",
        "len",
        "dict",
        "'text'",
        "[[]] * 3",
        "1 +",
        "__import__('json')",
    ]);
    let name = "[a-z_]{1,8}";
    prop_oneof![
        Just(Op::Ping),
        Just(Op::TableSize),
        Just(Op::Shutdown),
        seeds.prop_map(|s| Op::Eval(s.to_owned())),
        name.prop_map(Op::ImportModule),
        (target.clone(), name).prop_map(|(target, name)| Op::GetAttr { target, name }),
        (target.clone(), name, nodes()).prop_map(|(target, name, v)| Op::SetAttr {
            target,
            name,
            value: WireValue(v)
        }),
        (target.clone(), nodes(), name).prop_map(|(target, args, key)| Op::Call {
            target,
            args: WireValue(args),
            kwargs: vec![(key, WireValue::none())],
        }),
        (target.clone(), name, nodes()).prop_map(|(target, name, args)| Op::CallMethod {
            target,
            name,
            args: WireValue(args),
            kwargs: vec![]
        }),
        (target.clone(), nodes()).prop_map(|(target, key)| Op::GetItem {
            target,
            key: WireValue(key)
        }),
        (target.clone(), nodes(), nodes()).prop_map(|(target, key, value)| Op::SetItem {
            target,
            key: WireValue(key),
            value: WireValue(value)
        }),
        (target.clone(), nodes()).prop_map(|(target, key)| Op::Contains {
            target,
            key: WireValue(key)
        }),
        target.clone().prop_map(Op::Len),
        target.clone().prop_map(Op::Repr),
        target.clone().prop_map(Op::Dir),
        target.clone().prop_map(Op::Hash),
        (target.clone(), 0u32..5).prop_map(|(target, max_items)| Op::Iter { target, max_items }),
        (target.clone(), 0u32..5).prop_map(|(target, max_items)| Op::Next { target, max_items }),
        (target.clone(), 0u32..50).prop_map(|(target, max_items)| Op::Obtain { target, max_items }),
        (target.clone(), nodes()).prop_map(|(target, other)| Op::Binary {
            op: BinaryOp::Add,
            target,
            other: WireValue(other),
            reflected: false
        }),
        (target.clone(), nodes()).prop_map(|(target, other)| Op::Compare {
            op: CompareOp::Lt,
            target,
            other: WireValue(other)
        }),
        proptest::collection::vec((target, 0u32..3), 0..4).prop_map(|entries| Op::Release(
            entries
                .into_iter()
                .map(|(id, count)| ReleaseEntry { id, count })
                .collect()
        )),
    ]
}

#[test]
fn the_session_answers_random_operations_without_dying() {
    use proptest::test_runner::{Config, TestRunner};
    let rt = runtime();
    let sandbox = crate::Sandbox::new(crate::SandboxConfig::default()).expect("sandbox");
    let session = crate::SessionConfig {
        time_limit: Some(std::time::Duration::from_secs(5)),
        ..Default::default()
    };
    let config = crate::ConnectionConfig {
        output: crate::OutputMode::Discard,
        ..Default::default()
    };
    let connect = || {
        rt.block_on(sandbox.connect_with(session.clone(), config.clone()))
            .expect("session")
    };
    let con = std::cell::RefCell::new(connect());
    let mut runner = TestRunner::new(Config::with_cases(cases(64)));
    runner
        .run(&proptest::collection::vec(op(), 1..24), |ops| {
            for op in ops {
                let result = rt.block_on(con.borrow().request_op(op.clone()));
                match result {
                    Ok(_)
                    | Err(crate::Error::Python(_))
                    | Err(crate::Error::InvalidHandle(_))
                    | Err(crate::Error::BadArgument(_))
                    | Err(crate::Error::Protocol(_)) => {}
                    // A guest trap is an acceptable end of a session...
                    Err(
                        crate::Error::SessionTerminated { .. }
                        | crate::Error::TimeLimit { .. }
                        | crate::Error::MemoryLimit { .. },
                    ) => {
                        *con.borrow_mut() = connect();
                    }
                    // ...but a session whose host side died is a bug.
                    Err(other) => prop_assert!(false, "{op:?} -> {other:?}"),
                }
            }
            let alive = rt.block_on(con.borrow().ping());
            let usable =
                alive.is_ok() || matches!(alive, Err(crate::Error::SessionTerminated { .. }));
            prop_assert!(usable, "ping after the sequence: {:?}", alive);
            Ok(())
        })
        .unwrap();
}

/// Positional arguments the packed path carries: plain values and handles
/// (`handles` are ids the session issued).
fn packable_args(handles: Vec<u64>) -> impl Strategy<Value = Vec<Node>> {
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
        prop::sample::select(handles).prop_map(Node::Object),
    ];
    proptest::collection::vec(node, 0..12)
}

#[test]
fn packed_and_general_calls_agree() {
    use proptest::test_runner::{Config, TestRunner};
    let rt = runtime();
    let sandbox = crate::Sandbox::new(crate::SandboxConfig::default()).expect("sandbox");
    let con = rt.block_on(sandbox.connect()).expect("session");
    let object = |source: &str| {
        rt.block_on(con.eval(source))
            .and_then(|v| v.into_object())
            .expect("object")
    };
    // The guest reports the type and repr of every argument it received, so
    // the two encodings are compared as Python sees them.
    let describe = object("lambda *a, **k: tuple((type(x).__name__, repr(x)) for x in a)");
    let held = [object("[1]"), object("{'k': 2}")];
    let handles = held.iter().map(|o| o.id()).collect();
    let mut runner = TestRunner::new(Config::with_cases(cases(128)));
    runner
        .run(&packable_args(handles), |items| {
            let mut args = vec![Node::Tuple(items.len() as u32)];
            args.extend(items);
            let args = WireValue(args);
            prop_assert!(pack_call(describe.id(), None, &args).is_some());
            let packed = rt.block_on(con.request_op(Op::Call {
                target: describe.id(),
                args: args.clone(),
                kwargs: vec![],
            }));
            // A keyword argument sends the same call the general way.
            let general = rt.block_on(con.request_op(Op::Call {
                target: describe.id(),
                args,
                kwargs: vec![("unused".into(), WireValue::none())],
            }));
            prop_assert_eq!(format!("{packed:?}"), format!("{general:?}"));
            prop_assert!(packed.is_ok(), "{:?}", packed);
            Ok(())
        })
        .unwrap();
}
