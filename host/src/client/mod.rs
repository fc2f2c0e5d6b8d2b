//! The local side: connections, handles, values, callbacks.

mod callback;
mod connection;
mod embedded;
mod error;
mod iter;
mod object;
mod target;
mod value;

pub use callback::{CALLBACK_ERROR_TYPE, CallArgs, Callback};
pub use connection::{Connection, ConnectionConfig, InputMode, Modules, OutputChunk, OutputMode};
pub use error::{Error, PythonError};
pub use iter::RemoteIter;
pub use object::{DEFAULT_OBTAIN_LIMIT, RemoteObject};
pub use target::{Target, connect, connect_with, default_sandbox};
pub use value::Value;
