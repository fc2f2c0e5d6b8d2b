//! What the pure-Python package hands this module once, at import: the
//! classes proxies are made of, the exception classes, and the Python
//! functions that decide what Rust should not (what a local object shows the
//! sandbox, how a remote exception is raised here, where output goes).

use std::collections::HashMap;

use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyDict, PyType};

pub(crate) struct Hooks {
    /// Proxy class of a remote object that is not callable, and of one that is.
    pub(crate) plain: Py<PyType>,
    pub(crate) callable: Py<PyType>,
    /// Proxy classes for particular remote types (`builtins.module`).
    pub(crate) by_type: HashMap<String, Py<PyType>>,
    /// `localize(connection, companion, obj)`: a local object that is not plain data,
    /// as something this module can send: a proxy (of the sandbox's wrapper
    /// of it) or a `CallbackRef`; raises for what may not be handed out.
    pub(crate) localize: Py<PyAny>,
    /// `remote_exception(connection, type_name, bases, message, traceback,
    /// exception_proxy)`: the exception to raise here for a remote one.
    pub(crate) remote_exception: Py<PyAny>,
    /// `write_output(companion, stream, data)`: remote output (1 stdout, 2 stderr).
    pub(crate) write_output: Py<PyAny>,
    /// Exception classes by name (`TimeLimitExceeded`, ...).
    pub(crate) errors: HashMap<String, Py<PyType>>,
    /// Type names of the sandbox's wrappers of local objects, and
    /// `unwrap(companion, proxy)`: the local object one wraps, handed back.
    pub(crate) wrapper_types: Vec<String>,
    pub(crate) unwrap: Py<PyAny>,
}

static HOOKS: PyOnceLock<Hooks> = PyOnceLock::new();

/// The hooks, once the package has installed them.
pub(crate) fn get(py: Python<'_>) -> PyResult<&'static Hooks> {
    HOOKS.get(py).ok_or_else(|| {
        PyRuntimeError::new_err("pushy._core is used before pushy installed its hooks")
    })
}

impl Hooks {
    /// The class of a proxy for a remote object of `type_name`.
    pub(crate) fn proxy_class<'py>(
        &self,
        py: Python<'py>,
        type_name: &str,
        callable: bool,
    ) -> &Bound<'py, PyType> {
        match self.by_type.get(type_name) {
            Some(class) => class.bind(py),
            None if callable => self.callable.bind(py),
            None => self.plain.bind(py),
        }
    }

    /// The exception class `name`, else `PushyError`.
    pub(crate) fn error_class<'py>(
        &self,
        py: Python<'py>,
        name: &str,
    ) -> PyResult<&Bound<'py, PyType>> {
        self.errors
            .get(name)
            .or_else(|| self.errors.get("PushyError"))
            .map(|class| class.bind(py))
            .ok_or_else(|| {
                PyRuntimeError::new_err(format!("pushy installed no exception class {name}"))
            })
    }
}

fn types_by_name(dict: &Bound<'_, PyDict>) -> PyResult<HashMap<String, Py<PyType>>> {
    dict.iter()
        .map(|(name, class)| Ok((name.extract()?, class.cast_into::<PyType>()?.unbind())))
        .collect()
}

/// Called once by `pushy/__init__.py`: the classes and functions above.
#[pyfunction]
#[allow(clippy::too_many_arguments)]
pub(crate) fn install(
    py: Python<'_>,
    proxy_class: Bound<'_, PyType>,
    callable_proxy_class: Bound<'_, PyType>,
    proxy_classes: Bound<'_, PyDict>,
    localize: Py<PyAny>,
    remote_exception: Py<PyAny>,
    write_output: Py<PyAny>,
    errors: Bound<'_, PyDict>,
    wrapper_types: Vec<String>,
    unwrap: Py<PyAny>,
) -> PyResult<()> {
    let hooks = Hooks {
        plain: proxy_class.unbind(),
        callable: callable_proxy_class.unbind(),
        by_type: types_by_name(&proxy_classes)?,
        localize,
        remote_exception,
        write_output,
        errors: types_by_name(&errors)?,
        wrapper_types,
        unwrap,
    };
    HOOKS
        .set(py, hooks)
        .map_err(|_| PyRuntimeError::new_err("pushy's hooks are installed already"))
}
