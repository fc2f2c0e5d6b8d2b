//! The daemon under misuse: connections that never finish the handshake,
//! clients killed mid-call, limits asked by clients, silent or foreign
//! servers.

mod common;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::daemon::Daemon;
use pushy::Error;
use pushy::transport::TransportError;

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Connects until the daemon has a slot again, for at most `within`.
async fn connect_within(daemon: &Daemon, within: Duration) -> pushy::Connection {
    let deadline = Instant::now() + within;
    loop {
        match pushy::connect_with(&daemon.url(), daemon.config()).await {
            Ok(con) => return con,
            Err(e) if Instant::now() < deadline => {
                assert!(e.to_string().contains("server busy"), "{e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("no slot within {within:?}: {e}"),
        }
    }
}

#[tokio::test]
async fn connections_that_never_finish_the_handshake_take_no_session_slot() -> anyhow::Result<()> {
    let daemon = Daemon::start(&["--max-sessions", "4"]);
    // Far more idle sockets than sessions, some having sent half a frame.
    let mut idle = Vec::new();
    for i in 0..100 {
        let mut socket = TcpStream::connect(&daemon.address)?;
        if i % 2 == 0 {
            socket.write_all(&[0, 0, 0, 9, 1])?;
        }
        idle.push(socket);
    }
    let con = pushy::connect_with(&daemon.url(), daemon.config()).await?;
    assert_eq!(con.eval("40 + 2").await?.extract::<i64>()?, 42);
    // The slots are for authenticated sessions: four of them, no more.
    let mut held = vec![con];
    for _ in 0..3 {
        held.push(pushy::connect_with(&daemon.url(), daemon.config()).await?);
    }
    let err = pushy::connect_with(&daemon.url(), daemon.config())
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::Transport(TransportError::Refused(
                pushy::protocol::Refusal::SessionLimit { limit: 4 }
            ))
        ),
        "{err:?}"
    );
    for con in &held {
        assert_eq!(con.eval("1").await?.extract::<i64>()?, 1);
    }
    drop(idle);
    Ok(())
}

#[tokio::test]
async fn a_client_killed_while_its_code_sleeps_frees_the_slot() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    for blocking in [
        "import time; time.sleep(3600)",
        "print('x' * (1 << 20)) or [print('y' * 65536) for _ in iter(int, 1)]",
    ] {
        let script = dir.path().join("block.py");
        std::fs::write(&script, format!("print('start', flush=True)\n{blocking}\n"))?;
        let daemon = Daemon::start(&["--max-sessions", "1", "--timeout", "600"]);
        let mut child = Command::new(env!("CARGO_BIN_EXE_pushy"))
            .args(["run", "--target", &daemon.url(), "--token-file"])
            .arg(&daemon.token_file)
            .arg(&script)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()?;
        let mut stdout = child.stdout.take().unwrap();
        let mut first = [0u8; 5];
        stdout.read_exact(&mut first)?;
        assert_eq!(&first, b"start");
        // SIGKILL: no goodbye; for the writer, nobody reads its output now.
        child.kill()?;
        child.wait()?;
        drop(stdout);
        let con = connect_within(&daemon, Duration::from_secs(40)).await;
        assert_eq!(con.eval("7").await?.extract::<i64>()?, 7, "{blocking}");
        con.close().await?;
    }
    Ok(())
}

#[tokio::test]
async fn a_client_may_tighten_the_daemons_limits_but_never_loosen_them() -> anyhow::Result<()> {
    let daemon = Daemon::start(&["--timeout", "60", "--memory", "256"]);
    let mut config = daemon.config();
    config.limits.time_limit_ms = Some(1000);
    let con = pushy::connect_with(&daemon.url(), config).await?;
    let started = Instant::now();
    let err = con
        .execute("import time\ntime.sleep(30)")
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::TimeLimit { limit_ms: 1000 }),
        "{err:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(10));

    let mut config = daemon.config();
    config.limits.memory_bytes = Some(64 << 20);
    let con = pushy::connect_with(&daemon.url(), config).await?;
    let err = con.execute("x = bytearray(100 << 20)").await.unwrap_err();
    assert!(
        matches!(&err, Error::Python(e) if e.is_instance("MemoryError") && e.memory_limit_hit)
            || matches!(err, Error::MemoryLimit { .. }),
        "{err:?}"
    );

    // Asking for more than the daemon allows gets the daemon's limit.
    let strict = Daemon::start(&["--timeout", "1"]);
    let mut config = strict.config();
    config.limits.time_limit_ms = Some(600_000);
    let con = pushy::connect_with(&strict.url(), config).await?;
    let err = con.execute("while True: pass").await.unwrap_err();
    assert!(
        matches!(err, Error::TimeLimit { limit_ms: 1000 }),
        "{err:?}"
    );
    Ok(())
}

/// `pushy COMMAND FLAGS --target DAEMON --token-file F ARG`.
fn pushy_on(daemon: &Daemon, command: &str, flags: &[&str], arg: &std::path::Path) -> Output {
    let out = Command::new(env!("CARGO_BIN_EXE_pushy"))
        .arg(command)
        .args(flags)
        .args(["--target", &daemon.url(), "--token-file"])
        .arg(&daemon.token_file)
        .arg(arg)
        .output()
        .unwrap();
    assert!(
        !text(&out.stderr).contains("panicked at"),
        "{}",
        text(&out.stderr)
    );
    out
}

#[test]
fn limits_given_to_the_cli_travel_to_the_daemon_and_dir_is_refused() {
    let daemon = Daemon::start(&["--timeout", "60"]);
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("sleep.py");
    std::fs::write(&script, "import time\ntime.sleep(30)\n").unwrap();
    let started = Instant::now();
    let out = pushy_on(&daemon, "run", &["--timeout", "1"], &script);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    assert!(started.elapsed() < Duration::from_secs(10));
    let mount = format!("{}:/data", dir.path().display());
    for command in ["run", "test"] {
        let out = pushy_on(&daemon, command, &["--dir", &mount], &script);
        assert_eq!(out.status.code(), Some(2), "{command}");
        let stderr = text(&out.stderr);
        assert!(
            stderr.contains("--dir cannot be used with a daemon"),
            "{command}: {stderr}"
        );
    }
}

#[tokio::test]
async fn the_client_gives_up_on_a_server_that_says_nothing() -> anyhow::Result<()> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let address = listener.local_addr()?;
    let silent = std::thread::spawn(move || {
        let held: Vec<_> = listener.incoming().take(1).collect();
        std::thread::sleep(Duration::from_secs(5));
        drop(held);
    });
    let mut config = pushy::ConnectionConfig::default();
    config.handshake_timeout = Some(Duration::from_secs(1));
    let started = Instant::now();
    let err = pushy::connect_with(&format!("daemon:{address}"), config)
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::Transport(TransportError::Timeout(
                pushy::transport::Timeout::Handshake { .. }
            ))
        ),
        "{err:?}"
    );
    assert!(
        err.to_string().contains("did not complete the handshake"),
        "{err}"
    );
    assert!(started.elapsed() < Duration::from_secs(3));
    silent.join().unwrap();
    Ok(())
}

#[tokio::test]
async fn a_server_of_another_protocol_is_named() -> anyhow::Result<()> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let address = listener.local_addr()?;
    let http = std::thread::spawn(move || {
        let (mut socket, _) = listener.accept().unwrap();
        let mut request = [0u8; 64];
        let _ = socket.read(&mut request);
        let _ = socket.write_all(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n");
    });
    let err = pushy::connect_with(
        &format!("daemon:{address}"),
        pushy::ConnectionConfig::default(),
    )
    .await
    .unwrap_err();
    assert!(err.to_string().contains("speaks HTTP"), "{err}");
    http.join().unwrap();
    Ok(())
}

#[test]
fn a_missing_token_file_is_named_and_a_garbage_ca_refused_at_once() {
    let out = Command::new(env!("CARGO_BIN_EXE_pushy"))
        .args([
            "eval",
            "--target",
            "daemon:127.0.0.1:9",
            "--token-file",
            "/no/such/token",
            "1",
        ])
        .output()
        .unwrap();
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("/no/such/token"), "{stderr}");
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, "not a certificate\n").unwrap();
    // Port 9 (discard) is closed here: the CA must be refused before dialling.
    let out = Command::new(env!("CARGO_BIN_EXE_pushy"))
        .args(["eval", "--target", "daemon:127.0.0.1:9", "--tls-ca"])
        .arg(&ca)
        .arg("1")
        .output()
        .unwrap();
    let stderr = text(&out.stderr);
    assert!(stderr.contains("no certificate in"), "{stderr}");
    assert!(!stderr.contains("panicked at"), "{stderr}");
}

#[tokio::test]
async fn sigterm_stops_a_daemon_whose_session_sleeps() -> anyhow::Result<()> {
    let mut daemon = Daemon::start(&["--timeout", "600"]);
    let con = pushy::connect_with(&daemon.url(), daemon.config()).await?;
    let call = tokio::spawn({
        let con = con.clone();
        async move { con.execute("import time\ntime.sleep(3600)").await }
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    rustix::process::kill_process(
        rustix::process::Pid::from_raw(daemon.pid()).unwrap(),
        rustix::process::Signal::TERM,
    )?;
    let started = Instant::now();
    loop {
        if let Some(status) = daemon.child.try_wait()? {
            assert!(status.success(), "{status:?}");
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(8),
            "the daemon did not stop"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let err = tokio::time::timeout(Duration::from_secs(5), call)
        .await??
        .unwrap_err();
    assert!(!err.session_survives(), "{err:?}");
    Ok(())
}

/// A server that completes the handshake, reads one request and hangs up:
/// the client must report the closed connection, never panic (its brief
/// wait for the reply once polled a completed channel).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_closes_right_after_a_request_is_an_error_not_a_panic() -> anyhow::Result<()>
{
    use futures::{SinkExt, StreamExt};
    use pushy::protocol::{ClientMessage, PROTOCOL_VERSION, ServerMessage};
    use tokio_util::codec::Framed;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let address = listener.local_addr()?;
    let server = tokio::spawn(async move {
        for _ in 0..20 {
            let (socket, _) = listener.accept().await.unwrap();
            let codec = pushy::transport::WireCodec::<ClientMessage, ServerMessage>::new(1 << 20);
            let mut framed = Framed::new(socket, codec);
            assert!(matches!(
                framed.next().await,
                Some(Ok(ClientMessage::Hello { .. }))
            ));
            let hello = ServerMessage::Hello {
                version: PROTOCOL_VERSION,
                capabilities: Vec::new(),
                challenge: None,
            };
            framed.send(hello).await.unwrap();
            assert!(matches!(
                framed.next().await,
                Some(Ok(ClientMessage::Limits(_)))
            ));
            framed.send(ServerMessage::Welcome).await.unwrap();
            assert!(matches!(
                framed.next().await,
                Some(Ok(ClientMessage::Request { .. }))
            ));
            drop(framed);
        }
    });
    for _ in 0..20 {
        let con = pushy::connect_with(&format!("daemon:{address}"), Default::default()).await?;
        let err = con.eval("1").await.unwrap_err();
        assert!(
            matches!(&err, Error::Closed(reason)
                if matches!(reason.transport(), Some(TransportError::PeerGone))),
            "{err:?}"
        );
    }
    server.await?;
    Ok(())
}

#[tokio::test]
async fn a_daemon_full_of_handshakes_says_so() -> anyhow::Result<()> {
    let daemon = Daemon::start(&[]);
    let idle: Vec<_> = (0..300)
        .map(|_| TcpStream::connect(&daemon.address))
        .collect::<Result<_, _>>()?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let err = pushy::connect_with(&daemon.url(), daemon.config())
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("too many connections in their handshake"),
        "{err}"
    );
    drop(idle);
    Ok(())
}

#[tokio::test]
async fn files_a_session_left_open_are_flushed_when_it_ends() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let mount = format!("{}:/m", dir.path().display());
    let daemon = Daemon::start(&["--dir", &mount]);
    let con = pushy::connect_with(&daemon.url(), daemon.config()).await?;
    con.execute("f = open('/m/left-open.txt', 'w')\nf.write('kept')")
        .await?;
    con.close().await?;
    let path = dir.path().join("left-open.txt");
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::fs::read(&path)? != b"kept" {
        assert!(Instant::now() < deadline, "never flushed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}
