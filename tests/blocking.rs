//! The blocking facade, used as a program without an async runtime would:
//! every method of the async API, on an embedded session and over `local:`.

use std::collections::BTreeMap;

use pushy::blocking::{self, Connection, RemoteObject};
use pushy::protocol::{BinaryOp, CompareOp, Op, UnaryOp};
use pushy::{ConnectionConfig, Error, OutputMode, Value};

fn object(con: &Connection, expression: &str) -> RemoteObject {
    RemoteObject::try_from(con.eval(expression).unwrap()).unwrap()
}

fn exercise(con: &Connection) -> anyhow::Result<()> {
    // Connection: eval, execute, define, import, modules, request_op, ping,
    // table_size, set_argv (run_script at the end).
    con.execute("import sys\nclass Box:\n    pass\nbox = Box()")?;
    let add = con.define("def add(a, b=1, *, c=0):\n    return a + b + c")?;
    assert!(add.is_callable());
    let kwargs = BTreeMap::from([("c", 10)]);
    assert_eq!(add.call_kw(&(1, 2), &kwargs)?.extract::<i64>()?, 13);
    assert_eq!(add.call(&(5,))?.extract::<i64>()?, 6);
    let json = con.modules().import("json")?;
    let again = con.modules().import("json")?;
    assert_eq!(json.id(), again.id());
    assert_eq!(con.import("os.path")?.type_name(), "builtins.module");
    assert_eq!(
        con.request_op(Op::Eval("6 * 7".into()))?.extract::<i64>()?,
        42
    );
    con.ping()?;
    assert!(con.table_size()? > 0);
    con.set_argv(&["prog".into(), "x".into()])?;
    assert_eq!(con.eval("sys.argv[1]")?.extract::<String>()?, "x");

    // RemoteObject: attributes.
    let boxed = object(con, "box");
    boxed.setattr("n", &5)?;
    assert_eq!(boxed.getattr("n")?.extract::<i64>()?, 5);
    boxed.delattr("n")?;
    let err = boxed.getattr("n").unwrap_err();
    assert!(err.is_python("AttributeError"), "{err}");
    assert!(boxed.dir()?.iter().any(|name| name == "__class__"));
    assert!(boxed.connection().ping().is_ok());

    // Items, length, membership, iteration.
    let d = object(con, "{'a': 1}");
    d.setitem(&"b", &2)?;
    assert_eq!(d.getitem(&"b")?.extract::<i64>()?, 2);
    assert!(d.contains(&"a")?);
    d.delitem(&"a")?;
    assert!(!d.contains(&"a")?);
    assert_eq!(d.len()?, 1);
    assert!(!d.is_empty()?);
    let items: Vec<i64> = object(con, "range(10)")
        .iter_batched(3)?
        .map(|item| item.and_then(|v| v.extract::<i64>()))
        .collect::<Result<_, _>>()?;
    assert_eq!(items, (0..10).collect::<Vec<_>>());
    assert_eq!(object(con, "[1, 2]").collect()?.len(), 2);
    assert_eq!(object(con, "iter('ab')").iter()?.count(), 2);

    // Methods, text, truth, hash, operators.
    let pattern = object(con, "__import__('re').compile(',')");
    // A list comes back as a handle: obtain() copies it.
    let strings = |value: Value| -> anyhow::Result<Vec<String>> {
        Ok(RemoteObject::try_from(value)?.obtain()?.extract()?)
    };
    assert_eq!(
        strings(pattern.call_method("split", &("a,b",))?)?,
        ["a", "b"]
    );
    let once = BTreeMap::from([("maxsplit", 1)]);
    assert_eq!(
        strings(pattern.call_method_kw("split", &("a,b,c",), &once)?)?,
        ["a", "b,c"]
    );
    assert_eq!(pattern.repr()?, "re.compile(',')");
    assert_eq!(pattern.str()?, "re.compile(',')");
    assert!(pattern.truth()?);
    assert_eq!(
        pattern.hash()?,
        con.eval("hash(__import__('re').compile(','))")?
            .extract::<i64>()?
    );
    let list = object(con, "[1, 2]");
    let doubled = list.binary(BinaryOp::Mul, &2, false)?;
    assert_eq!(RemoteObject::try_from(doubled)?.len()?, 4);
    let less = list.compare(CompareOp::Lt, &vec![1, 3])?;
    assert!(less.extract::<bool>()?);
    let number = object(con, "__import__('fractions').Fraction(1, 3)");
    let negated = RemoteObject::try_from(number.unary(UnaryOp::Neg)?)?;
    assert_eq!(negated.str()?, "-1/3");
    assert_eq!(list.obtain()?.extract::<Vec<i64>>()?, [1, 2]);
    let big = object(con, "list(range(100))");
    let err = big.obtain_limited(10).unwrap_err();
    assert!(err.is_python("ValueError"), "{err:?}");
    // A script runs as a fresh `__main__`: last, as it replaces the namespace.
    let status = con.run_script("import sys\nsys.exit(4)\n", "s.py")?;
    assert_eq!(status, 4);
    Ok(())
}

#[test]
fn every_method_works_on_an_embedded_session() -> anyhow::Result<()> {
    let mut config = ConnectionConfig::default();
    config.output = OutputMode::Capture;
    let con = blocking::connect_with("embedded:", config)?;
    exercise(&con)?;
    // Output, callbacks, interrupt and close.
    let mut output = con.take_output();
    con.execute("print('hi')")?;
    let chunk = output.blocking_recv().expect("output");
    assert_eq!(chunk.data, b"hi\n");
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let callback = con.callback({
        let seen = seen.clone();
        move |args| {
            let (n,): (i64,) = args.extract()?;
            seen.lock().unwrap().push(n);
            Ok::<_, Error>(n * 2)
        }
    });
    assert_eq!(con.live_callbacks(), 1);
    let apply = con.define("def apply(f):\n    return f(21)")?;
    assert_eq!(apply.call(&(callback,))?.extract::<i64>()?, 42);
    assert_eq!(*seen.lock().unwrap(), [21]);
    con.flush_releases();
    assert!(con.output_error().is_none());
    let other = con.clone();
    con.close()?;
    assert!(matches!(other.ping(), Err(Error::Closed(_))));
    Ok(())
}

#[test]
fn every_method_works_over_local() -> anyhow::Result<()> {
    let mut config = ConnectionConfig::default();
    config.output = OutputMode::Discard;
    config.host_program = Some(env!("CARGO_BIN_EXE_pushy").into());
    let con = blocking::connect_with("local:", config)?;
    exercise(&con)?;
    // An interrupted call ends the session, typed.
    let runner = con.clone();
    let call = std::thread::spawn(move || runner.execute("while True: pass"));
    std::thread::sleep(std::time::Duration::from_millis(300));
    con.interrupt();
    let err = call.join().unwrap().unwrap_err();
    assert!(matches!(err, Error::Interrupted), "{err:?}");
    Ok(())
}

#[test]
fn a_sandbox_of_ones_own_serves_blocking_sessions() -> anyhow::Result<()> {
    let sandbox = pushy::Sandbox::new(pushy::SandboxConfig::default())?;
    let con = Connection::embedded(&sandbox)?;
    // The process-wide sandbox of `embedded:` serves sessions as well.
    let shared = blocking::default_sandbox()?;
    assert_eq!(
        Connection::embedded(&shared)?
            .eval("1 + 1")?
            .extract::<i64>()?,
        2
    );
    assert_eq!(con.eval("2 ** 10")?.extract::<i64>()?, 1024);
    let mut session = sandbox.config().session.clone();
    session.time_limit = Some(std::time::Duration::from_millis(300));
    let limited = Connection::embedded_with(&sandbox, session, ConnectionConfig::default())?;
    let err = limited.execute("while True: pass").unwrap_err();
    assert!(matches!(err, Error::TimeLimit { limit_ms: 300 }), "{err:?}");
    Ok(())
}
