//! Every operation of the embedded API, against the real wasmtime sandbox.

mod common;

use std::collections::BTreeMap;

use common::session;
use pushy::protocol::{BinaryOp, CompareOp, UnaryOp};
use pushy::{Error, Value};

#[tokio::test]
async fn the_readme_example_works() -> anyhow::Result<()> {
    let con = pushy::connect("embedded:").await?;
    let os = con.modules().import("os.path").await?;
    let joined: String = os.call_method("join", &("a", "b")).await?.extract()?;
    assert_eq!(joined, "a/b");
    let f = con.define("def add(a, b):\n    return a + b").await?;
    assert_eq!(f.call(&(2, 3)).await?.extract::<i64>()?, 5);
    con.close().await?;
    Ok(())
}

#[tokio::test]
async fn eval_execute_and_define_share_a_namespace() -> anyhow::Result<()> {
    let con = session().await;
    con.execute("x = 40\ndef bump(n):\n    return n + x")
        .await?;
    assert_eq!(con.eval("bump(2)").await?.extract::<i64>()?, 42);
    let scale = con
        .define(
            "import math\nclass Unused: pass\ndef scale(v, factor=2):\n    return v * factor * x",
        )
        .await?;
    assert!(scale.is_callable());
    assert_eq!(scale.type_name(), "builtins.function");
    let kwargs = BTreeMap::from([("factor", 3)]);
    assert_eq!(scale.call_kw(&(1,), &kwargs).await?.extract::<i64>()?, 120);
    let err = con.define("x = 1").await.unwrap_err();
    assert!(err.is_python("ValueError"), "{err}");
    Ok(())
}

#[tokio::test]
async fn immutable_values_come_by_value_and_the_rest_by_handle() -> anyhow::Result<()> {
    let con = session().await;
    let v = con
        .eval("(None, True, -7, 2**70, 1.5, 'é', b'\\x00\\xff', (1, (2,)))")
        .await?;
    let Value::Tuple(items) = &v else {
        panic!("{v:?}")
    };
    assert!(items[0].is_none());
    assert!(matches!(items[1], Value::Bool(true)));
    assert!(matches!(items[2], Value::Int(-7)));
    assert!(matches!(&items[3], Value::BigInt(s) if s == "1180591620717411303424"));
    assert!(matches!(items[4], Value::Float(f) if f == 1.5));
    assert!(matches!(&items[5], Value::Str(s) if s == "é"));
    assert!(matches!(&items[6], Value::Bytes(b) if b[..] == [0, 255]));
    let nested: (i64, (i64,)) = items[7].extract()?;
    assert_eq!(nested, (1, (2,)));

    let list = con.eval("[1, 2, 3]").await?.into_object()?;
    assert_eq!(list.type_name(), "builtins.list");
    assert!(con.eval("[1]").await?.extract::<Vec<i64>>().is_err());
    assert_eq!(list.obtain().await?.extract::<Vec<i64>>()?, vec![1, 2, 3]);
    // A big int beyond int_max_str_digits crosses too, as hexadecimal text.
    let huge = con.eval("16**5000").await?;
    assert!(
        matches!(&huge, Value::BigInt(s) if *s == format!("0x1{}", "0".repeat(5000))),
        "{huge:?}"
    );
    Ok(())
}

#[tokio::test]
async fn positional_calls_carry_plain_values_and_handles_exactly() -> anyhow::Result<()> {
    use pushy::protocol::{Node, Op, WireValue};
    // Calls like these travel packed (CPython's marshal format, see the
    // host's sandbox/packed.rs). The guest describes what it received, type
    // and repr, so an encoding slip cannot cancel out on the way back.
    let con = session().await;
    let describe = con
        .eval("lambda *args: tuple(f'{type(a).__name__}:{a!r}' for a in args)")
        .await?
        .into_object()?;
    let list = con.eval("[1, 2]").await?.into_object()?;
    let mut args = vec![Value::None, Value::Bool(true), Value::Bool(false)];
    let mut expected: Vec<String> = vec![
        "NoneType:None".into(),
        "bool:True".into(),
        "bool:False".into(),
    ];
    let edges = [
        i32::MAX as i64,
        i32::MIN as i64,
        1 << 45,
        (1 << 60) + 12_345,
        i64::MAX,
        i64::MIN,
    ];
    for i in [0, -1, 255]
        .into_iter()
        .chain(edges)
        .chain(edges.map(|e| e.saturating_add(1)))
    {
        args.push(Value::Int(i));
        expected.push(format!("int:{i}"));
    }
    for (value, repr) in [
        (Value::Float(-1.25), "float:-1.25"),
        (Value::Float(f64::INFINITY), "float:inf"),
        (Value::Str("é€𝄞".into()), "str:'é€𝄞'"),
        (Value::Str(String::new()), "str:''"),
        (
            Value::Bytes(bytes::Bytes::from_static(b"\x00\xffab")),
            r"bytes:b'\x00\xffab'",
        ),
        (Value::Object(list.clone()), "list:[1, 2]"),
    ] {
        args.push(value);
        expected.push(repr.into());
    }
    let got: Vec<String> = describe.call(&Value::Tuple(args)).await?.extract()?;
    assert_eq!(got, expected);
    // By method name, and with the same handle twice.
    assert_eq!(list.call_method("count", &(2,)).await?.extract::<i64>()?, 1);
    let same: bool = con
        .eval("lambda a, b: a is b")
        .await?
        .into_object()?
        .call(&(Value::Object(list.clone()), Value::Object(list.clone())))
        .await?
        .extract()?;
    assert!(same);
    // A handle this session never issued, as an argument or as the target.
    for (target, arg) in [(describe.id(), 987_654_321), (987_654_321, 1)] {
        let err = con
            .request_op(Op::Call {
                target,
                args: WireValue(vec![Node::Tuple(1), Node::Object(arg)]),
                kwargs: Vec::new(),
            })
            .await
            .unwrap_err();
        assert!(matches!(err, Error::InvalidHandle(_)), "{err:?}");
    }
    Ok(())
}

#[tokio::test]
async fn attributes_items_and_containers() -> anyhow::Result<()> {
    let con = session().await;
    let ns = con
        .eval("__import__('types').SimpleNamespace(a=1)")
        .await?
        .into_object()?;
    assert_eq!(ns.getattr("a").await?.extract::<i64>()?, 1);
    ns.setattr("b", &"two").await?;
    assert_eq!(ns.getattr("b").await?.extract::<String>()?, "two");
    ns.delattr("b").await?;
    assert!(
        ns.getattr("b")
            .await
            .unwrap_err()
            .is_python("AttributeError")
    );

    let d = con.eval("{}").await?.into_object()?;
    d.setitem(&"k", &vec![1, 2]).await?;
    d.setitem(&3, &"three").await?;
    assert_eq!(d.len().await?, 2);
    assert!(d.contains(&"k").await?);
    assert!(!d.contains(&"nope").await?);
    let k = d.getitem(&"k").await?.into_object()?;
    assert_eq!(k.type_name(), "builtins.list");
    d.delitem(&3).await?;
    assert!(d.getitem(&3).await.unwrap_err().is_python("KeyError"));
    let copy: BTreeMap<String, Vec<i64>> = d.obtain().await?.extract()?;
    assert_eq!(copy, BTreeMap::from([("k".to_owned(), vec![1, 2])]));
    assert_eq!(d.repr().await?, "{'k': [1, 2]}");
    assert_eq!(k.str().await?, "[1, 2]");
    assert!(d.truth().await?);
    assert!(d.hash().await.unwrap_err().is_python("TypeError"));
    assert!(d.dir().await?.contains(&"keys".to_owned()));
    Ok(())
}

#[tokio::test]
async fn iteration_comes_in_batches() -> anyhow::Result<()> {
    let con = session().await;
    let r = con.eval("range(1000)").await?.into_object()?;
    let mut it = r.iter_batched(64).await?;
    let mut sum = 0;
    let mut count = 0;
    while let Some(item) = it.next().await {
        sum += item?.extract::<i64>()?;
        count += 1;
    }
    assert_eq!((count, sum), (1000, 499_500));
    // 1000 items in batches of 64: the guest saw ceil(1000/64) round trips,
    // so one iterator object at most stays in its table while iterating.
    let generator = con.eval("(x * 2 for x in range(3))").await?.into_object()?;
    let items = generator.iter().await?.collect_all().await?;
    let doubled: Vec<i64> = items.iter().map(|v| v.extract().unwrap()).collect();
    assert_eq!(doubled, vec![0, 2, 4]);
    Ok(())
}

#[tokio::test]
async fn operators() -> anyhow::Result<()> {
    let con = session().await;
    let frac = con
        .eval("__import__('fractions').Fraction(1, 3)")
        .await?
        .into_object()?;
    let sum = frac.binary(BinaryOp::Add, &1, false).await?.into_object()?;
    assert_eq!(sum.str().await?, "4/3");
    let rsub = frac.binary(BinaryOp::Sub, &1, true).await?.into_object()?;
    assert_eq!(rsub.str().await?, "2/3");
    assert!(frac.compare(CompareOp::Lt, &1).await?.extract::<bool>()?);
    assert_eq!(
        frac.unary(UnaryOp::Neg).await?.into_object()?.str().await?,
        "-1/3"
    );
    let list = con.eval("[1]").await?.into_object()?;
    let twice = list.binary(BinaryOp::Mul, &2, false).await?.into_object()?;
    assert_eq!(twice.obtain().await?.extract::<Vec<i64>>()?, vec![1, 1]);
    // A handle as the other operand.
    let concat = list
        .binary(BinaryOp::Add, &twice, false)
        .await?
        .into_object()?;
    assert_eq!(concat.len().await?, 3);
    Ok(())
}

#[tokio::test]
async fn python_exceptions_come_back_as_data_and_the_session_goes_on() -> anyhow::Result<()> {
    let con = session().await;
    con.execute("def fail(n):\n    raise ValueError(f'bad {n}')")
        .await?;
    let err = con.eval("fail(3)").await.unwrap_err();
    let Error::Python(exc) = &err else {
        panic!("{err:?}")
    };
    assert_eq!(exc.type_name, "builtins.ValueError");
    assert_eq!(exc.message, "bad 3");
    assert!(exc.bases.contains(&"builtins.Exception".to_owned()));
    assert!(
        exc.traceback.contains("raise ValueError(f'bad {n}')"),
        "{}",
        exc.traceback
    );
    assert!(exc.traceback.contains("ValueError: bad 3"));
    assert!(
        !exc.traceback.contains("pushy_guest"),
        "agent frames leak: {}",
        exc.traceback
    );
    let handle = exc.exception.clone().expect("exception handle");
    assert_eq!(
        handle.getattr("args").await?.extract::<(String,)>()?,
        ("bad 3".to_owned(),)
    );
    assert!(err.session_survives());
    assert_eq!(con.eval("1 + 1").await?.extract::<i64>()?, 2);

    let syntax = con.eval("1 +").await.unwrap_err();
    assert!(syntax.is_python("SyntaxError"));
    let exit = con.execute("raise SystemExit(4)").await.unwrap_err();
    assert!(exit.is_python("SystemExit"));
    let custom = con
        .execute("class MyError(KeyError): pass\nraise MyError('x')")
        .await
        .unwrap_err();
    assert!(custom.is_python("__main__.MyError"));
    assert!(custom.is_python("LookupError"));
    Ok(())
}

#[tokio::test]
async fn modules_import_submodules_the_parent_did_not() -> anyhow::Result<()> {
    let con = session().await;
    let minidom = con.modules().import("xml.dom.minidom").await?;
    let doc = minidom
        .call_method("parseString", &("<a><b>hi</b></a>",))
        .await?
        .into_object()?;
    let xml: String = doc.call_method("toxml", &()).await?.extract()?;
    assert!(xml.ends_with("<a><b>hi</b></a>"), "{xml}");
    let text = con.modules().import("email.mime.text").await?;
    let mime = text.getattr("MIMEText").await?.into_object()?;
    let msg = mime.call(&("body",)).await?.into_object()?;
    assert!(
        msg.call_method("as_string", &())
            .await?
            .extract::<String>()?
            .contains("body")
    );
    let missing = con.modules().import("no_such_module").await.unwrap_err();
    assert!(missing.is_python("ModuleNotFoundError"));
    Ok(())
}

#[tokio::test]
async fn modules_are_imported_once_and_survive_dropped_handles() -> anyhow::Result<()> {
    let con = session().await;
    let os = con.modules().import("os").await?;
    let id = os.id();
    // A second import while the first handle lives is the same handle.
    assert_eq!(con.modules().import("os").await?.id(), id);
    drop(os);
    con.flush_releases();
    let baseline = con.table_size().await?;
    // Dropped everywhere: the cache still owns the guest's reference, so the
    // module comes back without a new table entry and still works.
    let again = con.modules().import("os").await?;
    assert_eq!(again.id(), id);
    assert_eq!(con.table_size().await?, baseline);
    let pid: i64 = again.call_method("getpid", &()).await?.extract()?;
    assert!(pid > 0);
    // A module also returned by a call is counted as usual and released.
    let via_eval = con.eval("__import__('os')").await?.into_object()?;
    assert_eq!(via_eval.id(), id);
    drop((again, via_eval));
    con.flush_releases();
    assert_eq!(con.table_size().await?, baseline);
    let pid2: i64 = con
        .modules()
        .import("os")
        .await?
        .call_method("getpid", &())
        .await?
        .extract()?;
    assert_eq!(pid, pid2);
    Ok(())
}

#[tokio::test]
async fn handles_of_another_session_are_refused() -> anyhow::Result<()> {
    let a = session().await;
    let b = session().await;
    let list = a.eval("[1]").await?.into_object()?;
    let len = b.eval("len").await?.into_object()?;
    let err = len.call(&(list,)).await.unwrap_err();
    assert!(matches!(err, Error::BadArgument(_)), "{err:?}");
    Ok(())
}

#[tokio::test]
async fn blocking_facade_works_without_a_runtime() -> anyhow::Result<()> {
    // Run on a plain thread: no tokio context there.
    std::thread::spawn(|| -> anyhow::Result<()> {
        let con = pushy::blocking::connect("embedded:")?;
        let f = con.define("def mul(a, b):\n    return a * b")?;
        assert_eq!(f.call(&(6, 7))?.extract::<i64>()?, 42);
        let l = pushy::blocking::RemoteObject::try_from(con.eval("[3, 1, 2]")?)?;
        l.call_method("sort", &())?;
        assert_eq!(l.obtain()?.extract::<Vec<i64>>()?, vec![1, 2, 3]);
        assert_eq!(l.collect()?.len(), 3);
        con.close()?;
        Ok(())
    })
    .join()
    .expect("thread")?;
    Ok(())
}

#[tokio::test]
async fn unknown_handles_are_a_typed_error_and_harmless() -> anyhow::Result<()> {
    use pushy::protocol::{Op, ReleaseEntry};
    let con = session().await;
    let err = con
        .request_op(Op::GetAttr {
            target: 987_654_321,
            name: "x".into(),
        })
        .await
        .unwrap_err();
    assert!(matches!(err, Error::InvalidHandle(_)), "{err:?}");
    // Releasing what was never issued, or twice, changes nothing.
    let baseline = con.table_size().await?;
    let kept = con.eval("[1]").await?.into_object()?;
    con.request_op(Op::Release(vec![ReleaseEntry {
        id: 987_654_321,
        count: 3,
    }]))
    .await?;
    assert_eq!(con.table_size().await?, baseline + 1);
    assert_eq!(kept.len().await?, 1);
    Ok(())
}

#[tokio::test]
async fn obtain_respects_its_size_limit() -> anyhow::Result<()> {
    let con = session().await;
    let big = con.eval("list(range(100))").await?.into_object()?;
    let err = big.obtain_limited(10).await.unwrap_err();
    assert!(err.is_python("ValueError"), "{err:?}");
    assert_eq!(
        big.obtain_limited(101).await?.extract::<Vec<i64>>()?.len(),
        100
    );
    // Objects inside a copied container that are not containers stay handles.
    let mixed = con.eval("[1, object()]").await?.into_object()?;
    let Value::List(items) = mixed.obtain().await? else {
        panic!()
    };
    assert_eq!(
        items[1].as_object().map(|o| o.type_name()),
        Some("builtins.object")
    );
    Ok(())
}
