//! Operations on guest objects, and what comes of them: replies, errors,
//! the failures that end a session.

use serde::{Deserialize, Serialize};

use super::{HandleInfo, Kwargs, WireValue};

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
