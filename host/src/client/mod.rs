//! The local side: connections, handles, values, callbacks.

mod callback;
mod config;
mod connection;
mod embedded;
mod encode;
mod error;
mod iter;
mod object;
mod shared;
mod target;
mod tree;
mod value;

pub use callback::{CALLBACK_ERROR_TYPE, CallArgs, Callback, CallbackException};
pub use config::{ConnectionConfig, InputMode, OutputChunk, OutputMode, UNRESPONSIVE_SLACK};
pub use connection::{Connection, Modules};
pub use error::{CloseReason, Error, ProtocolViolation, PythonError};
pub use iter::RemoteIter;
pub use object::{DEFAULT_OBTAIN_LIMIT, RemoteObject};
pub use target::{Target, connect, connect_with, default_sandbox};
pub use value::Value;
