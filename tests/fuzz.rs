//! Property tests against a real session: random sequences of raw protocol
//! operations, and the packed call path against the general one.
//! `scripts/fuzz` runs them (and the unit properties) with many cases.

use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use pushy::protocol::{BinaryOp, CompareOp, Node, Op, ReleaseEntry, WireValue};
use pushy::{
    Connection, ConnectionConfig, Error, OutputMode, Sandbox, SandboxConfig, SessionConfig,
};

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

/// Plain values and references to low handle ids (some issued, some not).
fn args() -> impl Strategy<Value = WireValue> {
    let leaf = prop_oneof![
        Just(Node::None),
        any::<bool>().prop_map(Node::Bool),
        any::<i64>().prop_map(Node::Int),
        ".{0,8}".prop_map(Node::Str),
        (0u64..16).prop_map(Node::Object),
    ];
    proptest::collection::vec(leaf, 0..6).prop_map(|items| {
        let mut nodes = vec![Node::Tuple(items.len() as u32)];
        nodes.extend(items);
        WireValue(nodes)
    })
}

/// A value that may be malformed (a random node list).
fn raw_value() -> impl Strategy<Value = WireValue> {
    let node = prop_oneof![
        Just(Node::None),
        any::<i64>().prop_map(Node::Int),
        (0u32..4).prop_map(Node::List),
        (0u32..3).prop_map(Node::Dict),
        (0u64..16).prop_map(Node::Object),
        any::<u64>().prop_map(Node::Callback),
    ];
    proptest::collection::vec(node, 0..8).prop_map(WireValue)
}

fn op() -> impl Strategy<Value = Op> {
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
        (target.clone(), name, raw_value()).prop_map(|(target, name, value)| Op::SetAttr {
            target,
            name,
            value
        }),
        (target.clone(), args(), name).prop_map(|(target, args, key)| Op::Call {
            target,
            args,
            kwargs: vec![(key, WireValue::none())],
        }),
        (target.clone(), name, args()).prop_map(|(target, name, args)| Op::CallMethod {
            target,
            name,
            args,
            kwargs: vec![]
        }),
        (target.clone(), raw_value()).prop_map(|(target, key)| Op::GetItem { target, key }),
        (target.clone(), raw_value()).prop_map(|(target, key)| Op::Contains { target, key }),
        target.clone().prop_map(Op::Len),
        target.clone().prop_map(Op::Repr),
        target.clone().prop_map(Op::Dir),
        target.clone().prop_map(Op::Hash),
        (target.clone(), 0u32..5).prop_map(|(target, max_items)| Op::Iter { target, max_items }),
        (target.clone(), 0u32..5).prop_map(|(target, max_items)| Op::Next { target, max_items }),
        (target.clone(), 0u32..50).prop_map(|(target, max_items)| Op::Obtain { target, max_items }),
        (target.clone(), raw_value()).prop_map(|(target, other)| Op::Binary {
            op: BinaryOp::Add,
            target,
            other,
            reflected: false
        }),
        (target.clone(), raw_value()).prop_map(|(target, other)| Op::Compare {
            op: CompareOp::Lt,
            target,
            other
        }),
        proptest::collection::vec((target, 0u32..3), 0..4).prop_map(|entries| Op::Release(
            entries
                .into_iter()
                .map(|(id, count)| ReleaseEntry { id, count })
                .collect()
        )),
    ]
}

/// What may come of a random operation: an answer, a Python exception, a
/// refusal of its arguments, or the end of the session by a limit or an
/// explicit shutdown — never a dead host or a broken link.
#[test]
fn random_operations_get_an_answer_or_a_typed_refusal() {
    let rt = runtime();
    let sandbox = Sandbox::new(SandboxConfig::default()).expect("sandbox");
    let mut session = SessionConfig::default();
    session.time_limit = Some(std::time::Duration::from_secs(5));
    let mut config = ConnectionConfig::default();
    config.output = OutputMode::Discard;
    let connect = || {
        rt.block_on(Connection::embedded_with(
            &sandbox,
            session.clone(),
            config.clone(),
        ))
        .expect("session")
    };
    let con = std::cell::RefCell::new(connect());
    let mut runner = TestRunner::new(Config::with_cases(cases(64)));
    let answered = std::cell::Cell::new(0usize);
    runner
        .run(&proptest::collection::vec(op(), 1..24), |ops| {
            for op in ops {
                let result = rt.block_on(con.borrow().request_op(op.clone()));
                match result {
                    Ok(_) => answered.set(answered.get() + 1),
                    Err(Error::Python(_) | Error::InvalidHandle(_) | Error::BadArgument(_)) => {}
                    Err(
                        Error::Trapped { .. } | Error::TimeLimit { .. } | Error::MemoryLimit { .. },
                    ) => {
                        *con.borrow_mut() = connect();
                    }
                    Err(other) => prop_assert!(false, "{:?} -> {:?}", op, other),
                }
                // The session answers the next request, or says it ended.
                let alive = rt.block_on(con.borrow().ping());
                match alive {
                    Ok(()) => {}
                    Err(Error::SessionTerminated { .. }) => *con.borrow_mut() = connect(),
                    Err(other) => prop_assert!(false, "ping after {:?}: {:?}", op, other),
                }
            }
            Ok(())
        })
        .unwrap();
    assert!(answered.get() > 0, "no operation was ever answered");
}

/// Positional arguments of the kinds the packed form carries.
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

/// A call without keywords takes the packed path (a unit property of
/// `sandbox::packed` shows such calls always pack); one keyword sends the
/// same call the general way. Python must see the same arguments.
#[test]
fn packed_and_general_calls_agree() {
    let rt = runtime();
    let con = rt.block_on(pushy::connect("embedded:")).expect("session");
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
            let count = items.len();
            let mut args = vec![Node::Tuple(count as u32)];
            args.extend(items);
            let args = WireValue(args);
            let packed = rt.block_on(con.request_op(Op::Call {
                target: describe.id(),
                args: args.clone(),
                kwargs: vec![],
            }));
            let general = rt.block_on(con.request_op(Op::Call {
                target: describe.id(),
                args,
                kwargs: vec![("unused".into(), WireValue::none())],
            }));
            prop_assert_eq!(format!("{packed:?}"), format!("{general:?}"));
            let packed = packed.map_err(|e| TestCaseError::fail(e.to_string()))?;
            let described: Vec<(String, String)> = packed
                .extract()
                .map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert_eq!(described.len(), count);
            Ok(())
        })
        .unwrap();
}
