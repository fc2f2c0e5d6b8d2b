//! # `pushy._core`: the Rust side of the `pushy` Python package
//!
//! A thin PyO3 layer over the `pushy` library's async client: connections,
//! handles, values and callbacks cross here; what a proxy does with its
//! dunder methods, how exceptions are made, what a local object may show the
//! sandbox, `compile`, `putfile` and the rest are in the pure-Python package
//! beside it (`python/pushy/`), which hands this module its classes and
//! hooks once, at import (`install`).
//!
//! # Layout
//!
//! - [`hooks`]: what the Python package supplies: proxy classes, exception
//!   classes, the capability and exception factories, the output writer.
//! - [`waiting`]: the tokio runtime, the per-connection re-entrant call lock,
//!   and the wait that serves callbacks on the Python thread whose call is
//!   waiting for them.
//! - [`session`]: the `Connection` class: one session, its GC settings,
//!   its output, its live proxies.
//! - [`proxy`]: `ProxyBase` (a handle to a remote object) and every
//!   operation on one.
//! - [`iter`]: `RemoteIterator`, iteration in growing batches.
//! - [`convert`]: Python objects into arguments the client encodes, and
//!   values back into Python objects.
//! - [`errors`]: `pushy::Error` to Python exceptions, in one place.
//! - [`targets`]: `connect` (sandboxes cached per configuration) and the
//!   host that `local:` starts (`python -m pushy._host`).

use pyo3::prelude::*;

mod convert;
mod errors;
mod hooks;
mod iter;
mod proxy;
mod session;
mod targets;
mod waiting;

#[pymodule]
fn _core(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<session::Connection>()?;
    m.add_class::<session::CallbackRef>()?;
    m.add_class::<proxy::ProxyBase>()?;
    m.add_class::<iter::RemoteIterator>()?;
    m.add_function(wrap_pyfunction!(hooks::install, m)?)?;
    m.add_function(wrap_pyfunction!(targets::connect, m)?)?;
    m.add_function(wrap_pyfunction!(targets::serve_stdio, m)?)?;
    proxy::add_functions(m)?;
    m.add_function(wrap_pyfunction!(iter::iterate, m)?)?;
    m.add("PROTOCOL_VERSION", pushy::protocol::PROTOCOL_VERSION)?;
    Ok(())
}
