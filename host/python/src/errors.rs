//! `pushy::Error` as Python exceptions, in one place: each variant (never
//! its text) picks a class the package defines (`pushy.errors`); a Python
//! exception of the sandbox is made by the package's `remote_exception`
//! (a builtin class as itself, anything else as `RemoteError`).

use std::sync::Arc;

use pushy::protocol::Refusal;
use pushy::transport::TransportError;
use pushy::{Error, PythonError};
use pyo3::prelude::*;
use pyo3::types::PyDict;

use crate::convert;
use crate::hooks;
use crate::session::State;

/// The exception class for `error` and the attributes it gets besides
/// its message.
fn class_of(error: &Error) -> (&'static str, Vec<(&'static str, f64)>) {
    match error {
        Error::Python(_) => ("RemoteError", Vec::new()),
        Error::TimeLimit { limit_ms } => (
            "TimeLimitExceeded",
            vec![("limit", *limit_ms as f64 / 1000.0)],
        ),
        Error::MemoryLimit { limit_bytes } => (
            "MemoryLimitExceeded",
            vec![("limit_mib", (*limit_bytes >> 20) as f64)],
        ),
        Error::Trapped { .. } => ("SandboxTrapped", Vec::new()),
        Error::SessionTerminated { .. } => ("SessionTerminated", Vec::new()),
        Error::Exited { status } => ("SessionExited", vec![("status", f64::from(*status))]),
        Error::Interrupted => ("Interrupted", Vec::new()),
        Error::Transport(transport) => (transport_class(transport), Vec::new()),
        Error::InvalidHandle(_) => ("InvalidHandle", Vec::new()),
        Error::BadArgument(_) => ("BadArgument", Vec::new()),
        Error::Conversion(_) | Error::Protocol(_) => ("ProtocolError", Vec::new()),
        Error::Sandbox(_) => ("SandboxError", Vec::new()),
        Error::Closed(_) => ("ConnectionClosed", Vec::new()),
        Error::UnsupportedTarget(_) => ("UnsupportedTarget", Vec::new()),
        _ => ("PushyError", Vec::new()),
    }
}

fn transport_class(error: &TransportError) -> &'static str {
    match error {
        TransportError::AuthFailed(_) | TransportError::Refused(Refusal::Auth(_)) => {
            "AuthenticationFailed"
        }
        TransportError::Refused(_) => "ConnectionRefused",
        TransportError::VersionMismatch { .. } => "ProtocolError",
        TransportError::Timeout(_) => "ConnectTimeout",
        TransportError::HostExited { cause, .. }
            if matches!(**cause, TransportError::AuthFailed(_)) =>
        {
            "AuthenticationFailed"
        }
        _ => "ConnectError",
    }
}

/// `error` as the Python exception to raise.
pub(crate) fn to_py(py: Python<'_>, state: Option<&Arc<State>>, error: Error) -> PyErr {
    match error {
        Error::Python(python) => match state {
            Some(state) => remote(py, state, *python),
            None => plain_error(py, "RemoteError", python.to_string(), &[]),
        },
        other => {
            let (class, attributes) = class_of(&other);
            plain_error(py, class, other.with_causes(), &attributes)
        }
    }
}

pub(crate) fn plain_error(
    py: Python<'_>,
    class: &str,
    message: String,
    attributes: &[(&str, f64)],
) -> PyErr {
    let made = (|| -> PyResult<PyErr> {
        let class = hooks::get(py)?.error_class(py, class)?;
        let exception = class.call1((message,))?;
        for (name, value) in attributes {
            // Whole numbers (a status, MiB) as ints.
            if value.fract() == 0.0 && value.abs() < 1e15 {
                exception.setattr(*name, *value as i64)?;
            } else {
                exception.setattr(*name, *value)?;
            }
        }
        Ok(PyErr::from_value(exception))
    })();
    made.unwrap_or_else(|error| error)
}

/// A Python exception of the sandbox, made by the package's hook.
fn remote(py: Python<'_>, state: &Arc<State>, error: PythonError) -> PyErr {
    let made = (|| -> PyResult<PyErr> {
        let hooks = hooks::get(py)?;
        let PythonError {
            type_name,
            bases,
            message,
            traceback,
            exception,
            memory_limit_hit,
            ..
        } = error;
        let exception = match exception {
            Some(object) => convert::to_py(py, state, pushy::Value::Object(object))?,
            None => py.None(),
        };
        let details = PyDict::new(py);
        details.set_item("memory_limit_hit", memory_limit_hit)?;
        let made = hooks.remote_exception.bind(py).call(
            (type_name, bases, message, traceback, exception),
            Some(&details),
        )?;
        Ok(PyErr::from_value(made))
    })();
    made.unwrap_or_else(|error| error)
}
