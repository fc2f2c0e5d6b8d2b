//! Proxies: `ProxyBase`, the handle the package's proxy classes are built
//! on, and the operations on one (module functions, so that a dunder method
//! of the package costs one call and no attribute lookup).

use std::future::Future;
use std::sync::{Arc, OnceLock};

use pushy::protocol::{BinaryOp, CompareOp, Op, UnaryOp};
use pushy::{RemoteObject, Value};
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyTuple, PyWeakrefReference};

use crate::convert;
use crate::hooks;
use crate::session::{Connection, State};
use crate::waiting;

/// What a bound proxy holds.
pub(crate) struct Handle {
    pub(crate) state: Arc<State>,
    pub(crate) object: RemoteObject,
    serial: u64,
}

/// A handle to a remote object: the base of the package's proxy classes.
/// Made by this module only (a proxy made by calling the class is unbound
/// and every operation on it fails).
#[pyclass(frozen, weakref, subclass, module = "pushy._core")]
pub(crate) struct ProxyBase {
    bound: OnceLock<Handle>,
}

#[pymethods]
impl ProxyBase {
    #[new]
    fn new() -> Self {
        ProxyBase {
            bound: OnceLock::new(),
        }
    }
}

impl Drop for ProxyBase {
    fn drop(&mut self) {
        if let Some(Handle {
            state,
            object,
            serial,
        }) = self.bound.take()
        {
            state.proxy_dropped(object.id(), serial, object);
        }
    }
}

pub(crate) fn handle_of(proxy: &ProxyBase) -> PyResult<&Handle> {
    proxy
        .bound
        .get()
        .ok_or_else(|| PyTypeError::new_err("an unbound proxy (proxies come from a connection)"))
}

pub(crate) fn handle<'a>(proxy: &'a Bound<'_, PyAny>) -> PyResult<&'a Handle> {
    let base = proxy
        .cast::<ProxyBase>()
        .map_err(|_| PyTypeError::new_err("not a pushy proxy"))?;
    handle_of(base.get())
}

/// The proxy of `object`: the live one of its handle, or a new one.
pub(crate) fn proxy_for(
    py: Python<'_>,
    state: &Arc<State>,
    object: RemoteObject,
) -> PyResult<Py<PyAny>> {
    let id = object.id();
    if let Some(live) = state.live_proxy(py, id) {
        return Ok(live.unbind());
    }
    let class = hooks::get(py)?.proxy_class(py, object.type_name(), object.is_callable());
    let proxy = class.call0()?;
    let weak = PyWeakrefReference::new(&proxy)?.unbind();
    let serial = state.remember_proxy(id, weak);
    let base = proxy.cast::<ProxyBase>()?;
    let _ = base.get().bound.set(Handle {
        state: state.clone(),
        object,
        serial,
    });
    Ok(proxy.unbind())
}

/// Runs `request(object)` for `proxy` and converts its value.
fn request<F, Fut>(py: Python<'_>, proxy: &Bound<'_, PyAny>, request: F) -> PyResult<Py<PyAny>>
where
    F: FnOnce(RemoteObject) -> Fut,
    Fut: Future<Output = Result<Value, pushy::Error>> + Send + 'static,
{
    let handle = handle(proxy)?;
    let state = handle.state.clone();
    let value = waiting::wait(py, &state, request(handle.object.clone()))?;
    convert::to_py(py, &state, value)
}

/// Sends a protocol operation on `proxy`'s object (held until it is answered).
fn request_op(
    py: Python<'_>,
    proxy: &Bound<'_, PyAny>,
    op: impl FnOnce(u64) -> Op,
) -> PyResult<Py<PyAny>> {
    request(py, proxy, |object| {
        let op = op(object.id());
        async move {
            let value = object.connection().request_op(op).await;
            drop(object);
            value
        }
    })
}

pub(crate) fn state_of(proxy: &Bound<'_, PyAny>) -> PyResult<Arc<State>> {
    Ok(handle(proxy)?.state.clone())
}

/// `getattr(proxy, name)`
#[pyfunction]
fn attr_get(py: Python<'_>, proxy: &Bound<'_, PyAny>, name: String) -> PyResult<Py<PyAny>> {
    request(
        py,
        proxy,
        |object| async move { object.getattr(&name).await },
    )
}

/// `setattr(proxy, name, value)`
#[pyfunction]
fn attr_set(
    py: Python<'_>,
    proxy: &Bound<'_, PyAny>,
    name: String,
    value: &Bound<'_, PyAny>,
) -> PyResult<()> {
    let value = convert::to_arg(py, &state_of(proxy)?, value)?;
    request(py, proxy, |object| async move {
        object.setattr(&name, &value).await.map(|()| Value::None)
    })
    .map(drop)
}

/// `delattr(proxy, name)`
#[pyfunction]
fn attr_del(py: Python<'_>, proxy: &Bound<'_, PyAny>, name: String) -> PyResult<()> {
    request(py, proxy, |object| async move {
        object.delattr(&name).await.map(|()| Value::None)
    })
    .map(drop)
}

/// `proxy(*args, **kwargs)`
#[pyfunction]
#[pyo3(signature = (proxy, args, kwargs=None))]
fn call(
    py: Python<'_>,
    proxy: &Bound<'_, PyAny>,
    args: &Bound<'_, PyTuple>,
    kwargs: Option<&Bound<'_, PyDict>>,
) -> PyResult<Py<PyAny>> {
    let state = state_of(proxy)?;
    let args = convert::to_args(py, &state, args)?;
    let kwargs = convert::to_kwargs(py, &state, kwargs)?;
    request(py, proxy, |object| async move {
        object.call_kw(&args, &kwargs).await
    })
}

/// `proxy.name(*args, **kwargs)` in one round trip.
#[pyfunction]
#[pyo3(signature = (proxy, name, args, kwargs=None))]
fn call_method(
    py: Python<'_>,
    proxy: &Bound<'_, PyAny>,
    name: String,
    args: &Bound<'_, PyTuple>,
    kwargs: Option<&Bound<'_, PyDict>>,
) -> PyResult<Py<PyAny>> {
    let state = state_of(proxy)?;
    let args = convert::to_args(py, &state, args)?;
    let kwargs = convert::to_kwargs(py, &state, kwargs)?;
    request(py, proxy, |object| async move {
        object.call_method_kw(&name, &args, &kwargs).await
    })
}

/// `module.function(*args, **kwargs)` in the sandbox of `anchor` (a proxy
/// or a connection), the module imported once per connection.
#[pyfunction]
#[pyo3(signature = (anchor, module, function, args, kwargs=None))]
fn module_call(
    py: Python<'_>,
    anchor: &Bound<'_, PyAny>,
    module: String,
    function: String,
    args: &Bound<'_, PyTuple>,
    kwargs: Option<&Bound<'_, PyDict>>,
) -> PyResult<Py<PyAny>> {
    let state = match anchor.cast::<Connection>() {
        Ok(connection) => connection.get().state.clone(),
        Err(_) => state_of(anchor)?,
    };
    let args = convert::to_args(py, &state, args)?;
    let kwargs = convert::to_kwargs(py, &state, kwargs)?;
    let modules = state.con.modules();
    let value = waiting::wait(py, &state, async move {
        let module = modules.import(&module).await?;
        module.call_method_kw(&function, &args, &kwargs).await
    })?;
    convert::to_py(py, &state, value)
}

/// `proxy[key]`
#[pyfunction]
fn item_get(
    py: Python<'_>,
    proxy: &Bound<'_, PyAny>,
    key: &Bound<'_, PyAny>,
) -> PyResult<Py<PyAny>> {
    let key = convert::to_arg(py, &state_of(proxy)?, key)?;
    request(
        py,
        proxy,
        |object| async move { object.getitem(&key).await },
    )
}

/// `proxy[key] = value`
#[pyfunction]
fn item_set(
    py: Python<'_>,
    proxy: &Bound<'_, PyAny>,
    key: &Bound<'_, PyAny>,
    value: &Bound<'_, PyAny>,
) -> PyResult<()> {
    let state = state_of(proxy)?;
    let key = convert::to_arg(py, &state, key)?;
    let value = convert::to_arg(py, &state, value)?;
    request(py, proxy, |object| async move {
        object.setitem(&key, &value).await.map(|()| Value::None)
    })
    .map(drop)
}

/// `del proxy[key]`
#[pyfunction]
fn item_del(py: Python<'_>, proxy: &Bound<'_, PyAny>, key: &Bound<'_, PyAny>) -> PyResult<()> {
    let key = convert::to_arg(py, &state_of(proxy)?, key)?;
    request(py, proxy, |object| async move {
        object.delitem(&key).await.map(|()| Value::None)
    })
    .map(drop)
}

/// `len(proxy)`
#[pyfunction]
fn length(py: Python<'_>, proxy: &Bound<'_, PyAny>) -> PyResult<Py<PyAny>> {
    request_op(py, proxy, Op::Len)
}

/// `item in proxy`
#[pyfunction]
fn contains(py: Python<'_>, proxy: &Bound<'_, PyAny>, item: &Bound<'_, PyAny>) -> PyResult<bool> {
    let item = convert::to_arg(py, &state_of(proxy)?, item)?;
    request(py, proxy, |object| async move {
        object.contains(&item).await.map(Value::Bool)
    })?
    .extract(py)
}

/// `repr(proxy)`
#[pyfunction]
fn repr_of(py: Python<'_>, proxy: &Bound<'_, PyAny>) -> PyResult<Py<PyAny>> {
    request_op(py, proxy, Op::Repr)
}

/// `str(proxy)`
#[pyfunction]
fn str_of(py: Python<'_>, proxy: &Bound<'_, PyAny>) -> PyResult<Py<PyAny>> {
    request_op(py, proxy, Op::Str)
}

/// `bool(proxy)`
#[pyfunction]
fn truth(py: Python<'_>, proxy: &Bound<'_, PyAny>) -> PyResult<Py<PyAny>> {
    request_op(py, proxy, Op::Truth)
}

/// `hash(proxy)`
#[pyfunction]
fn hash_of(py: Python<'_>, proxy: &Bound<'_, PyAny>) -> PyResult<Py<PyAny>> {
    request_op(py, proxy, Op::Hash)
}

/// `dir(proxy)`, as a tuple of names.
#[pyfunction]
fn dir_of(py: Python<'_>, proxy: &Bound<'_, PyAny>) -> PyResult<Py<PyAny>> {
    request_op(py, proxy, Op::Dir)
}

/// A deep copy by value (lists, dicts, sets, tuples; other objects inside
/// stay proxies).
#[pyfunction]
fn obtain(py: Python<'_>, proxy: &Bound<'_, PyAny>) -> PyResult<Py<PyAny>> {
    request(py, proxy, |object| async move { object.obtain().await })
}

fn binary_op(name: &str) -> PyResult<BinaryOp> {
    Ok(match name {
        "add" => BinaryOp::Add,
        "sub" => BinaryOp::Sub,
        "mul" => BinaryOp::Mul,
        "truediv" => BinaryOp::TrueDiv,
        "floordiv" => BinaryOp::FloorDiv,
        "mod" => BinaryOp::Mod,
        "pow" => BinaryOp::Pow,
        "lshift" => BinaryOp::LShift,
        "rshift" => BinaryOp::RShift,
        "and" => BinaryOp::BitAnd,
        "or" => BinaryOp::BitOr,
        "xor" => BinaryOp::BitXor,
        "matmul" => BinaryOp::MatMul,
        other => {
            return Err(PyValueError::new_err(format!(
                "no binary operator {other:?}"
            )));
        }
    })
}

/// `proxy <op> other`, or `other <op> proxy` when `reflected`.
#[pyfunction]
fn binary(
    py: Python<'_>,
    proxy: &Bound<'_, PyAny>,
    op: &str,
    other: &Bound<'_, PyAny>,
    reflected: bool,
) -> PyResult<Py<PyAny>> {
    let op = binary_op(op)?;
    let other = convert::to_arg(py, &state_of(proxy)?, other)?;
    request(py, proxy, |object| async move {
        object.binary(op, &other, reflected).await
    })
}

/// `proxy <op> other` for `lt le eq ne gt ge`.
#[pyfunction]
fn compare(
    py: Python<'_>,
    proxy: &Bound<'_, PyAny>,
    op: &str,
    other: &Bound<'_, PyAny>,
) -> PyResult<Py<PyAny>> {
    let op = match op {
        "lt" => CompareOp::Lt,
        "le" => CompareOp::Le,
        "eq" => CompareOp::Eq,
        "ne" => CompareOp::Ne,
        "gt" => CompareOp::Gt,
        "ge" => CompareOp::Ge,
        other => return Err(PyValueError::new_err(format!("no comparison {other:?}"))),
    };
    let other = convert::to_arg(py, &state_of(proxy)?, other)?;
    request(py, proxy, |object| async move {
        object.compare(op, &other).await
    })
}

/// `<op> proxy` for `neg pos invert abs`.
#[pyfunction]
fn unary(py: Python<'_>, proxy: &Bound<'_, PyAny>, op: &str) -> PyResult<Py<PyAny>> {
    let op = match op {
        "neg" => UnaryOp::Neg,
        "pos" => UnaryOp::Pos,
        "invert" => UnaryOp::Invert,
        "abs" => UnaryOp::Abs,
        other => {
            return Err(PyValueError::new_err(format!(
                "no unary operator {other:?}"
            )));
        }
    };
    request(py, proxy, |object| async move { object.unary(op).await })
}

/// `(id, type name, opmask)` of the handle, known without a round trip.
#[pyfunction]
fn info(proxy: &Bound<'_, PyAny>) -> PyResult<(u64, String, u64)> {
    let handle = handle(proxy)?;
    Ok((
        handle.object.id(),
        handle.object.type_name().to_owned(),
        handle.object.opmask(),
    ))
}

/// The qualified type name of the remote object.
#[pyfunction]
fn type_name(proxy: &Bound<'_, PyAny>) -> PyResult<String> {
    Ok(handle(proxy)?.object.type_name().to_owned())
}

/// The opmask of the remote object's type.
#[pyfunction]
fn opmask(proxy: &Bound<'_, PyAny>) -> PyResult<u64> {
    Ok(handle(proxy)?.object.opmask())
}

/// The connection the proxy's object lives on.
#[pyfunction]
fn connection_of(py: Python<'_>, proxy: &Bound<'_, PyAny>) -> PyResult<Py<Connection>> {
    Py::new(
        py,
        Connection {
            state: state_of(proxy)?,
        },
    )
}

/// The package's per-connection state of the proxy's connection.
#[pyfunction]
fn companion_of(py: Python<'_>, proxy: &Bound<'_, PyAny>) -> PyResult<Py<PyAny>> {
    Ok(handle(proxy)?.state.companion.clone_ref(py))
}

pub(crate) fn add_functions(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(attr_get, m)?)?;
    m.add_function(wrap_pyfunction!(attr_set, m)?)?;
    m.add_function(wrap_pyfunction!(attr_del, m)?)?;
    m.add_function(wrap_pyfunction!(call, m)?)?;
    m.add_function(wrap_pyfunction!(call_method, m)?)?;
    m.add_function(wrap_pyfunction!(module_call, m)?)?;
    m.add_function(wrap_pyfunction!(item_get, m)?)?;
    m.add_function(wrap_pyfunction!(item_set, m)?)?;
    m.add_function(wrap_pyfunction!(item_del, m)?)?;
    m.add_function(wrap_pyfunction!(length, m)?)?;
    m.add_function(wrap_pyfunction!(contains, m)?)?;
    m.add_function(wrap_pyfunction!(repr_of, m)?)?;
    m.add_function(wrap_pyfunction!(str_of, m)?)?;
    m.add_function(wrap_pyfunction!(truth, m)?)?;
    m.add_function(wrap_pyfunction!(hash_of, m)?)?;
    m.add_function(wrap_pyfunction!(dir_of, m)?)?;
    m.add_function(wrap_pyfunction!(obtain, m)?)?;
    m.add_function(wrap_pyfunction!(binary, m)?)?;
    m.add_function(wrap_pyfunction!(compare, m)?)?;
    m.add_function(wrap_pyfunction!(unary, m)?)?;
    m.add_function(wrap_pyfunction!(info, m)?)?;
    m.add_function(wrap_pyfunction!(type_name, m)?)?;
    m.add_function(wrap_pyfunction!(opmask, m)?)?;
    m.add_function(wrap_pyfunction!(connection_of, m)?)?;
    m.add_function(wrap_pyfunction!(companion_of, m)?)?;
    Ok(())
}
