//! Errors of the client layer: what a caller of [`crate::Connection`] matches on.

use std::fmt;

use std::sync::Arc;

use crate::protocol::{ErrorInfo, ErrorKind, Failure, Refusal};
use crate::sandbox::SandboxError;
use crate::transport::TransportError;

use super::RemoteObject;

/// A Python exception raised in the sandbox.
#[derive(Clone)]
pub struct PythonError {
    /// Qualified type name, e.g. `builtins.ValueError`.
    pub type_name: String,
    /// Qualified names of its base classes along the MRO, nearest first.
    pub bases: Vec<String>,
    /// `str(exception)`.
    pub message: String,
    /// The remote traceback, as Python prints it.
    pub traceback: String,
    /// A handle to the exception object in the sandbox.
    pub exception: Option<RemoteObject>,
    /// Whether the sandbox's memory limit refused an allocation during the
    /// call: a `MemoryError` came from the limit, not from the code.
    pub memory_limit_hit: bool,
}

impl PythonError {
    /// Whether the exception is an instance of `name`, given qualified
    /// (`builtins.KeyError`) or bare (`KeyError`, `LookupError`).
    pub fn is_instance(&self, name: &str) -> bool {
        std::iter::once(&self.type_name)
            .chain(&self.bases)
            .any(|t| t == name || t.rsplit('.').next() == Some(name))
    }

    /// The bare type name, e.g. `ValueError`.
    pub fn short_type_name(&self) -> &str {
        self.type_name.rsplit('.').next().unwrap_or(&self.type_name)
    }
}

impl fmt::Debug for PythonError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PythonError")
            .field("type_name", &self.type_name)
            .field("message", &self.message)
            .finish_non_exhaustive()
    }
}

impl fmt::Display for PythonError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.message.is_empty() {
            write!(f, "{}", self.short_type_name())
        } else {
            write!(f, "{}: {}", self.short_type_name(), self.message)
        }
    }
}

/// Everything that can go wrong using a connection.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Python raised an exception; the session goes on.
    #[error("remote {0}")]
    Python(Box<PythonError>),
    /// A call ran past its time limit; the session was terminated.
    #[error("time limit of {:.3} s exceeded; the session was terminated", *limit_ms as f64 / 1000.0)]
    TimeLimit {
        /// The limit, in milliseconds.
        limit_ms: u64,
    },
    /// The guest ran out of memory unrecoverably; the session was terminated.
    #[error("memory limit of {} MiB exceeded; the session was terminated", limit_bytes >> 20)]
    MemoryLimit {
        /// The limit, in bytes.
        limit_bytes: u64,
    },
    /// The guest trapped (stack overflow, a wasm fault); the session was
    /// terminated.
    #[error("the sandbox trapped ({reason}); the session was terminated")]
    Trapped {
        /// What wasmtime reported.
        reason: String,
    },
    /// The session had already ended (a limit, a trap, an interrupt); start
    /// a new one.
    #[error("session terminated: {reason}")]
    SessionTerminated {
        /// Why it ended, as reported then.
        reason: String,
    },
    /// Guest code called `os._exit(status)`; the session ended.
    #[error("the session's code exited with status {status}")]
    Exited {
        /// The status it gave.
        status: i32,
    },
    /// The call was interrupted; the session was terminated (state lost).
    #[error("interrupted; the session was terminated and its state is lost")]
    Interrupted,
    /// Connecting failed: the peer could not be reached or started, the
    /// handshake failed, authentication or the server refused, a timeout.
    #[error(transparent)]
    Transport(#[from] TransportError),
    /// A handle that this session never issued or has already freed.
    #[error("invalid handle: {0}")]
    InvalidHandle(String),
    /// An argument could not be sent (e.g. a handle of another connection).
    #[error("bad argument: {0}")]
    BadArgument(String),
    /// A value could not be converted into the requested Rust type.
    #[error("cannot convert remote value: {0}")]
    Conversion(String),
    /// The sandbox could not be set up.
    #[error(transparent)]
    Sandbox(#[from] SandboxError),
    /// The connection is closed; no reply will come.
    #[error("connection closed: {0}")]
    Closed(#[source] CloseReason),
    /// The target URL is not understood or not supported.
    #[error("unsupported target '{0}'")]
    UnsupportedTarget(String),
    /// The peer sent something the protocol does not allow.
    #[error("protocol error: {0}")]
    Protocol(#[from] ProtocolViolation),
}

/// Why a connection closed.
#[derive(Clone, Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CloseReason {
    /// [`crate::Connection::close`] was called.
    #[error("closed by the local side")]
    ByLocalSide,
    /// The in-process session (`embedded:`) ended, its thread gone. (A host
    /// across a transport that goes away is
    /// [`CloseReason::Transport`] with [`TransportError::PeerGone`].)
    #[error("the session ended")]
    SessionEnded,
    /// The link failed: the peer went away, a frame was cut off or
    /// malformed, a timeout (shared by every caller that was waiting).
    #[error(transparent)]
    Transport(Arc<TransportError>),
    /// The server refused the session after the handshake.
    #[error("refused by the server: {0}")]
    Refused(Refusal),
    /// The host said nothing for [`crate::ConnectionConfig::unresponsive_after`]
    /// while a request waited on it (a stopped or wedged host).
    #[error(
        "the host did not answer for {:.1} s, past the call's time limit; gave up on it \
         (is it stopped or overloaded?)",
        after.as_secs_f64()
    )]
    Unresponsive {
        /// How long it was silent.
        after: std::time::Duration,
    },
}

impl CloseReason {
    /// The transport error that ended the link, if that is why.
    pub fn transport(&self) -> Option<&TransportError> {
        match self {
            CloseReason::Transport(error) => Some(error),
            _ => None,
        }
    }
}

/// How a peer broke the protocol after the handshake.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProtocolViolation {
    /// A value's nodes ended inside a container.
    #[error("a value ends inside a container")]
    TruncatedValue,
    /// A reply held a node only the local side may send.
    #[error("a reference node in a reply")]
    ReferenceInReply,
    /// Nodes followed a complete value.
    #[error("trailing nodes after a value")]
    TrailingNodes,
    /// A value was nested deeper than [`crate::protocol::MAX_DEPTH`].
    #[error("a value nested deeper than {0} levels")]
    TooDeep(usize),
    /// A reply did not have the shape its request asks for.
    #[error("a malformed {0} reply")]
    MalformedReply(&'static str),
}

impl Error {
    /// The Python exception, if this is one.
    pub fn python(&self) -> Option<&PythonError> {
        match self {
            Error::Python(e) => Some(e),
            _ => None,
        }
    }

    /// Whether this is a Python exception of type `name` (see [`PythonError::is_instance`]).
    pub fn is_python(&self, name: &str) -> bool {
        self.python().is_some_and(|e| e.is_instance(name))
    }

    /// Why no session was started, whatever the target: a server's
    /// [`Refusal`] (authentication and version mismatches included), or
    /// the same reason from an in-process sandbox (`embedded:` refuses a
    /// memory limit too small as `Error::Sandbox`, a daemon as a refusal).
    pub fn refusal(&self) -> Option<Refusal> {
        match self {
            Error::Transport(TransportError::Refused(refusal)) => Some(refusal.clone()),
            Error::Transport(TransportError::AuthFailed(failure)) => Some(Refusal::Auth(*failure)),
            Error::Transport(TransportError::VersionMismatch { client, server }) => {
                Some(Refusal::VersionMismatch {
                    client: *client,
                    server: *server,
                })
            }
            Error::Sandbox(error @ SandboxError::MemoryTooSmall { .. }) => Some(error.refusal()),
            _ => None,
        }
    }

    /// Whether the session survived this error (only Python exceptions and
    /// argument errors leave it usable).
    pub fn session_survives(&self) -> bool {
        matches!(
            self,
            Error::Python(_)
                | Error::InvalidHandle(_)
                | Error::BadArgument(_)
                | Error::Conversion(_)
        )
    }

    /// The message and, `: `-separated, each cause that adds something
    /// (`cannot connect to ADDR: Connection refused (os error 111)`).
    pub fn with_causes(&self) -> String {
        crate::causes::chain(self)
    }

    pub(crate) fn from_python(info: ErrorInfo, exception: Option<RemoteObject>) -> Self {
        if info.kind == ErrorKind::InvalidHandle {
            return Error::InvalidHandle(info.message);
        }
        Error::Python(Box::new(PythonError {
            type_name: info.type_name,
            bases: info.bases,
            message: info.message,
            traceback: info.traceback,
            exception,
            memory_limit_hit: info.memory_limit_hit,
        }))
    }
}

impl From<Failure> for Error {
    fn from(failure: Failure) -> Self {
        match failure {
            Failure::TimeLimit { limit_ms } => Error::TimeLimit { limit_ms },
            Failure::MemoryLimit { limit_bytes } => Error::MemoryLimit { limit_bytes },
            Failure::Trapped { reason } => Error::Trapped { reason },
            Failure::Terminated { reason } => Error::SessionTerminated { reason },
            Failure::BadRequest(message) => Error::BadArgument(message),
            Failure::Interrupted => Error::Interrupted,
            Failure::Exited { status } => Error::Exited { status },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each way a session ends maps to its own variant: a caller can tell a
    /// trap from a limit, an interrupt or an exit without reading text.
    #[test]
    fn every_failure_has_its_own_variant() {
        let cases = [
            (Failure::TimeLimit { limit_ms: 5 }, "TimeLimit"),
            (Failure::MemoryLimit { limit_bytes: 5 }, "MemoryLimit"),
            (
                Failure::Trapped {
                    reason: "wasm trap: unreachable".into(),
                },
                "Trapped",
            ),
            (
                Failure::Terminated {
                    reason: "earlier".into(),
                },
                "SessionTerminated",
            ),
            (Failure::BadRequest("no".into()), "BadArgument"),
            (Failure::Interrupted, "Interrupted"),
            (Failure::Exited { status: 3 }, "Exited"),
        ];
        for (failure, variant) in cases {
            let error = Error::from(failure);
            let got = match &error {
                Error::TimeLimit { limit_ms: 5 } => "TimeLimit",
                Error::MemoryLimit { limit_bytes: 5 } => "MemoryLimit",
                Error::Trapped { reason } if reason.contains("unreachable") => "Trapped",
                Error::SessionTerminated { .. } => "SessionTerminated",
                Error::BadArgument(_) => "BadArgument",
                Error::Interrupted => "Interrupted",
                Error::Exited { status: 3 } => "Exited",
                _ => "something else",
            };
            assert_eq!(got, variant, "{error:?}");
            assert!(
                !error.session_survives() || variant == "BadArgument",
                "{error:?}"
            );
        }
    }
}
