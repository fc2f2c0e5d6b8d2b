//! Every operation over every transport: embedded:, local: (a child over
//! pipes) and daemon: (TCP with a token); GC, nested callbacks, pipelining,
//! and what bad peers get.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use common::daemon::Daemon;
use common::quiet_config;
use pushy::{CallArgs, Connection, Error};

async fn connect(target: &str, daemon: Option<&Daemon>) -> Connection {
    let config = daemon.map(Daemon::config).unwrap_or_else(quiet_config);
    pushy::connect_with(target, config).await.expect("connect")
}

/// The operations a user does, on one connection.
async fn exercise(con: &Connection) -> anyhow::Result<()> {
    let os = con.modules().import("os.path").await?;
    let joined: String = os.call_method("join", &("a", "b")).await?.extract()?;
    assert_eq!(joined, "a/b");
    let f = con.define("def add(a, b=0):\n    return a + b").await?;
    assert_eq!(f.call(&(2, 3)).await?.extract::<i64>()?, 5);
    let kw = std::collections::HashMap::from([("b", 10)]);
    assert_eq!(f.call_kw(&(1,), &kw).await?.extract::<i64>()?, 11);
    let d = con.eval("{'k': [1, 2, 3]}").await?.into_object()?;
    let k = d.getitem(&"k").await?.into_object()?;
    assert_eq!(k.len().await?, 3);
    assert_eq!(k.iter_batched(2).await?.collect_all().await?.len(), 3);
    assert_eq!(d.repr().await?, "{'k': [1, 2, 3]}");
    let err = con.eval("{}['missing']").await.unwrap_err();
    let exc = err.python().expect("python error");
    assert_eq!(exc.type_name, "builtins.KeyError");
    assert!(
        exc.traceback.contains("KeyError: 'missing'"),
        "{}",
        exc.traceback
    );
    // 16 MiB there and back.
    let big = vec![7u8; 16 << 20];
    let echo = con.eval("lambda b: b").await?.into_object()?;
    let back = echo.call(&(serde_bytes::Bytes::new(&big),)).await?;
    assert!(matches!(&back, pushy::Value::Bytes(b) if b.len() == big.len()));
    // Output arrives as events.
    let mut output = con.take_output();
    con.execute("print('hello out')").await?;
    let chunk = output.recv().await.expect("output");
    assert_eq!(chunk.data, b"hello out\n");
    Ok(())
}

async fn callbacks_nest_fifty_deep(con: &Connection) -> anyhow::Result<()> {
    let remote_step = con
        .define("def step(n, back):\n    return n if n == 0 else back(n - 1)")
        .await?;
    let step = pushy::blocking::RemoteObject::from(remote_step.clone());
    let deepest = Arc::new(AtomicUsize::new(0));
    let seen = deepest.clone();
    let slot: Arc<OnceLock<pushy::Callback>> = Arc::new(OnceLock::new());
    let me = slot.clone();
    let back = con.callback(move |args: CallArgs| -> Result<i64, Error> {
        let (n,): (i64,) = args.extract()?;
        seen.fetch_max(50 - n as usize, Ordering::SeqCst);
        step.call(&(n, me.get().expect("registered")))?
            .extract::<i64>()
    });
    assert!(slot.set(back).is_ok());
    let result = remote_step.call(&(50, slot.get().unwrap())).await?;
    assert_eq!(result.extract::<i64>()?, 0);
    assert_eq!(deepest.load(Ordering::SeqCst), 50);
    Ok(())
}

async fn gc_returns_to_baseline(con: &Connection, handles: usize) -> anyhow::Result<()> {
    let baseline = con.table_size().await?;
    let make = con
        .define("def make(n):\n    return [object() for _ in range(n)]")
        .await?;
    let list = make.call(&(handles,)).await?.into_object()?;
    let items = list.iter_batched(10_000).await?.collect_all().await?;
    assert_eq!(items.len(), handles);
    assert!(con.table_size().await? >= baseline + handles);
    drop(items);
    drop(list);
    drop(make);
    con.flush_releases();
    assert_eq!(con.table_size().await?, baseline);
    Ok(())
}

async fn pipelined_requests_all_come_back(con: &Connection) -> anyhow::Result<()> {
    let calls = (0..64).map(|i| {
        let con = con.clone();
        async move { con.eval(&format!("{i} * 2")).await?.extract::<i64>() }
    });
    let results = futures::future::try_join_all(calls).await?;
    assert_eq!(results, (0..64).map(|i| i * 2).collect::<Vec<i64>>());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_does_everything() -> anyhow::Result<()> {
    let con = connect("embedded:", None).await;
    exercise(&con).await?;
    callbacks_nest_fifty_deep(&con).await?;
    gc_returns_to_baseline(&con, 100_000).await?;
    pipelined_requests_all_come_back(&con).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_does_everything() -> anyhow::Result<()> {
    let con = connect("local:", None).await;
    exercise(&con).await?;
    callbacks_nest_fifty_deep(&con).await?;
    gc_returns_to_baseline(&con, 100_000).await?;
    pipelined_requests_all_come_back(&con).await?;
    con.close().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn daemon_does_everything() -> anyhow::Result<()> {
    let daemon = Daemon::start(&[]);
    let con = connect(&daemon.url(), Some(&daemon)).await;
    exercise(&con).await?;
    callbacks_nest_fifty_deep(&con).await?;
    gc_returns_to_baseline(&con, 100_000).await?;
    pipelined_requests_all_come_back(&con).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_ten_thousand_held_handles_at_once_over_local_completes() -> anyhow::Result<()> {
    let mut config = quiet_config();
    config.gc_interval = Duration::ZERO; // every drop is its own release message
    let con = pushy::connect_with("local:", config).await?;
    let baseline = con.table_size().await?;
    let objects = con
        .eval("[object() for _ in range(10_000)]")
        .await?
        .into_object()?;
    let held = objects.iter_batched(10_000).await?.collect_all().await?;
    drop(objects);
    drop(held);
    let started = Instant::now();
    assert_eq!(con.table_size().await?, baseline);
    assert!(started.elapsed() < Duration::from_secs(10));
    Ok(())
}

#[tokio::test]
async fn daemon_limits_errors_come_through_typed() -> anyhow::Result<()> {
    let daemon = Daemon::start(&["--timeout", "0.5"]);
    let con = connect(&daemon.url(), Some(&daemon)).await;
    let err = con.execute("while True: pass").await.unwrap_err();
    assert!(matches!(err, Error::TimeLimit { limit_ms: 500 }), "{err:?}");
    let again = con.eval("1").await.unwrap_err();
    assert!(
        matches!(again, Error::SessionTerminated { .. }),
        "{again:?}"
    );
    // A new session works at once.
    let fresh = connect(&daemon.url(), Some(&daemon)).await;
    assert_eq!(fresh.eval("1 + 1").await?.extract::<i64>()?, 2);
    Ok(())
}

#[tokio::test]
async fn daemon_refuses_wrong_or_missing_tokens() -> anyhow::Result<()> {
    let daemon = Daemon::start(&[]);
    let mut config = quiet_config();
    config.token_file = None;
    let err = pushy::connect_with(&daemon.url(), config.clone())
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::Transport(pushy::transport::TransportError::AuthFailed(
                pushy::protocol::AuthFailure::TokenRequired
            ))
        ),
        "{err:?}"
    );
    let dir = tempfile::tempdir()?;
    let wrong = dir.path().join("wrong");
    std::fs::write(&wrong, "not-the-right-token-at-all")?;
    config.token_file = Some(wrong);
    let err = pushy::connect_with(&daemon.url(), config)
        .await
        .unwrap_err();
    assert!(
        matches!(
            &err,
            Error::Transport(pushy::transport::TransportError::AuthFailed(
                pushy::protocol::AuthFailure::WrongToken
            ))
        ),
        "{err:?}"
    );
    // The daemon still serves those who know the token.
    let con = connect(&daemon.url(), Some(&daemon)).await;
    assert_eq!(con.eval("3").await?.extract::<i64>()?, 3);
    Ok(())
}

#[tokio::test]
async fn daemon_caps_sessions_and_frees_the_slot() -> anyhow::Result<()> {
    let daemon = Daemon::start(&["--max-sessions", "1"]);
    let first = connect(&daemon.url(), Some(&daemon)).await;
    assert_eq!(first.eval("1").await?.extract::<i64>()?, 1);
    let err = pushy::connect_with(&daemon.url(), daemon.config())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("server busy"), "{err}");
    first.close().await?;
    // The slot comes back once the first session ends.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match pushy::connect_with(&daemon.url(), daemon.config()).await {
            Ok(con) => {
                assert_eq!(con.eval("2").await?.extract::<i64>()?, 2);
                break;
            }
            Err(e) if Instant::now() < deadline => {
                assert!(e.to_string().contains("server busy"), "{e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("slot never came back: {e}"),
        }
    }
    Ok(())
}

#[tokio::test]
async fn peer_death_mid_call_is_a_typed_error_not_a_hang() -> anyhow::Result<()> {
    let mut daemon = Daemon::start(&["--timeout", "60"]);
    let con = connect(&daemon.url(), Some(&daemon)).await;
    let call = tokio::spawn({
        let con = con.clone();
        async move { con.execute("while True: pass").await }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    daemon.child.kill()?;
    let started = Instant::now();
    let result = tokio::time::timeout(Duration::from_secs(5), call).await??;
    let err = result.unwrap_err();
    // The socket ends at a frame boundary (EOF) or is reset.
    assert!(
        matches!(&err, Error::Closed(reason) if matches!(
            reason.transport(),
            Some(pushy::transport::TransportError::PeerGone | pushy::transport::TransportError::Io(_))
        )),
        "{err:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(5));
    Ok(())
}

#[tokio::test]
async fn interrupt_stops_a_running_call_and_says_the_state_is_lost() -> anyhow::Result<()> {
    for target in ["embedded:", "local:"] {
        let con = connect(target, None).await;
        con.execute("x = 1").await?;
        let call = tokio::spawn({
            let con = con.clone();
            async move { con.execute("while True: pass").await }
        });
        tokio::time::sleep(Duration::from_millis(200)).await;
        con.interrupt();
        let err = tokio::time::timeout(Duration::from_secs(5), call)
            .await??
            .unwrap_err();
        assert!(matches!(err, Error::Interrupted), "{target}: {err:?}");
        assert!(!err.session_survives());
        assert!(matches!(
            con.eval("x").await.unwrap_err(),
            Error::SessionTerminated { .. }
        ));
    }
    Ok(())
}

/// A self-signed certificate for 127.0.0.1 and localhost, made with openssl.
fn self_signed(dir: &std::path::Path) -> (std::path::PathBuf, std::path::PathBuf) {
    self_signed_with(
        dir,
        "basicConstraints=critical,CA:FALSE",
        "subjectAltName=DNS:localhost,IP:127.0.0.1",
    )
}

fn self_signed_with(
    dir: &std::path::Path,
    constraints: &str,
    names: &str,
) -> (std::path::PathBuf, std::path::PathBuf) {
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    let status = std::process::Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-days",
            "1",
        ])
        .args(["-subj", "/CN=localhost", "-addext", names])
        .args(["-addext", constraints])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .stderr(std::process::Stdio::null())
        .status()
        .expect("openssl");
    assert!(status.success());
    (cert, key)
}

#[tokio::test]
async fn daemon_speaks_tls_when_asked() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let (cert, key) = self_signed(dir.path());
    let daemon = Daemon::start(&[
        "--tls-cert",
        cert.to_str().unwrap(),
        "--tls-key",
        key.to_str().unwrap(),
    ]);
    let mut config = daemon.config();
    config.tls_ca = Some(cert.clone());
    let con = pushy::connect_with(&daemon.url(), config.clone()).await?;
    exercise(&con).await?;
    // A plain-TCP client gets a clear error, not a hang.
    let plain = tokio::time::timeout(
        Duration::from_secs(15),
        pushy::connect_with(&daemon.url(), daemon.config()),
    )
    .await?;
    let err = plain.unwrap_err();
    assert!(
        matches!(
            err,
            Error::Transport(pushy::transport::TransportError::Handshake(
                pushy::transport::HandshakeError::Foreign(pushy::transport::ForeignProtocol::Tls)
            ))
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("the server speaks TLS"), "{err}");
    // And a TLS client of a plain daemon is told the daemon does not speak it.
    let plain_daemon = Daemon::start(&[]);
    let err = tls_connect(&plain_daemon, &cert).await.unwrap_err();
    assert!(
        matches!(
            err,
            Error::Transport(pushy::transport::TransportError::Tls(
                pushy::transport::TlsError::NotTls
            ))
        ),
        "{err:?}"
    );
    // A client that trusts another CA refuses the server.
    let other = tempfile::tempdir()?;
    let (other_cert, _) = self_signed(other.path());
    config.tls_ca = Some(other_cert);
    let err = pushy::connect_with(&daemon.url(), config)
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::Transport(pushy::transport::TransportError::Tls(_))
        ),
        "{err:?}"
    );
    // The TLS daemon still serves its real clients.
    assert_eq!(con.eval("2 ** 10").await?.extract::<i64>()?, 1024);
    Ok(())
}

#[tokio::test]
async fn a_daemon_client_that_vanishes_mid_call_frees_its_session() -> anyhow::Result<()> {
    let daemon = Daemon::start(&["--max-sessions", "1", "--timeout", "60"]);
    let con = connect(&daemon.url(), Some(&daemon)).await;
    let call = tokio::spawn({
        let con = con.clone();
        async move { con.execute("while True: pass").await }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    call.abort();
    drop(con);
    // The host notices the closed socket at its next epoch tick, discards the
    // instance and frees the only slot, long before the 60 s time limit.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match pushy::connect_with(&daemon.url(), daemon.config()).await {
            Ok(con) => {
                assert_eq!(con.eval("7").await?.extract::<i64>()?, 7);
                return Ok(());
            }
            Err(e) if Instant::now() < deadline => {
                assert!(e.to_string().contains("server busy"), "{e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("the session was not freed: {e}"),
        }
    }
}

/// Connects over TLS to a daemon serving `cert`, trusting `ca`.
async fn tls_connect(daemon: &Daemon, ca: &std::path::Path) -> Result<pushy::Connection, Error> {
    let mut config = daemon.config();
    config.tls_ca = Some(ca.to_owned());
    pushy::connect_with(&daemon.url(), config).await
}

fn tls_daemon(cert: &std::path::Path, key: &std::path::Path) -> Daemon {
    Daemon::start(&[
        "--tls-cert",
        cert.to_str().unwrap(),
        "--tls-key",
        key.to_str().unwrap(),
    ])
}

fn is_tls_error(result: Result<pushy::Connection, Error>) -> bool {
    matches!(
        result,
        Err(Error::Transport(pushy::transport::TransportError::Tls(_)))
    )
}

#[tokio::test]
async fn a_self_signed_certificate_marked_as_a_ca_is_trusted_as_itself() -> anyhow::Result<()> {
    // `openssl req -x509` marks its certificate as a CA by default.
    const CA: &str = "basicConstraints=critical,CA:TRUE";
    const OURS: &str = "subjectAltName=DNS:localhost,IP:127.0.0.1";
    let dir = tempfile::tempdir()?;
    let (cert, key) = self_signed_with(dir.path(), CA, OURS);
    let daemon = tls_daemon(&cert, &key);
    let con = tls_connect(&daemon, &cert).await?;
    assert_eq!(con.eval("6 * 7").await?.extract::<i64>()?, 42);
    // Trusted as itself, not as any certificate: another one is still refused.
    let other = tempfile::tempdir()?;
    let (other_cert, _) = self_signed_with(other.path(), CA, OURS);
    assert!(is_tls_error(tls_connect(&daemon, &other_cert).await));
    // And only for its own names.
    let elsewhere = tempfile::tempdir()?;
    let (cert, key) = self_signed_with(elsewhere.path(), CA, "subjectAltName=DNS:elsewhere.test");
    let daemon = tls_daemon(&cert, &key);
    assert!(is_tls_error(tls_connect(&daemon, &cert).await));
    Ok(())
}
