//! Handle release (GC) and callbacks from the sandbox into the local side.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use common::{drain_output, session};
use pushy::CallArgs;

#[tokio::test]
async fn dropped_handles_return_the_table_to_its_baseline() -> anyhow::Result<()> {
    let con = session().await;
    let baseline = con.table_size().await?;
    let make = con
        .define("def make(n):\n    return [[] for _ in range(n)]")
        .await?;
    let outer = make.call(&(1000,)).await?.into_object()?;
    let items = outer.iter_batched(250).await?.collect_all().await?;
    assert_eq!(items.len(), 1000);
    assert!(con.table_size().await? >= baseline + 1001);
    drop(items);
    drop(outer);
    drop(make);
    con.flush_releases();
    assert_eq!(con.table_size().await?, baseline);
    Ok(())
}

#[tokio::test]
async fn the_same_object_sent_twice_is_counted_twice() -> anyhow::Result<()> {
    let con = session().await;
    let baseline = con.table_size().await?;
    con.execute("shared = []").await?;
    let first = con.eval("shared").await?.into_object()?;
    let second = con.eval("shared").await?.into_object()?;
    assert_eq!(first.id(), second.id());
    assert_eq!(con.table_size().await?, baseline + 1);
    drop(first);
    con.flush_releases();
    // `second` still works: the release carried both counts only once all
    // local handles for the id were gone.
    assert_eq!(second.len().await?, 0);
    drop(second);
    con.flush_releases();
    assert_eq!(con.table_size().await?, baseline);
    Ok(())
}

#[tokio::test]
async fn callbacks_round_trip_to_the_local_side() -> anyhow::Result<()> {
    let con = session().await;
    let calls = Arc::new(AtomicUsize::new(0));
    let seen = calls.clone();
    let cb = con.callback(move |args: CallArgs| -> Result<i64, String> {
        seen.fetch_add(1, Ordering::SeqCst);
        let (a, b): (i64, i64) = args.extract().map_err(|e| e.to_string())?;
        Ok(a * b)
    });
    let apply = con
        .define("def apply(f, xs):\n    return [f(x, x) for x in xs]")
        .await?;
    let squares = apply.call(&(&cb, vec![1, 2, 3])).await?.into_object()?;
    assert_eq!(
        squares.obtain().await?.extract::<Vec<i64>>()?,
        vec![1, 4, 9]
    );
    assert_eq!(calls.load(Ordering::SeqCst), 3);

    let failing = con.callback(|_args: CallArgs| -> Result<(), String> { Err("nope".into()) });
    let call = con.define("def call(f):\n    try:\n        f()\n    except Exception as e:\n        return type(e).__name__ + ': ' + str(e)").await?;
    let text: String = call.call(&(&failing,)).await?.extract()?;
    assert_eq!(text, "CallbackError: nope");
    // Let through, it reaches the caller under CALLBACK_ERROR_TYPE; a
    // callback that panics is reported the same way, not left unanswered.
    let through = con.define("def through(f):\n    return f()").await?;
    let err = through.call(&(&failing,)).await.unwrap_err();
    assert!(err.is_python(pushy::CALLBACK_ERROR_TYPE), "{err:?}");
    assert_eq!(err.python().map(|e| e.message.as_str()), Some("nope"));
    let panicking = con.callback(|_args: CallArgs| -> Result<(), String> { panic!("boom") });
    let err = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        through.call(&(&panicking,)),
    )
    .await
    .expect("a panicking callback is answered")
    .unwrap_err();
    assert!(err.is_python(pushy::CALLBACK_ERROR_TYPE), "{err:?}");
    assert!(err.to_string().contains("panicked: boom"), "{err}");
    assert_eq!(con.eval("1 + 1").await?.extract::<i64>()?, 2);
    Ok(())
}

#[tokio::test]
async fn bytes_through_callbacks_arrive_exactly_and_do_not_leak() -> anyhow::Result<()> {
    let mut config = common::session_config();
    config.memory_limit = 128 << 20;
    let con = common::session_with(config).await;
    let total = Arc::new(AtomicUsize::new(0));
    let seen = total.clone();
    let sink = con.callback(move |args: CallArgs| -> Result<usize, String> {
        let Some(pushy::Value::Bytes(data)) = args.args.first() else {
            return Err("expected bytes".into());
        };
        if data[..4] != [0, 128, 255, 7] {
            return Err("bytes changed on the way".into());
        }
        seen.fetch_add(data.len(), Ordering::SeqCst);
        Ok(data.len())
    });
    // 384 MiB through a 128 MiB sandbox, one MiB per call.
    let pump = con
        .define("def pump(f):\n    chunk = bytes([0, 128, 255, 7]) * (1 << 18)\n    for _ in range(384):\n        f(chunk)")
        .await?;
    pump.call(&(&sink,)).await?;
    assert_eq!(total.load(Ordering::SeqCst), 384 << 20);
    Ok(())
}

#[tokio::test]
async fn callbacks_held_by_the_guest_are_released_back() -> anyhow::Result<()> {
    let con = session().await;
    let cb = con.callback(|_: CallArgs| -> Result<i64, String> { Ok(1) });
    con.define("def keep(f):\n    global kept\n    kept = f")
        .await?
        .call(&(&cb,))
        .await?;
    drop(cb);
    // The guest still holds it: it must stay callable.
    assert_eq!(con.live_callbacks(), 1);
    assert_eq!(con.eval("kept()").await?.extract::<i64>()?, 1);
    con.execute("del kept").await?;
    // The release rides back with that reply; one more round trip orders it.
    con.ping().await?;
    assert_eq!(con.live_callbacks(), 0);
    Ok(())
}

// Nesting 50 deep is tested over every transport, embedded: included, in transports.rs.

#[tokio::test]
async fn output_arrives_in_order_on_both_streams() -> anyhow::Result<()> {
    let con = session().await;
    let mut output = con.take_output();
    con.execute("import sys\nprint('one')\nprint('two', file=sys.stderr)\nsys.stdout.write('three')\nsys.stdout.buffer.write(b'!')")
        .await?;
    let mut chunks = Vec::new();
    while let Ok(chunk) = output.try_recv() {
        chunks.push((chunk.stream, String::from_utf8(chunk.data)?));
    }
    use pushy::protocol::OutputStream::{Stderr, Stdout};
    assert_eq!(
        chunks,
        vec![
            (Stdout, "one\n".to_owned()),
            (Stderr, "two\n".to_owned()),
            (Stdout, "three!".to_owned()),
        ]
    );
    let _ = drain_output;
    Ok(())
}

#[tokio::test]
async fn typed_callback_errors_reach_guest_code_as_their_class() -> anyhow::Result<()> {
    let con = session().await;
    let missing = con.callback_raising(|args: CallArgs| -> Result<(), pushy::CallbackException> {
        let (key,): (String,) = args
            .extract()
            .map_err(|e| pushy::CallbackException::new("builtins.TypeError", e.to_string()))?;
        Err(pushy::CallbackException::new("builtins.KeyError", key))
    });
    let foreign = con.callback_raising(|_args: CallArgs| -> Result<(), pushy::CallbackException> {
        Err(pushy::CallbackException::new("app.Broken", "badly"))
    });
    let catch = con
        .define(
            "def catch(f, *args):\n    try:\n        f(*args)\n    except KeyError as e:\n        \
             return 'KeyError ' + e.args[0]\n    except Exception as e:\n        \
             return type(e).__name__ + ': ' + str(e)",
        )
        .await?;
    let text: String = catch.call(&(&missing, "k")).await?.extract()?;
    assert_eq!(text, "KeyError k");
    let text: String = catch.call(&(&foreign,)).await?.extract()?;
    assert_eq!(text, "CallbackError: app.Broken: badly");
    // A builtin class that is no Exception (the local side's KeyboardInterrupt)
    // is not raised as itself.
    let stop = con.callback_raising(|_args: CallArgs| -> Result<(), pushy::CallbackException> {
        Err(pushy::CallbackException::new(
            "builtins.KeyboardInterrupt",
            "",
        ))
    });
    let text: String = catch.call(&(&stop,)).await?.extract()?;
    assert!(
        text.starts_with("CallbackError: builtins.KeyboardInterrupt"),
        "{text}"
    );
    Ok(())
}

#[tokio::test]
async fn a_callback_is_found_by_id_while_it_is_registered() -> anyhow::Result<()> {
    let con = session().await;
    let cb = con.callback(|_args: CallArgs| -> Result<i64, String> { Ok(7) });
    let id = cb.id();
    con.execute("kept = []").await?;
    let keep = con.eval("kept.append").await?.into_object()?;
    keep.call(&(&cb,)).await?;
    drop(cb);
    // The guest holds it: a new handle sends the same id, the same object.
    let again = con.callback_by_id(id).expect("still registered");
    let same: bool = con
        .define("def same(f):\n    return f is kept[0] and f() == 7")
        .await?
        .call(&(&again,))
        .await?
        .extract()?;
    assert!(same);
    drop(again);
    con.execute("kept.clear()").await?;
    // The guest's release arrives with the next reply.
    con.ping().await?;
    con.ping().await?;
    assert!(con.callback_by_id(id).is_none());
    Ok(())
}
