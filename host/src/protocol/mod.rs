//! The wire protocol between the local side and a sandbox host: data only.
//!
//! Nothing here knows about tokio or wasmtime, so the protocol can be read,
//! tested and versioned on its own. Values cross as a flat, pre-order list of
//! [`Node`]s (the same shape as the WIT interface), which keeps decoding free
//! of recursion: a hostile peer cannot overflow the stack with deep nesting.

use bytes::Bytes;
use serde::{Deserialize, Serialize};

pub mod payload;
#[cfg(test)]
pub(crate) mod strategies;

/// Version of this protocol; both ends must agree during the handshake.
pub const PROTOCOL_VERSION: u32 = 3;

/// Deepest nesting of a value, in either direction: a deeper value is
/// refused with an error before anything is sent.
///
/// The guest mirrors it as `MAX_DEPTH` in `guest/pushy_guest/values.py`
/// (`tests/guest_constants.rs` checks that the two agree). It is 200 because
/// of the guest's recursion: it encodes and decodes one Python frame per
/// level, on top of whatever stack the user's code holds (a callback's nested
/// request is dispatched inside the user's frames), all within Python's
/// recursion limit of 1,000 frames.
pub const MAX_DEPTH: usize = 200;

/// Most `str`/`bytes` payload, in bytes, of one value the guest sends; it
/// refuses a larger one with `ValueTooLarge` (a `ValueError`).
///
/// Mirrors `MAX_VALUE_BYTES` in `guest/pushy_guest/values.py`; the host
/// sizes how much the guest may hand it in one call from it.
pub const MAX_VALUE_BYTES: usize = 256 << 20;

/// Most nodes of one value the guest sends; it refuses more with
/// `ValueTooLarge`.
///
/// Mirrors `MAX_VALUE_NODES` in `guest/pushy_guest/values.py`; the host
/// sizes how much the guest may hand it in one call from it.
pub const MAX_VALUE_NODES: usize = 4 << 20;

/// Qualified name of the guest exception raised for a handle id the session
/// never issued or already released (`InvalidHandle` in
/// `guest/pushy_guest/table.py`), as its error reports it; the client
/// recognises such errors by [`ErrorKind::InvalidHandle`], not by this name.
pub const INVALID_HANDLE_TYPE: &str = "pushy_guest.table.InvalidHandle";

/// Bit positions of [`HandleInfo::opmask`]: the dunders an object's type has.
///
/// Mirrors `OPMASK_DUNDERS` in `guest/pushy_guest/table.py`.
pub mod opmask {
    /// `__call__`
    pub const CALL: u64 = 1 << 0;
    /// `__getitem__`
    pub const GETITEM: u64 = 1 << 1;
    /// `__setitem__`
    pub const SETITEM: u64 = 1 << 2;
    /// `__delitem__`
    pub const DELITEM: u64 = 1 << 3;
    /// `__len__`
    pub const LEN: u64 = 1 << 4;
    /// `__contains__`
    pub const CONTAINS: u64 = 1 << 5;
    /// `__iter__`
    pub const ITER: u64 = 1 << 6;
    /// `__next__`
    pub const NEXT: u64 = 1 << 7;
    /// `__enter__`
    pub const ENTER: u64 = 1 << 8;
    /// `__exit__`
    pub const EXIT: u64 = 1 << 9;
    /// `__hash__` (not `None`)
    pub const HASH: u64 = 1 << 10;
    /// `__bool__`
    pub const BOOL: u64 = 1 << 11;
    /// `__add__`
    pub const ADD: u64 = 1 << 12;
    /// `__sub__`
    pub const SUB: u64 = 1 << 13;
    /// `__mul__`
    pub const MUL: u64 = 1 << 14;
}

/// A handle to an object in the guest's object table.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct HandleInfo {
    /// Table id, unique within a session.
    pub id: u64,
    /// Qualified type name, e.g. `builtins.list`.
    pub type_name: String,
    /// See [`opmask`].
    pub opmask: u64,
}

/// One node of a value in pre-order; containers are followed by their children.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub enum Node {
    /// `None`
    None,
    /// `bool`
    Bool(bool),
    /// `int` within i64
    Int(i64),
    /// `int` outside i64, in decimal
    BigInt(String),
    /// `float`
    Float(f64),
    /// `str`
    Str(String),
    /// `bytes`; when decoded from a frame, a large payload shares the
    /// frame's buffer (see [`payload`]).
    Bytes(#[serde(with = "payload")] Bytes),
    /// `tuple` of the next n values
    Tuple(u32),
    /// `list` of the next n values (by value: only from `obtain` or from the local side)
    List(u32),
    /// `dict` of the next n key/value pairs
    Dict(u32),
    /// `set` of the next n values
    Set(u32),
    /// `frozenset` of the next n values
    FrozenSet(u32),
    /// A handle the guest hands out (guest to local).
    Handle(HandleInfo),
    /// A guest object the local side holds, by id (local to guest).
    Object(u64),
    /// A callable on the local side, by its id there (local to guest).
    Callback(u64),
}

/// A value: a non-empty pre-order list of nodes.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
pub struct WireValue(pub Vec<Node>);

impl WireValue {
    /// `None`.
    pub fn none() -> Self {
        WireValue(vec![Node::None])
    }

    /// The empty tuple (no arguments).
    pub fn empty_tuple() -> Self {
        WireValue(vec![Node::Tuple(0)])
    }
}

/// Keyword arguments.
pub type Kwargs = Vec<(String, WireValue)>;

/// Binary operators (`a + b`; `reflected` computes `b + a`).
#[allow(missing_docs)]
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum BinaryOp {
    Add,
    Sub,
    Mul,
    TrueDiv,
    FloorDiv,
    Mod,
    Pow,
    LShift,
    RShift,
    BitAnd,
    BitOr,
    BitXor,
    MatMul,
}

/// Rich comparisons.
#[allow(missing_docs)]
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum CompareOp {
    Lt,
    Le,
    Eq,
    Ne,
    Gt,
    Ge,
}

/// Unary operators.
#[allow(missing_docs)]
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum UnaryOp {
    Neg,
    Pos,
    Invert,
    Abs,
}

/// A release of `count` sends of handle `id`.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReleaseEntry {
    /// Handle id.
    pub id: u64,
    /// How many sends of it the releasing side received.
    pub count: u32,
}

/// One operation on the guest.
#[allow(missing_docs)]
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub enum Op {
    /// Enters the guest and returns `None`.
    Ping,
    Eval(String),
    Execute(String),
    /// Runs source that defines a function (or class); returns the last one.
    Define(String),
    ImportModule(String),
    GetAttr {
        target: u64,
        name: String,
    },
    SetAttr {
        target: u64,
        name: String,
        value: WireValue,
    },
    DelAttr {
        target: u64,
        name: String,
    },
    Call {
        target: u64,
        args: WireValue,
        kwargs: Kwargs,
    },
    CallMethod {
        target: u64,
        name: String,
        args: WireValue,
        kwargs: Kwargs,
    },
    GetItem {
        target: u64,
        key: WireValue,
    },
    SetItem {
        target: u64,
        key: WireValue,
        value: WireValue,
    },
    DelItem {
        target: u64,
        key: WireValue,
    },
    Len(u64),
    Contains {
        target: u64,
        key: WireValue,
    },
    /// Returns `(iterator or None, first batch tuple, done)`.
    Iter {
        target: u64,
        max_items: u32,
    },
    /// Returns `(batch tuple, done)`.
    Next {
        target: u64,
        max_items: u32,
    },
    Repr(u64),
    Str(u64),
    Truth(u64),
    Hash(u64),
    Binary {
        op: BinaryOp,
        target: u64,
        other: WireValue,
        reflected: bool,
    },
    Compare {
        op: CompareOp,
        target: u64,
        other: WireValue,
    },
    Unary {
        op: UnaryOp,
        target: u64,
    },
    /// Returns a tuple of names.
    Dir(u64),
    /// Deep copy by value, at most `max_items` nodes.
    Obtain {
        target: u64,
        max_items: u32,
    },
    Release(Vec<ReleaseEntry>),
    /// Live entries in the guest's object table.
    TableSize,
    SetArgv(Vec<String>),
    /// Runs a script as `__main__`; returns its exit status. The source is
    /// the file's bytes: Python decodes them (a BOM, a PEP 263 coding cookie).
    RunScript {
        #[serde(with = "serde_bytes")]
        source: Vec<u8>,
        filename: String,
    },
    /// What interpreter shutdown does: runs the `atexit` handlers and flushes
    /// every open file (the host does this itself when a session ends).
    Shutdown,
}

/// A Python exception, as data.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct ErrorInfo {
    /// Qualified type name, e.g. `builtins.ValueError`.
    pub type_name: String,
    /// Qualified names of its base classes along the MRO, nearest first.
    pub bases: Vec<String>,
    /// `str(exception)`.
    pub message: String,
    /// The remote traceback as Python formats it.
    pub traceback: String,
    /// A handle to the exception object.
    pub exception: Option<HandleInfo>,
    /// Whether the session's memory limit refused an allocation during the
    /// call (a `MemoryError` then came from the limit, not from the code).
    pub memory_limit_hit: bool,
    /// What kind of failure it is.
    pub kind: ErrorKind,
}

/// What an error reply reports.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorKind {
    /// An exception raised by Python code.
    #[default]
    Exception,
    /// A handle id the session never issued or already released.
    InvalidHandle,
}

/// What Python made of an operation.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub enum Reply {
    /// It returned this value.
    Ok(WireValue),
    /// It raised this exception.
    Error(ErrorInfo),
}

/// Why a session could not answer: not a Python exception.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, thiserror::Error)]
pub enum Failure {
    /// The call ran past its deadline; the session was terminated.
    #[error("time limit of {limit_ms} ms exceeded; the session was terminated")]
    TimeLimit {
        /// The limit, in milliseconds.
        limit_ms: u64,
    },
    /// The guest ran out of memory in a way Python could not recover from.
    #[error("memory limit of {limit_bytes} bytes exceeded; the session was terminated")]
    MemoryLimit {
        /// The limit, in bytes.
        limit_bytes: u64,
    },
    /// The guest trapped (stack overflow, abort, ...); the session was terminated.
    #[error("the sandbox trapped ({reason}); the session was terminated")]
    Trapped {
        /// What wasmtime reported.
        reason: String,
    },
    /// The session had already ended; a new one is needed.
    #[error("the session was terminated earlier ({reason})")]
    Terminated {
        /// Why it ended.
        reason: String,
    },
    /// The request made no sense (e.g. a callback reply nobody waits for).
    #[error("bad request: {0}")]
    BadRequest(String),
    /// The local side interrupted the call; the session was terminated.
    #[error("interrupted; the session was terminated (its state is lost)")]
    Interrupted,
    /// Guest code called `os._exit(status)`: the session ended.
    #[error("the session's code exited with status {status}")]
    Exited {
        /// The status it gave.
        status: i32,
    },
}

/// What the guest gets while it waits on a local callback.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub enum Inbound {
    /// The callback finished.
    Done(Reply),
    /// A nested request to dispatch first (the trampoline).
    Request(Op),
}

/// Which output stream.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum OutputStream {
    /// stdout
    Stdout,
    /// stderr
    Stderr,
}

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
        /// [`PROTOCOL_VERSION`] of the client.
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
}

/// Why a server turned a client away ([`ServerMessage::Refused`]).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Refusal {
    /// The client did not prove it knows the server's token.
    #[error("authentication failed: {0}")]
    Auth(AuthFailure),
    /// Every session slot of the server is taken.
    #[error("server busy: the limit of {limit} sessions is reached")]
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
        /// [`PROTOCOL_VERSION`] of the server.
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
