//! Transports between the local side and a sandbox host: frames, the
//! handshake, authentication, and the processes and sockets that carry them.
//!
//! Every transport is just a byte stream (pipes of a child, TCP, ssh's pipes);
//! all share the codec and the handshake. Nothing here knows the client: the
//! local side gets a [`ClientLink`] — message channels past the handshake —
//! from [`dial_tcp`], [`spawn_local`] or [`spawn_ssh`], and typed
//! [`TransportError`]s; `crate::Connection::over` makes a connection of it.
//!
//! - the local side: [`dial_tcp`] (TCP, [`tls`]) and the client's handshake
//!   (`dial.rs`), `local:`/`ssh:` children (`spawn.rs`);
//! - the host side, driven by the session thread itself: the streams it can
//!   block on (`stream.rs`), framing and waiting (`link.rs`), the server's
//!   handshake (`accept.rs`), the session's view with the interrupt scan
//!   (`session_link.rs`), and the daemon ([`server`]).

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
