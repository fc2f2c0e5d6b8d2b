//! The constants the guest (`guest/pushy_guest/`) and the host both spell
//! out must agree: each is read from a live embedded session and compared
//! with the host's public constant.

mod common;

use common::session;
use pushy::protocol::{self, opmask};
use pushy::{CALLBACK_ERROR_TYPE, CallArgs, Connection, Error, Value};

/// A session with the guest modules that hold the constants imported.
async fn guest() -> Connection {
    let con = session().await;
    con.execute("import pushy_guest.table, pushy_guest.values")
        .await
        .expect("the guest's modules import");
    con
}

async fn guest_usize(con: &Connection, expression: &str) -> usize {
    con.eval(expression)
        .await
        .and_then(|v| v.extract::<usize>())
        .unwrap_or_else(|e| panic!("{expression}: {e}"))
}

#[tokio::test]
async fn the_depth_limit_is_one_value() {
    let con = guest().await;
    assert_eq!(
        guest_usize(&con, "pushy_guest.values.MAX_DEPTH").await,
        protocol::MAX_DEPTH
    );
}

#[tokio::test]
async fn big_ints_turn_hexadecimal_at_one_size() {
    let con = guest().await;
    assert_eq!(
        guest_usize(&con, "pushy_guest.values.DECIMAL_INT_BITS").await as u64,
        protocol::DECIMAL_INT_BITS
    );
    // Both forms cross both ways, and the guest reads the host's text.
    let echo = con
        .eval("lambda x: x")
        .await
        .unwrap()
        .into_object()
        .unwrap();
    for expression in ["-(2 ** 13000)", "-(2 ** 14000 + 1)", "2 ** 100"] {
        let value = con.eval(expression).await.unwrap();
        let Value::BigInt(text) = &value else {
            panic!("{expression} gave {value:?}")
        };
        let hex = text.trim_start_matches('-').starts_with("0x");
        assert_eq!(hex, expression.contains("14000"), "{expression}: {text}");
        let back = echo.call(&(value.clone(),)).await.unwrap();
        assert!(
            matches!(&back, Value::BigInt(same) if same == text),
            "{back:?}"
        );
        let same = con
            .eval(&format!("lambda x: x == {expression}"))
            .await
            .unwrap()
            .into_object()
            .unwrap();
        let equal = same.call(&(value,)).await.unwrap();
        assert!(
            matches!(equal, Value::Bool(true)),
            "{expression}: {equal:?}"
        );
    }
}

/// `levels` tuples, each holding the next; the innermost is empty.
fn nested_tuples(levels: usize) -> Value {
    (1..levels).fold(Value::Tuple(Vec::new()), |inner, _| {
        Value::Tuple(vec![inner])
    })
}

fn tuple_levels(value: &Value) -> usize {
    match value {
        Value::Tuple(items) => 1 + items.first().map_or(0, tuple_levels),
        _ => 0,
    }
}

#[tokio::test]
async fn a_value_max_depth_deep_crosses_both_ways_and_one_level_more_is_refused_by_its_sender() {
    let con = guest().await;
    let depth = protocol::MAX_DEPTH;
    let from_guest = |levels: usize| {
        format!("__import__('functools').reduce(lambda acc, _: (acc,), range({levels} - 1), ())")
    };
    let value = con
        .eval(&from_guest(depth))
        .await
        .expect("MAX_DEPTH levels cross");
    assert_eq!(tuple_levels(&value), depth);
    let refused = con.eval(&from_guest(depth + 1)).await.unwrap_err();
    assert!(refused.is_python("ValueError"), "{refused}");

    // The arguments' own tuple is the outermost level of a call's value.
    let levels = con
        .define("def levels(v):\n    n = 1\n    while v:\n        n, v = n + 1, v[0]\n    return n")
        .await
        .expect("define");
    let arrived = levels.call(&(nested_tuples(depth - 1),)).await;
    assert_eq!(
        arrived.and_then(|v| v.extract::<usize>()).ok(),
        Some(depth - 1)
    );
    // One level more never leaves the host: the guest would refuse it.
    let refused = levels.call(&(nested_tuples(depth),)).await.unwrap_err();
    assert!(matches!(refused, Error::BadArgument(_)), "{refused:?}");
}

#[tokio::test]
async fn the_value_size_limits_are_the_ones_the_host_sizes_its_calls_for() {
    let con = guest().await;
    assert_eq!(
        guest_usize(&con, "pushy_guest.values.MAX_VALUE_BYTES").await,
        protocol::MAX_VALUE_BYTES
    );
    assert_eq!(
        guest_usize(&con, "pushy_guest.values.MAX_VALUE_NODES").await,
        protocol::MAX_VALUE_NODES
    );
}

#[tokio::test]
async fn every_opmask_bit_of_the_host_is_the_guest_s_bit_for_that_dunder() {
    let con = guest().await;
    let bits = [
        ("__call__", opmask::CALL),
        ("__getitem__", opmask::GETITEM),
        ("__setitem__", opmask::SETITEM),
        ("__delitem__", opmask::DELITEM),
        ("__len__", opmask::LEN),
        ("__contains__", opmask::CONTAINS),
        ("__iter__", opmask::ITER),
        ("__next__", opmask::NEXT),
        ("__enter__", opmask::ENTER),
        ("__exit__", opmask::EXIT),
        ("__hash__", opmask::HASH),
        ("__bool__", opmask::BOOL),
        ("__add__", opmask::ADD),
        ("__sub__", opmask::SUB),
        ("__mul__", opmask::MUL),
    ];
    for (dunder, bit) in bits {
        let position = guest_usize(
            &con,
            &format!("pushy_guest.table.OPMASK_DUNDERS.index({dunder:?})"),
        )
        .await;
        assert_eq!(1u64 << position, bit, "{dunder}");
    }
    // Every guest bit fits the host's `u64`.
    assert!(guest_usize(&con, "len(pushy_guest.table.OPMASK_DUNDERS)").await <= 64);
}

#[tokio::test]
async fn the_invalid_handle_exception_has_the_name_the_host_matches() {
    let con = guest().await;
    let name: String = con
        .eval("pushy_guest.table.qualified_name(pushy_guest.table.InvalidHandle)")
        .await
        .and_then(|v| v.extract())
        .expect("the guest names its exception");
    assert_eq!(name, protocol::INVALID_HANDLE_TYPE);
}

#[tokio::test]
async fn a_failed_callback_reaches_guest_code_under_the_host_s_type_name() {
    // The host names a failed callback's error CALLBACK_ERROR_TYPE: the
    // qualified name of the class guest code catches, which then carries
    // the callback's own message.
    let con = guest().await;
    let failing = con.callback(|_args: CallArgs| -> Result<(), String> { Err("no".into()) });
    let call = con
        .define(
            "def call(f):\n    try:\n        f()\n    except Exception as e:\n        \
             return pushy_guest.table.qualified_name(type(e)), str(e)",
        )
        .await
        .expect("define");
    let (name, message): (String, String) = call
        .call(&(&failing,))
        .await
        .and_then(|v| v.extract())
        .expect("the guest catches the callback's error");
    assert_eq!(name, CALLBACK_ERROR_TYPE);
    assert_eq!(message, "no");
}
