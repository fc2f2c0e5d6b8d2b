//! The adversarial suite: hostile guest code, each case with its exact
//! outcome — **E** a Python exception and the session goes on, **R** the
//! session is terminated with a typed error and a new one works at once.
//! (Hostile bytes from clients, outcome **C**, are in `protocol.rs`.)
//! After all cases a bystander session still has its state, and the
//! process's threads and file descriptors are back at their baseline.

mod common;

use std::time::{Duration, Instant};

use common::session_with;
use pushy::{Connection, Error, SessionConfig};

fn config() -> SessionConfig {
    let mut config = SessionConfig::default();
    config.time_limit = Some(Duration::from_secs(1));
    config.memory_limit = 256 << 20;
    config.output_limit = 1 << 20;
    config
}

/// [`config`] with time to spare, for tests of other limits.
fn roomy_config() -> SessionConfig {
    let mut config = config();
    config.time_limit = Some(Duration::from_secs(20));
    config
}

fn count(dir: &str) -> usize {
    std::fs::read_dir(dir).map(|d| d.count()).unwrap_or(0)
}

/// E: a Python exception of `kind`; the same session answers afterwards.
async fn expect_e(con: &Connection, code: &str, kind: &str) {
    let err = con.execute(code).await.expect_err(code);
    assert!(err.is_python(kind), "{code}: expected {kind}, got {err:?}");
    assert_eq!(
        con.eval("1 + 1").await.unwrap().extract::<i64>().unwrap(),
        2,
        "{code}"
    );
}

/// R: the session ends with a typed error; the next call says so; a new
/// session works at once.
async fn expect_r(code: &str, check: fn(&Error) -> bool) {
    let con = session_with(config()).await;
    let started = Instant::now();
    let err = con.execute(code).await.expect_err(code);
    assert!(check(&err), "{code}: {err:?}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{code}: {:?}",
        started.elapsed()
    );
    assert!(
        matches!(
            con.eval("1").await.unwrap_err(),
            Error::SessionTerminated { .. }
        ),
        "{code}"
    );
    let fresh = session_with(config()).await;
    assert_eq!(
        fresh.eval("2 + 2").await.unwrap().extract::<i64>().unwrap(),
        4
    );
}

/// E or R, never anything else.
async fn expect_e_or_r(code: &str, kinds: &[&str]) {
    let con = session_with(config()).await;
    let err = con.execute(code).await.expect_err(code);
    if err.session_survives() {
        assert!(kinds.iter().any(|k| err.is_python(k)), "{code}: {err:?}");
        assert_eq!(
            con.eval("3").await.unwrap().extract::<i64>().unwrap(),
            3,
            "{code}"
        );
    } else {
        assert!(
            matches!(
                err,
                Error::MemoryLimit { .. }
                    | Error::TimeLimit { .. }
                    | Error::SessionTerminated { .. }
            ),
            "{code}: {err:?}"
        );
        let fresh = session_with(config()).await;
        assert_eq!(fresh.eval("3").await.unwrap().extract::<i64>().unwrap(), 3);
    }
}

fn time_limit(err: &Error) -> bool {
    matches!(err, Error::TimeLimit { limit_ms: 1000 })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_guest_code_gets_its_exact_outcome() {
    let bystander = session_with(config()).await;
    bystander.execute("state = {'kept': 42}").await.unwrap();
    // Let lazily started runtime threads appear before the baseline.
    bystander.ping().await.unwrap();
    let fds = count("/proc/self/fd");
    let threads = count("/proc/self/task");

    // Time: R, also inside C code and the regex engine.
    expect_r("while True: pass", time_limit).await;
    expect_r("sum(range(10**12))", time_limit).await;
    expect_r(
        "__import__('re').match(r'(a+)+$', 'a' * 64 + 'b')",
        time_limit,
    )
    .await;

    let con = session_with(config()).await;
    // Arithmetic and recursion: E.
    expect_e(&con, "int('9' * 10**6)", "ValueError").await;
    expect_e(&con, "def f(): f()\nf()", "RecursionError").await;
    // Files, environment, network, processes, threads, native code: E.
    for (code, kind) in [
        ("open('/etc/passwd')", "OSError"),
        ("open('../../../etc/passwd')", "OSError"),
        ("open('/proc/self/environ')", "OSError"),
        ("__import__('os').listdir('/')", "OSError"),
        (
            "__import__('socket').create_connection(('127.0.0.1', 22), 1)",
            "OSError",
        ),
        ("__import__('socket').gethostbyname('localhost')", "OSError"),
        ("__import__('subprocess').run(['id'])", "OSError"),
        ("__import__('os').system('id')", "AttributeError"),
        (
            "__import__('threading').Thread(target=print).start()",
            "RuntimeError",
        ),
        ("import ctypes", "ImportError"),
    ] {
        expect_e(&con, code, kind).await;
    }
    assert_eq!(
        con.eval("len(__import__('os').environ)")
            .await
            .unwrap()
            .extract::<i64>()
            .unwrap(),
        0
    );
    // Values that must not leave the guest: E, before any frame is built.
    let deep = con
        .eval("__import__('functools').reduce(lambda acc, _: (acc,), range(100_000), ())")
        .await
        .unwrap_err();
    assert!(deep.is_python("ValueError"), "{deep:?}");
    // repr() of it recurses until the C stack margin, ~1 s of guest time
    // on the CI machine (CPython checks each level against all open ones):
    // a session with room for that, so the outcome tested is the error.
    let deep_con = session_with(roomy_config()).await;
    let nested = deep_con
        .eval("__import__('functools').reduce(lambda acc, _: [acc], range(100_000), [])")
        .await
        .unwrap()
        .into_object()
        .unwrap();
    assert!(nested.obtain().await.unwrap_err().is_python("ValueError"));
    let repr_err = nested.repr().await.unwrap_err();
    assert!(repr_err.is_python("RecursionError"), "{repr_err:?}");
    // Dropping it deallocates 100,000 levels in C: the session survives.
    drop(nested);
    deep_con.flush_releases();
    assert_eq!(
        deep_con
            .eval("'after the drop'")
            .await
            .unwrap()
            .extract::<String>()
            .unwrap(),
        "after the drop"
    );
    deep_con.close().await.unwrap();
    // A malicious pickle runs only inside the guest.
    expect_e(
        &con,
        "import pickle\npickle.loads(b\"cos\\nsystem\\n(S'touch /tmp/pushy-pwned'\\ntR.\")",
        "AttributeError",
    )
    .await;
    assert!(!std::path::Path::new("/tmp/pushy-pwned").exists());
    // sys.exit in a script is an exit status, not an error.
    assert_eq!(
        con.run_script("import sys\nsys.exit(3)", "exit.py")
            .await
            .unwrap(),
        3
    );

    // Memory: E or R, never a host abort; recursion past a raised limit too.
    expect_e_or_r("bytearray(10**10)", &["MemoryError", "OverflowError"]).await;
    expect_e_or_r(
        "xs = [b'x' * 4096]\nwhile True:\n    xs = xs + xs",
        &["MemoryError"],
    )
    .await;
    expect_e_or_r(
        "import sys\nsys.setrecursionlimit(10**6)\ndef g(n): return g(n + 1)\ng(0)",
        &["RecursionError", "MemoryError"],
    )
    .await;

    // A print flood is cut at the cap; the session survives. (Making the
    // thousand 1 MB strings takes about a second here: not the limit tested.)
    let flood = session_with(roomy_config()).await;
    let mut output = flood.take_output();
    flood
        .execute("for _ in range(1000):\n    print('x' * 1_000_000)")
        .await
        .unwrap();
    let mut received = 0;
    let mut notice = false;
    while let Ok(chunk) = output.try_recv() {
        received += chunk.data.len();
        notice |= String::from_utf8_lossy(&chunk.data).contains("output limit");
    }
    assert!(notice);
    assert!(received <= (1 << 20) + 200, "{received}");
    assert_eq!(
        flood
            .eval("'alive'")
            .await
            .unwrap()
            .extract::<String>()
            .unwrap(),
        "alive"
    );

    // The bystander never noticed; threads and descriptors are back.
    assert_eq!(
        bystander
            .eval("state['kept']")
            .await
            .unwrap()
            .extract::<i64>()
            .unwrap(),
        42
    );
    drop((con, flood));
    let deadline = Instant::now() + Duration::from_secs(5);
    while (count("/proc/self/task") > threads || count("/proc/self/fd") > fds)
        && Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        count("/proc/self/fd") <= fds,
        "fds {} > {fds}",
        count("/proc/self/fd")
    );
    assert!(
        count("/proc/self/task") <= threads,
        "threads {} > {threads}",
        count("/proc/self/task")
    );
}

#[tokio::test]
async fn five_hundred_megabytes_are_refused_inside_the_guest() {
    let mut config = config();
    config.memory_limit = 1536 << 20;
    config.time_limit = Some(Duration::from_secs(20));
    let con = session_with(config).await;
    let err = con.eval("b'x' * 500_000_000").await.unwrap_err();
    assert!(err.is_python("ValueError"), "{err:?}");
    assert!(err.to_string().contains("too large"), "{err}");
    assert_eq!(con.eval("1").await.unwrap().extract::<i64>().unwrap(), 1);
}

#[tokio::test]
async fn a_client_that_leaves_mid_call_frees_the_session() {
    // The sandbox (and its epoch thread) exists before the baseline.
    session_with(config()).await.ping().await.unwrap();
    let threads = count("/proc/self/task");
    let con = session_with(config()).await;
    let call = tokio::spawn({
        let con = con.clone();
        async move { con.execute("while True: pass").await }
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    call.abort();
    drop(con);
    // The session thread notices at its next epoch tick and ends.
    let deadline = Instant::now() + Duration::from_secs(3);
    while count("/proc/self/task") > threads && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(count("/proc/self/task") <= threads);
}
