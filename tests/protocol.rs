//! What a misbehaving peer gets from `pushy serve`, byte by byte; and that
//! it never disturbs a well-behaved client of the same daemon.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use bytes::BytesMut;
use common::daemon::Daemon;
use pushy::protocol::{
    ClientMessage, HandshakeFault, Op, PROTOCOL_VERSION, Refusal, ServerMessage,
};
use pushy::transport::WireCodec;
use pushy::transport::auth::Token;
use tokio_util::codec::{Decoder, Encoder};

type Codec = WireCodec<ServerMessage, ClientMessage>;

struct Raw {
    stream: TcpStream,
    codec: Codec,
    buf: BytesMut,
}

impl Raw {
    fn connect(daemon: &Daemon) -> Raw {
        let stream = TcpStream::connect(&daemon.address).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        Raw {
            stream,
            codec: Codec::default(),
            buf: BytesMut::new(),
        }
    }

    fn send(&mut self, message: ClientMessage) {
        let mut out = BytesMut::new();
        self.codec.encode(message, &mut out).unwrap();
        self.stream.write_all(&out).unwrap();
    }

    /// The next message, or `None` once the server closed the connection.
    fn recv(&mut self) -> Option<ServerMessage> {
        loop {
            if let Some(message) = self.codec.decode(&mut self.buf).unwrap() {
                return Some(message);
            }
            let mut chunk = [0u8; 65536];
            match self.stream.read(&mut chunk) {
                Ok(0) => return None,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return None,
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    panic!("the server neither answered nor closed within the read timeout")
                }
                Err(e) => panic!("read: {e}"),
            }
        }
    }

    fn closed(&mut self) -> bool {
        self.recv().is_none()
    }

    fn handshake(&mut self, daemon: &Daemon) {
        self.send(ClientMessage::Hello {
            version: PROTOCOL_VERSION,
            capabilities: vec![],
        });
        let Some(ServerMessage::Hello {
            challenge: Some(challenge),
            ..
        }) = self.recv()
        else {
            panic!("no challenge")
        };
        let token = Token::from_file(&daemon.token_file).unwrap();
        self.send(ClientMessage::AuthProof {
            proof: token.prove(&challenge),
        });
        self.send(ClientMessage::Limits(Default::default()));
        assert_eq!(self.recv(), Some(ServerMessage::Welcome));
    }
}

#[test]
fn version_mismatch_names_both_versions() {
    let daemon = Daemon::start(&[]);
    let mut raw = Raw::connect(&daemon);
    raw.send(ClientMessage::Hello {
        version: 999,
        capabilities: vec![],
    });
    assert!(matches!(
        raw.recv(),
        Some(ServerMessage::Hello {
            version: PROTOCOL_VERSION,
            ..
        })
    ));
    let refused = raw.recv();
    assert_eq!(
        refused,
        Some(ServerMessage::Refused(Refusal::VersionMismatch {
            client: 999,
            server: PROTOCOL_VERSION
        }))
    );
    assert!(raw.closed());
}

#[test]
fn a_request_before_the_handshake_is_refused() {
    let daemon = Daemon::start(&[]);
    let mut raw = Raw::connect(&daemon);
    raw.send(ClientMessage::Request {
        id: 1,
        op: Op::Eval("1".into()),
    });
    let refused = raw.recv();
    assert_eq!(
        refused,
        Some(ServerMessage::Refused(Refusal::BrokenHandshake(
            HandshakeFault::RequestBeforeHello
        )))
    );
    assert!(raw.closed());
}

#[test]
fn garbage_huge_prefixes_and_truncated_frames_close_only_that_connection() {
    let daemon = Daemon::start(&[]);
    let mut good = Raw::connect(&daemon);
    good.handshake(&daemon);

    // A length prefix of u32::MAX: closed before anything is allocated.
    let mut huge = Raw::connect(&daemon);
    huge.stream.write_all(&u32::MAX.to_be_bytes()).unwrap();
    assert!(huge.closed());

    // Random bytes.
    let mut garbage = Raw::connect(&daemon);
    garbage
        .stream
        .write_all(&[0, 0, 0, 5, 0xde, 0xad, 0xbe, 0xef, 0x99])
        .unwrap();
    assert!(garbage.closed());

    // A valid frame holding an unknown message tag.
    let mut unknown = Raw::connect(&daemon);
    unknown.stream.write_all(&[0, 0, 0, 1, 200]).unwrap();
    assert!(unknown.closed());

    // Half a frame, then the peer goes away.
    let mut half = Raw::connect(&daemon);
    half.stream.write_all(&[0, 0, 0, 100, 1, 2, 3]).unwrap();
    half.stream.shutdown(std::net::Shutdown::Write).unwrap();
    assert!(half.closed());

    // An authenticated session that sends garbage mid-session.
    let mut rude = Raw::connect(&daemon);
    rude.handshake(&daemon);
    rude.stream
        .write_all(&[0, 0, 0, 3, 0xff, 0xff, 0xff])
        .unwrap();
    assert!(rude.closed());

    // The well-behaved client never noticed.
    good.send(ClientMessage::Request {
        id: 7,
        op: Op::Eval("6 * 7".into()),
    });
    let Some(ServerMessage::Response {
        id: 7,
        result: Ok(pushy::protocol::Reply::Ok(value)),
    }) = good.recv()
    else {
        panic!()
    };
    assert_eq!(value.0, vec![pushy::protocol::Node::Int(42)]);
}

#[test]
fn unknown_handles_and_double_releases_get_typed_answers() {
    let daemon = Daemon::start(&[]);
    let mut raw = Raw::connect(&daemon);
    raw.handshake(&daemon);
    raw.send(ClientMessage::Release(vec![
        pushy::protocol::ReleaseEntry {
            id: 424242,
            count: 9,
        },
    ]));
    raw.send(ClientMessage::Request {
        id: 1,
        op: Op::Repr(424242),
    });
    let Some(ServerMessage::Response {
        id: 1,
        result: Ok(pushy::protocol::Reply::Error(info)),
    }) = raw.recv()
    else {
        panic!()
    };
    assert_eq!(info.type_name, "pushy_guest.table.InvalidHandle");
    // A callback reply nobody waits for is ignored; the session goes on.
    raw.send(ClientMessage::CallbackReply {
        call: 77,
        reply: pushy::protocol::Reply::Ok(pushy::protocol::WireValue::none()),
    });
    raw.send(ClientMessage::Request {
        id: 2,
        op: Op::Ping,
    });
    assert!(matches!(
        raw.recv(),
        Some(ServerMessage::Response {
            id: 2,
            result: Ok(_)
        })
    ));
}

/// Waits for the server to close `raw` and checks that it did so after its
/// handshake timeout (10 s), not sooner, not much later.
fn closed_after_the_handshake_timeout(raw: &mut Raw) {
    // Our own read timeout must outlast the server's, or this races it.
    raw.stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let started = std::time::Instant::now();
    assert!(raw.closed());
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_secs(9) && waited < Duration::from_secs(15),
        "{waited:?}"
    );
}

#[test]
fn a_slow_frame_is_dropped_after_the_frame_timeout() {
    let daemon = Daemon::start(&[]);
    let mut raw = Raw::connect(&daemon);
    // The handshake timeout (10 s) also bounds a frame during the handshake.
    raw.stream.write_all(&[0, 0]).unwrap();
    closed_after_the_handshake_timeout(&mut raw);
}

#[test]
fn a_connection_that_says_nothing_is_closed_after_the_handshake_timeout() {
    let daemon = Daemon::start(&[]);
    // Not a byte: the server waits in a read bounded by the handshake
    // timeout, then closes.
    closed_after_the_handshake_timeout(&mut Raw::connect(&daemon));
    // The daemon still serves others.
    Raw::connect(&daemon).handshake(&daemon);
}
