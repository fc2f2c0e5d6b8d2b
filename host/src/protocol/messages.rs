//! The messages of each side, the handshake's included, and the reasons a
//! server refuses a client.

use serde::{Deserialize, Serialize};

use super::{Failure, Kwargs, Op, OutputStream, ReleaseEntry, Reply, WireValue};

/// What each side supports, exchanged in the handshake.
pub const CAPABILITIES: &[&str] = &["callbacks", "release-batches", "interrupt", "pipelining"];

/// Messages from the local side to the host.
///
/// `Hello` is variant 0 with the version as its first field, in every version
/// of the protocol, so that a mismatch is always recognised and named.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub enum ClientMessage {
    /// First message of a connection.
    Hello {
        /// [`PROTOCOL_VERSION`](super::PROTOCOL_VERSION) of the client.
        version: u32,
        /// What the client supports.
        capabilities: Vec<String>,
    },
    /// Answer to the server's challenge: HMAC-SHA256(token, challenge).
    AuthProof {
        /// The MAC.
        #[serde(with = "serde_bytes")]
        proof: Vec<u8>,
    },
    /// Stop the running call now (the session is terminated: its state is lost).
    Interrupt,
    /// Run `op`; answered by [`ServerMessage::Response`] with the same id.
    Request {
        /// Chosen by the client, unique among its requests in flight.
        id: u64,
        /// The operation.
        op: Op,
    },
    /// Handles the local side dropped.
    Release(Vec<ReleaseEntry>),
    /// The result of [`ServerMessage::CallLocal`] `call`.
    CallbackReply {
        /// The id from `CallLocal`.
        call: u64,
        /// What the callback returned or raised.
        reply: Reply,
    },
    /// Answer to [`ServerMessage::InputRequest`]: the next bytes of the
    /// local side's stdin, at most as many as asked; empty at its end.
    Input(#[serde(with = "serde_bytes")] Vec<u8>),
    /// The limits the client asks for, sent once in the handshake: after
    /// `Hello` (and `AuthProof`), before the server's `Welcome`.
    Limits(RequestedLimits),
}

/// Limits a client asks the host to apply to its session. Each only
/// tightens the host's own limit (a client can never loosen one); `None`
/// asks for nothing.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RequestedLimits {
    /// Guest time per call, in milliseconds.
    pub time_limit_ms: Option<u64>,
    /// Linear memory of the guest, in bytes.
    pub memory_bytes: Option<u64>,
    /// Output per call, in bytes.
    pub output_bytes: Option<u64>,
    /// What the session's `/tmp` may hold, in bytes.
    pub scratch_bytes: Option<u64>,
}

/// Why a server turned a client away ([`ServerMessage::Refused`]).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Refusal {
    /// The client did not prove it knows the server's token.
    #[error("authentication failed: {0}")]
    Auth(AuthFailure),
    /// Every session slot of the server is taken.
    #[error("server busy: its limit of sessions ({limit}) is reached")]
    SessionLimit {
        /// The server's `--max-sessions`.
        limit: u32,
    },
    /// Too many connections are in their handshake at once.
    #[error("server busy: too many connections in their handshake")]
    TooManyHandshakes,
    /// The two sides speak different protocol versions.
    #[error("protocol version mismatch: client speaks {client}, server speaks {server}")]
    VersionMismatch {
        /// The client's version.
        client: u32,
        /// The server's version.
        server: u32,
    },
    /// The client broke the handshake's order.
    #[error("the handshake was broken: {0}")]
    BrokenHandshake(HandshakeFault),
    /// The session's memory limit is below what the sandbox needs.
    #[error(
        "a memory limit of {limit_mib} MiB is too small to start the sandbox \
         (it needs at least {needed_mib} MiB)"
    )]
    MemoryTooSmall {
        /// The limit that applied, in MiB.
        limit_mib: u64,
        /// What the sandbox needs, in MiB.
        needed_mib: u64,
    },
    /// The session's instance could not be created for another reason.
    #[error("the session could not start: {reason}")]
    SessionFailed {
        /// What the sandbox reported, for the user.
        reason: String,
    },
}

/// Why authentication failed.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AuthFailure {
    /// The proof did not match the server's token.
    #[error("wrong token")]
    WrongToken,
    /// The server requires a token and none was given.
    #[error("the server requires a token (--token-file or PUSHY_TOKEN_FILE)")]
    TokenRequired,
}

/// How a client broke the handshake.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HandshakeFault {
    /// A message other than `Hello` came first.
    #[error("a request arrived before the handshake")]
    RequestBeforeHello,
    /// The client did not send its `Limits`.
    #[error("the handshake did not send its limits")]
    NoLimits,
}

/// Messages from the host to the local side. `Hello` is variant 0 forever.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub enum ServerMessage {
    /// Answer to the client's `Hello`.
    Hello {
        /// [`PROTOCOL_VERSION`](super::PROTOCOL_VERSION) of the server.
        version: u32,
        /// What the server supports.
        capabilities: Vec<String>,
        /// Present when the client must authenticate: random bytes to MAC.
        #[serde(with = "serde_bytes")]
        challenge: Option<Vec<u8>>,
    },
    /// Handshake complete: requests may follow.
    Welcome,
    /// The server refuses the connection and closes it.
    Refused(Refusal),
    /// The answer to [`ClientMessage::Request`] `id`.
    Response {
        /// The request's id.
        id: u64,
        /// The reply, or why there is none.
        result: Result<Reply, Failure>,
    },
    /// Guest output, in order.
    Output {
        /// stdout or stderr.
        stream: OutputStream,
        /// The bytes written.
        #[serde(with = "serde_bytes")]
        data: Vec<u8>,
    },
    /// Guest code called a local callable; answer with `CallbackReply`.
    CallLocal {
        /// Id of this call.
        call: u64,
        /// The callable's id on the local side.
        callback: u64,
        /// Positional arguments (a tuple).
        args: WireValue,
        /// Keyword arguments.
        kwargs: Kwargs,
    },
    /// The guest dropped its proxies of these local callbacks.
    ReleaseLocal(Vec<ReleaseEntry>),
    /// Guest code reads stdin: answer with [`ClientMessage::Input`] of at
    /// most `max` bytes.
    InputRequest {
        /// Most bytes wanted.
        max: u32,
    },
}

impl ServerMessage {
    /// The message's variant name, for errors that report an unexpected one.
    pub fn kind(&self) -> &'static str {
        match self {
            ServerMessage::Hello { .. } => "Hello",
            ServerMessage::Welcome => "Welcome",
            ServerMessage::Refused(_) => "Refused",
            ServerMessage::Response { .. } => "Response",
            ServerMessage::Output { .. } => "Output",
            ServerMessage::CallLocal { .. } => "CallLocal",
            ServerMessage::ReleaseLocal(_) => "ReleaseLocal",
            ServerMessage::InputRequest { .. } => "InputRequest",
        }
    }
}

impl ClientMessage {
    /// The message's variant name, for errors that report an unexpected one.
    pub fn kind(&self) -> &'static str {
        match self {
            ClientMessage::Hello { .. } => "Hello",
            ClientMessage::AuthProof { .. } => "AuthProof",
            ClientMessage::Interrupt => "Interrupt",
            ClientMessage::Request { .. } => "Request",
            ClientMessage::Release(_) => "Release",
            ClientMessage::CallbackReply { .. } => "CallbackReply",
            ClientMessage::Input(_) => "Input",
            ClientMessage::Limits(_) => "Limits",
        }
    }
}
