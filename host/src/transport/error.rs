//! Errors of the transport layer, typed down to the reason: a caller matches
//! on variants, never on message text.

use std::path::PathBuf;
use std::time::Duration;

use crate::protocol::{AuthFailure, Refusal};

/// Errors of the transport layer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TransportError {
    /// Reading or writing the stream failed.
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
    /// The token file could not be read.
    #[error(transparent)]
    Token(#[from] super::auth::TokenError),
    /// The daemon could not be reached.
    #[error("cannot connect to {address}")]
    Connect {
        /// The address dialled.
        address: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A frame's length prefix exceeded the limit (checked before allocating).
    #[error("frame larger than the limit of {limit} bytes")]
    FrameTooLarge {
        /// The limit.
        limit: usize,
    },
    /// A frame did not hold one valid message.
    #[error("malformed message: {0}")]
    Malformed(#[from] Malformed),
    /// The stream ended inside a frame.
    #[error("the peer closed the connection in the middle of a frame")]
    EofMidFrame,
    /// The peer closed the connection.
    #[error("the peer closed the connection")]
    PeerGone,
    /// The two sides speak different protocol versions.
    #[error("protocol version mismatch: client speaks {client}, server speaks {server}")]
    VersionMismatch {
        /// The client's version.
        client: u32,
        /// The server's version.
        server: u32,
    },
    /// The server wants a token and the client has none, or it was wrong.
    #[error("authentication failed: {0}")]
    AuthFailed(AuthFailure),
    /// The server refused the connection, saying why.
    #[error("refused by the server: {0}")]
    Refused(Refusal),
    /// The peer did not follow the handshake.
    #[error("handshake failed: {0}")]
    Handshake(#[from] HandshakeError),
    /// The peer sent nothing for too long.
    #[error("timed out: {0}")]
    Timeout(#[from] Timeout),
    /// TLS could not be set up, or its handshake failed.
    #[error("TLS: {0}")]
    Tls(#[from] TlsError),
    /// Starting the transport's process failed.
    #[error("cannot start {what}")]
    Spawn {
        /// What was started.
        what: String,
        /// Why it failed.
        #[source]
        source: std::io::Error,
    },
    /// `ssh:`: the remote could not run or receive the host program.
    #[error(transparent)]
    Ssh(#[from] SshError),
    /// `local:`/`ssh:`: the host program (or ssh) exited before the
    /// handshake completed; its stderr, passed through, says why.
    #[error("the host program exited ({status}) before the handshake completed")]
    HostExited {
        /// How it exited.
        status: std::process::ExitStatus,
        /// What the handshake saw of it.
        #[source]
        cause: Box<TransportError>,
    },
}

/// Why a frame did not decode to one message.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Malformed {
    /// postcard could not decode (or encode) it.
    #[error(transparent)]
    Postcard(#[from] postcard::Error),
    /// The message ended before its frame did.
    #[error("{0} trailing bytes after the message")]
    TrailingBytes(usize),
}

/// How a peer broke the client's side of the handshake.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HandshakeError {
    /// The server speaks another protocol.
    #[error("{0}")]
    Foreign(ForeignProtocol),
    /// A message came that the handshake does not expect there.
    #[error("unexpected {0} message")]
    Unexpected(&'static str),
}

/// A protocol recognised in the first bytes of a server that is not ours.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ForeignProtocol {
    /// A TLS server (connect with a CA file).
    Tls,
    /// A web server.
    Http,
    /// An SSH server.
    Ssh,
    /// Something else: its first bytes are no pushy frame.
    Unknown,
}

impl std::fmt::Display for ForeignProtocol {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ForeignProtocol::Tls => {
                "the server speaks TLS: connect with --tls-ca CA.pem (ConnectionConfig::tls_ca)"
            }
            ForeignProtocol::Http => "the server speaks HTTP, not the pushy protocol",
            ForeignProtocol::Ssh => "the server is an SSH server: use an ssh: target",
            ForeignProtocol::Unknown => {
                "the peer does not speak the pushy protocol (is it a pushy host or daemon?)"
            }
        })
    }
}

/// What took too long.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Timeout {
    /// The TCP connection was not established in time.
    #[error("could not connect to {address} within {} s", .after.as_secs_f64())]
    Connect {
        /// The address dialled.
        address: String,
        /// The time allowed.
        after: Duration,
    },
    /// The TLS handshake did not finish in time.
    #[error("no TLS handshake from {address} within {} s", .after.as_secs_f64())]
    TlsHandshake {
        /// The address dialled.
        address: String,
        /// The time allowed.
        after: Duration,
    },
    /// The host did not complete the pushy handshake in time.
    #[error(
        "the host did not complete the handshake within {} s (is it a pushy host or daemon?)",
        .after.as_secs_f64()
    )]
    Handshake {
        /// The time allowed.
        after: Duration,
    },
    /// No message came within the idle timeout.
    #[error("the connection was idle too long")]
    Idle,
    /// A frame that had started did not finish within the frame timeout.
    #[error("a frame arrived too slowly")]
    Frame,
}

/// TLS set-up and handshake failures.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// A PEM file could not be read or held nothing usable.
    #[error("{what} {}", .path.display())]
    File {
        /// What was wrong ("cannot read", "no certificate in", ...).
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// The underlying error, when there is one.
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync>>,
    },
    /// rustls refused the configuration.
    #[error(transparent)]
    Config(#[from] rustls::Error),
    /// The daemon's host is not a valid TLS server name.
    #[error("bad server name {0}")]
    ServerName(String),
    /// The TLS handshake failed (e.g. the certificate is not trusted).
    #[error("handshake failed")]
    Handshake(#[source] std::io::Error),
    /// The server hung up in the TLS handshake: it does not speak TLS.
    #[error(
        "the server closed the connection in the TLS handshake: it does not speak TLS (a daemon without --tls-cert?)"
    )]
    NotTls,
}

/// `ssh:` failures past starting `ssh` itself.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SshError {
    /// `ssh` ran but failed (connection refused, authentication, ...).
    #[error("ssh {target} failed: {stderr}")]
    Failed {
        /// The destination.
        target: String,
        /// ssh's exit status, if it exited.
        status: Option<i32>,
        /// What ssh printed on stderr, trimmed.
        stderr: String,
    },
    /// The remote machine's architecture differs from this binary's.
    #[error("pushy on {target}: the remote is not {arch}; this binary cannot run there")]
    WrongArch {
        /// The destination.
        target: String,
        /// This binary's architecture.
        arch: &'static str,
    },
}
