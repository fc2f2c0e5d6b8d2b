//! Every failure a caller can act on is a variant, from the socket to the
//! caller: each test makes one happen for real and matches its variant
//! (never its text).

mod common;

use std::time::Duration;

use futures::{SinkExt, StreamExt};
use pushy::protocol::{ClientMessage, PROTOCOL_VERSION, Refusal, ServerMessage};
use pushy::transport::{ForeignProtocol, HandshakeError, Timeout, TransportError, WireCodec};
use pushy::{CloseReason, Connection, ConnectionConfig, Error};
use tokio::io::AsyncWriteExt;
use tokio_util::codec::Framed;

use common::daemon::Daemon;

type Wire = Framed<tokio::net::TcpStream, WireCodec<ClientMessage, ServerMessage>>;

/// A TCP server that runs `script` on its first connection.
async fn fake_server<S, F>(script: S) -> String
where
    S: FnOnce(Wire) -> F + Send + 'static,
    F: std::future::Future<Output = ()> + Send + 'static,
{
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (socket, _) = listener.accept().await.unwrap();
        script(Framed::new(socket, WireCodec::new(1 << 20))).await;
    });
    format!("daemon:{address}")
}

/// The error of connecting to a server that answers the client's `Hello`
/// with `reply` and hangs up.
async fn answered_with(reply: &'static [u8]) -> Error {
    let url = fake_server(move |mut framed| async move {
        let _ = framed.next().await;
        framed.get_mut().write_all(reply).await.unwrap();
        let _ = framed.get_mut().shutdown().await;
    })
    .await;
    pushy::connect_with(&url, ConnectionConfig::default())
        .await
        .unwrap_err()
}

/// Answers the handshake as a real host does (no token).
async fn welcome(framed: &mut Wire) {
    assert!(matches!(
        framed.next().await,
        Some(Ok(ClientMessage::Hello { .. }))
    ));
    framed
        .send(ServerMessage::Hello {
            version: PROTOCOL_VERSION,
            capabilities: Vec::new(),
            challenge: None,
        })
        .await
        .unwrap();
    assert!(matches!(
        framed.next().await,
        Some(Ok(ClientMessage::Limits(_)))
    ));
    framed.send(ServerMessage::Welcome).await.unwrap();
}

fn transport(err: &Error) -> &TransportError {
    match err {
        Error::Transport(t) => t,
        Error::Closed(reason) => reason.transport().unwrap_or_else(|| panic!("{err:?}")),
        other => panic!("not a transport error: {other:?}"),
    }
}

#[tokio::test]
async fn a_host_that_vanishes_between_frames_is_peer_gone() {
    let url = fake_server(|mut framed| async move {
        welcome(&mut framed).await;
        let _ = framed.next().await;
    })
    .await;
    let con = pushy::connect_with(&url, ConnectionConfig::default())
        .await
        .unwrap();
    let err = con.eval("1").await.unwrap_err();
    assert!(
        matches!(transport(&err), TransportError::PeerGone),
        "{err:?}"
    );
    assert!(
        matches!(err, Error::Closed(CloseReason::Transport(_))),
        "{err:?}"
    );
    // Later calls see the same reason.
    let again = con.ping().await.unwrap_err();
    assert!(
        matches!(transport(&again), TransportError::PeerGone),
        "{again:?}"
    );
}

#[tokio::test]
async fn a_host_that_stops_inside_a_frame_is_eof_mid_frame() {
    let url = fake_server(|mut framed| async move {
        welcome(&mut framed).await;
        let _ = framed.next().await;
        // A length prefix of 100 bytes, then 3 of them, then the end.
        let socket = framed.get_mut();
        socket.write_all(&[0, 0, 0, 100, 1, 2, 3]).await.unwrap();
        socket.shutdown().await.unwrap();
    })
    .await;
    let con = pushy::connect_with(&url, ConnectionConfig::default())
        .await
        .unwrap();
    let err = con.eval("1").await.unwrap_err();
    assert!(
        matches!(transport(&err), TransportError::EofMidFrame),
        "{err:?}"
    );
}

#[tokio::test]
async fn a_malformed_frame_is_malformed() {
    let url = fake_server(|mut framed| async move {
        welcome(&mut framed).await;
        let _ = framed.next().await;
        // A whole frame whose body is no message (variant 200).
        framed
            .get_mut()
            .write_all(&[0, 0, 0, 2, 200, 1])
            .await
            .unwrap();
        let _ = framed.next().await;
    })
    .await;
    let con = pushy::connect_with(&url, ConnectionConfig::default())
        .await
        .unwrap();
    let err = con.eval("1").await.unwrap_err();
    assert!(
        matches!(transport(&err), TransportError::Malformed(_)),
        "{err:?}"
    );
}

#[tokio::test]
async fn a_host_of_another_version_is_a_version_mismatch() {
    let url = fake_server(|mut framed| async move {
        let _ = framed.next().await;
        let hello = ServerMessage::Hello {
            version: 999,
            capabilities: Vec::new(),
            challenge: None,
        };
        framed.send(hello).await.unwrap();
    })
    .await;
    let err = pushy::connect_with(&url, ConnectionConfig::default())
        .await
        .unwrap_err();
    assert!(
        matches!(
            transport(&err),
            TransportError::VersionMismatch {
                client: PROTOCOL_VERSION,
                server: 999
            }
        ),
        "{err:?}"
    );
}

#[tokio::test]
async fn a_silent_host_is_a_handshake_timeout_and_a_web_server_is_named() {
    let silent = fake_server(|framed| async move {
        tokio::time::sleep(Duration::from_secs(10)).await;
        drop(framed);
    })
    .await;
    let mut config = ConnectionConfig::default();
    config.handshake_timeout = Some(Duration::from_millis(500));
    let err = pushy::connect_with(&silent, config).await.unwrap_err();
    assert!(
        matches!(
            transport(&err),
            TransportError::Timeout(Timeout::Handshake { .. })
        ),
        "{err:?}"
    );
    let web = answered_with(b"HTTP/1.1 400 Bad Request\r\n\r\n").await;
    assert!(
        matches!(
            transport(&web),
            TransportError::Handshake(HandshakeError::Foreign(ForeignProtocol::Http))
        ),
        "{web:?}"
    );
}

#[tokio::test]
async fn a_server_of_another_protocol_is_named_not_taken_for_a_huge_frame() {
    // Python's http.server answers a stranger's bytes with an HTML page.
    let html = answered_with(b"<!DOCTYPE HTML>\n<html><body>Error 400</body></html>\n").await;
    assert!(
        matches!(
            transport(&html),
            TransportError::Handshake(HandshakeError::Foreign(ForeignProtocol::Unknown))
        ),
        "{html:?}"
    );
}

#[tokio::test]
async fn a_local_host_that_exits_before_the_handshake_says_so() {
    let mut config = ConnectionConfig::default();
    config.host_program = Some(env!("CARGO_BIN_EXE_pushy").into());
    config.host_args = vec!["--no-such-flag".into()];
    let err = pushy::connect_with("local:", config).await.unwrap_err();
    match transport(&err) {
        TransportError::HostExited { status, .. } => assert_eq!(status.code(), Some(2)),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn a_daemon_refuses_with_a_reason_enum() {
    // (No token and a wrong token: `daemon_refuses_wrong_or_missing_tokens`
    // in transports.rs.)
    let daemon = Daemon::start(&["--max-sessions", "1"]);
    // A memory limit too small to start a session: refused by the daemon,
    // and by an embedded sandbox, with one reason for both.
    let mut config = daemon.config();
    config.limits.memory_bytes = Some(4 << 20);
    let err = pushy::connect_with(&daemon.url(), config)
        .await
        .unwrap_err();
    assert!(
        matches!(
            transport(&err),
            TransportError::Refused(Refusal::MemoryTooSmall { .. })
        ),
        "{err:?}"
    );
    let mut config = ConnectionConfig::default();
    config.limits.memory_bytes = Some(4 << 20);
    let embedded = pushy::connect_with("embedded:", config).await.unwrap_err();
    assert!(matches!(embedded, Error::Sandbox(_)), "{embedded:?}");
    assert_eq!(embedded.refusal(), err.refusal());
    assert!(matches!(
        err.refusal(),
        Some(Refusal::MemoryTooSmall { .. })
    ));
    // The only slot taken: the next session is refused as the limit says.
    let held = pushy::connect_with(&daemon.url(), daemon.config())
        .await
        .unwrap();
    let err = pushy::connect_with(&daemon.url(), daemon.config())
        .await
        .unwrap_err();
    assert!(
        matches!(
            transport(&err),
            TransportError::Refused(Refusal::SessionLimit { limit: 1 })
        ),
        "{err:?}"
    );
    held.close().await.unwrap();
}

#[tokio::test]
async fn limits_traps_exits_and_handles_are_their_own_variants() {
    let sandbox = common::sandbox();
    let mut session = common::session_config();
    session.time_limit = Some(Duration::from_millis(500));
    let open = || Connection::embedded_with(&sandbox, session.clone(), common::quiet_config());
    let con = open().await.unwrap();
    let err = con.execute("while True: pass").await.unwrap_err();
    assert!(matches!(err, Error::TimeLimit { limit_ms: 500 }), "{err:?}");
    // The session is gone; it says so.
    let err = con.ping().await.unwrap_err();
    assert!(matches!(err, Error::SessionTerminated { .. }), "{err:?}");

    let con = open().await.unwrap();
    let err = con.execute("import os; os._exit(7)").await.unwrap_err();
    assert!(matches!(err, Error::Exited { status: 7 }), "{err:?}");

    let con = open().await.unwrap();
    let err = con
        .request_op(pushy::protocol::Op::Repr(987_654))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::InvalidHandle(_)), "{err:?}");
    // A Python exception of the same name is a Python error, not a handle error.
    let err = con
        .execute("from pushy_guest.table import InvalidHandle\nclass InvalidHandle(Exception): pass\nraise InvalidHandle('mine')")
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Python(_)), "{err:?}");
    assert!(con.ping().await.is_ok());

    // A recursion past any stack grows the heap up to the memory limit.
    let mut small = common::session_config();
    small.memory_limit = 64 << 20;
    let con = Connection::embedded_with(&sandbox, small, common::quiet_config())
        .await
        .unwrap();
    let err = con
        .execute("import sys\nsys.setrecursionlimit(10**9)\ndef f(n): return f(n + 1)\nf(0)")
        .await
        .unwrap_err();
    // Python may still raise MemoryError; the limit's hand in it is a flag.
    let limit_hit = matches!(err, Error::MemoryLimit { .. })
        || err
            .python()
            .is_some_and(|e| e.is_instance("MemoryError") && e.memory_limit_hit);
    assert!(limit_hit, "{err:?}");
}

#[tokio::test]
async fn a_closed_connection_says_it_was_closed_here() {
    let con = pushy::connect("embedded:").await.unwrap();
    let other = con.clone();
    con.close().await.unwrap();
    let err = other.ping().await.unwrap_err();
    assert!(
        matches!(err, Error::Closed(CloseReason::ByLocalSide)),
        "{err:?}"
    );
}
