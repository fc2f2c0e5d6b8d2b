//! Transports between the local side and a sandbox host: frames, the
//! handshake, authentication, and the processes and sockets that carry them.
//!
//! Every transport is just a byte stream (pipes of a child, TCP, ssh's pipes);
//! all share the codec and the handshake.

pub mod auth;
mod blocking_link;
mod client;
pub mod codec;
pub mod server;
mod spawn;
pub(crate) mod spin;
pub mod tls;

pub(crate) use blocking_link::{BlockingLink, LinkLimits, LinkStream, Stdio};
pub(crate) use client::start_stream;
pub use codec::{DEFAULT_MAX_FRAME, WireCodec};
pub(crate) use spawn::{connect_local, connect_ssh};

/// Errors of the transport layer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TransportError {
    /// Reading or writing the stream failed.
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
    /// The token file could not be read.
    #[error(transparent)]
    Token(#[from] auth::TokenError),
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
    Malformed(String),
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
    AuthFailed(String),
    /// The server refused the connection.
    #[error("refused by the server: {0}")]
    Refused(String),
    /// The peer did not follow the handshake.
    #[error("handshake failed: {0}")]
    Handshake(String),
    /// The peer sent nothing for too long.
    #[error("timed out: {0}")]
    Timeout(String),
    /// TLS could not be set up, or its handshake failed.
    #[error("TLS: {0}")]
    Tls(String),
    /// Starting the transport's process failed.
    #[error("cannot start {what}: {reason}")]
    Spawn {
        /// What was started.
        what: String,
        /// Why it failed.
        reason: String,
    },
}
