//! Transports between the local side and a sandbox host: frames, the
//! handshake, authentication, and the processes and sockets that carry them.
//!
//! Every transport is just a byte stream (pipes of a child, TCP, ssh's pipes);
//! all share the codec and the handshake.

mod accept;
pub mod auth;
pub mod codec;
mod dial;
mod error;
mod link;
pub mod server;
mod session_link;
mod spawn;
pub(crate) mod spin;
mod stream;
pub mod tls;

pub use codec::{DEFAULT_MAX_FRAME, WireCodec};
pub use dial::{ClientLink, DialOptions, Inbound, dial_tcp};
pub use error::{
    ForeignProtocol, HandshakeError, Malformed, SshError, Timeout, TlsError, TransportError,
};
pub(crate) use link::{BlockingLink, LinkLimits};
pub use spawn::{HOST_PROGRAM_ENV, SpawnOptions, spawn_local, spawn_ssh};
pub(crate) use stream::{LinkStream, Stdio};
