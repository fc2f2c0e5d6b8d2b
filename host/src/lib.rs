//! # Pushy, sandboxed
//!
//! Connect to a Python interpreter and use it as if it were local — modules,
//! `eval`, `execute`, functions defined remotely, handles to remote objects,
//! callbacks into the local side — where the interpreter is CPython compiled
//! to WASI running inside wasmtime, so untrusted code cannot harm the host.
//!
//! ```no_run
//! # async fn demo() -> Result<(), pushy::Error> {
//! let con = pushy::connect("embedded:").await?;
//! let path = con.modules().import("os.path").await?;
//! let joined: String = path.call_method("join", &("a", "b")).await?.extract()?;
//! assert_eq!(joined, "a/b");
//! let add = con.define("def add(a, b):\n    return a + b").await?;
//! assert_eq!(add.call(&(2, 3)).await?.extract::<i64>()?, 5);
//! con.close().await?;
//! # Ok(()) }
//! ```
//!
//! # Layout
//!
//! Dependencies point one way, each layer using only those above it here:
//!
//! - [`protocol`]: the wire messages, data only (values as flat node lists,
//!   operations, replies, the reasons a server refuses).
//! - [`sandbox`]: engine, compiled-component cache, instances, limits, each
//!   session's private size-bounded `/tmp`, the session loop (protocol only).
//! - [`transport`]: frames (postcard in length-prefixed frames), handshake and
//!   authentication, `local:`/`ssh:` children, dialling a daemon, the
//!   `pushy serve` daemon; it hands the client a [`transport::ClientLink`]
//!   (message channels past the handshake) and typed
//!   [`transport::TransportError`]s, never a connection.
//! - `client`: [`Connection`] over a link, [`RemoteObject`], [`Value`],
//!   callbacks, targets and `embedded:` (re-exported here).
//! - [`blocking`]: every method of the async API for code without a runtime.
//!
//! The `pushy` command line (`run`, `eval`, `repl`, `host`, `serve`, and `test`
//! with its harness) is not part of the library: it lives in `src/bin/pushy/`,
//! built with the default `cli` feature; `default-features = false` leaves it
//! out, and with it clap, rustyline, indicatif and tracing-subscriber.

pub mod blocking;
mod causes;
mod client;
pub mod protocol;
pub mod sandbox;
pub mod transport;

/// Byte payloads of [`Value::Bytes`] (re-exported from the `bytes` crate).
pub use bytes::Bytes;
pub use client::{
    CALLBACK_ERROR_TYPE, CallArgs, Callback, CallbackException, CloseReason, Connection,
    ConnectionConfig, DEFAULT_OBTAIN_LIMIT, Error, InputMode, Modules, OutputChunk, OutputMode,
    ProtocolViolation, PythonError, RemoteIter, RemoteObject, Target, UNRESPONSIVE_SLACK, Value,
    connect, connect_with, default_sandbox,
};
pub use sandbox::{Mount, Sandbox, SandboxConfig, SandboxError, SessionConfig};
