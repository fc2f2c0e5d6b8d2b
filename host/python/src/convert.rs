//! Python objects into what the client sends, and values back into Python.
//!
//! Outgoing, plain data (None, bool, int, float, str, bytes and tuples of
//! them) goes by value, a proxy as its handle; anything else is asked of the
//! package's `localize`, which answers with a proxy (the sandbox's wrapper of
//! a local object) or a `CallbackRef` (a local function), or refuses. The
//! result implements `Serialize` as the client's encoder expects, so it does
//! the counting of handles and callbacks.
//!
//! Incoming, a [`Value`] becomes Python objects, a remote object the one
//! proxy of its handle.

use std::sync::Arc;

use pushy::Value;
use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;
use pyo3::types::{
    PyBool, PyBytes, PyDict, PyFloat, PyFrozenSet, PyInt, PyList, PySet, PyString, PyTuple,
};
use serde::ser::{Serialize, SerializeMap, SerializeTuple, Serializer};

use crate::hooks;
use crate::proxy::{self, ProxyBase};
use crate::session::{CallbackRef, Connection, State};

/// Deepest nesting of tuples sent (the protocol's limit).
const MAX_DEPTH: usize = pushy::protocol::MAX_DEPTH;

/// One argument, ready for the client's encoder.
pub(crate) enum Arg {
    /// Plain data, or a handle of this connection.
    Value(Value),
    Tuple(Vec<Arg>),
    /// A local callable.
    Callback(Arc<pushy::Callback>),
}

impl Serialize for Arg {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Arg::Value(value) => value.serialize(s),
            Arg::Tuple(items) => Args::serialize_items(items, s),
            Arg::Callback(callback) => callback.serialize(s),
        }
    }
}

/// Positional arguments: a tuple.
pub(crate) struct Args(pub(crate) Vec<Arg>);

impl Args {
    fn serialize_items<S: Serializer>(items: &[Arg], s: S) -> Result<S::Ok, S::Error> {
        let mut tuple = s.serialize_tuple(items.len())?;
        for item in items {
            tuple.serialize_element(item)?;
        }
        tuple.end()
    }
}

impl Serialize for Args {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        Args::serialize_items(&self.0, s)
    }
}

/// Keyword arguments: a map of names.
pub(crate) struct Kwargs(pub(crate) Vec<(String, Arg)>);

impl Serialize for Kwargs {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(self.0.len()))?;
        for (name, value) in &self.0 {
            map.serialize_entry(name, value)?;
        }
        map.end()
    }
}

/// `obj` as an argument for a call on `state`'s connection.
pub(crate) fn to_arg(py: Python<'_>, state: &Arc<State>, obj: &Bound<'_, PyAny>) -> PyResult<Arg> {
    to_arg_at(py, state, obj, 0)
}

/// Positional arguments from a tuple.
pub(crate) fn to_args(
    py: Python<'_>,
    state: &Arc<State>,
    args: &Bound<'_, PyTuple>,
) -> PyResult<Args> {
    args.iter()
        .map(|item| to_arg_at(py, state, &item, 1))
        .collect::<PyResult<Vec<_>>>()
        .map(Args)
}

/// Keyword arguments from a dict (its keys must be strings).
pub(crate) fn to_kwargs(
    py: Python<'_>,
    state: &Arc<State>,
    kwargs: Option<&Bound<'_, PyDict>>,
) -> PyResult<Kwargs> {
    let Some(kwargs) = kwargs else {
        return Ok(Kwargs(Vec::new()));
    };
    kwargs
        .iter()
        .map(|(name, value)| Ok((name.extract::<String>()?, to_arg_at(py, state, &value, 1)?)))
        .collect::<PyResult<Vec<_>>>()
        .map(Kwargs)
}

fn to_arg_at(
    py: Python<'_>,
    state: &Arc<State>,
    obj: &Bound<'_, PyAny>,
    depth: usize,
) -> PyResult<Arg> {
    if depth > MAX_DEPTH {
        return Err(crate::errors::to_py(
            py,
            Some(state),
            pushy::Error::BadArgument(format!(
                "a value nested deeper than {MAX_DEPTH} levels cannot be sent"
            )),
        ));
    }
    if obj.is_none() {
        return Ok(Arg::Value(Value::None));
    }
    if let Ok(flag) = obj.cast_exact::<PyBool>() {
        return Ok(Arg::Value(Value::Bool(flag.is_true())));
    }
    if let Ok(int) = obj.cast::<PyInt>() {
        return Ok(Arg::Value(match int.extract::<i64>() {
            Ok(small) => Value::Int(small),
            Err(_) => Value::BigInt(big_int_text(py, int)?),
        }));
    }
    if let Ok(float) = obj.cast::<PyFloat>() {
        return Ok(Arg::Value(Value::Float(float.value())));
    }
    if let Ok(text) = obj.cast::<PyString>() {
        return Ok(Arg::Value(Value::Str(text.to_cow()?.into_owned())));
    }
    if let Ok(data) = obj.cast::<PyBytes>() {
        return Ok(Arg::Value(Value::Bytes(bytes::Bytes::copy_from_slice(
            data.as_bytes(),
        ))));
    }
    if let Ok(items) = obj.cast::<PyTuple>() {
        return items
            .iter()
            .map(|item| to_arg_at(py, state, &item, depth + 1))
            .collect::<PyResult<Vec<_>>>()
            .map(Arg::Tuple);
    }
    if let Some(arg) = reference(obj)? {
        return Ok(arg);
    }
    let hooks = hooks::get(py)?;
    let core = Bound::new(
        py,
        Connection {
            state: state.clone(),
        },
    )?;
    let localized = hooks
        .localize
        .bind(py)
        .call1((core, state.companion.bind(py), obj))?;
    reference(&localized)?.ok_or_else(|| {
        PyTypeError::new_err(format!(
            "cannot send a {} to the sandbox",
            obj.get_type()
                .name()
                .map(|n| n.to_string())
                .unwrap_or_default()
        ))
    })
}

/// A proxy's handle or a registered callback, as an argument.
fn reference(obj: &Bound<'_, PyAny>) -> PyResult<Option<Arg>> {
    if let Ok(proxy) = obj.cast::<ProxyBase>() {
        let handle = proxy::handle_of(proxy.get())?;
        return Ok(Some(Arg::Value(Value::Object(handle.object.clone()))));
    }
    if let Ok(callback) = obj.cast::<CallbackRef>() {
        return Ok(Some(Arg::Callback(callback.get().callback.clone())));
    }
    Ok(None)
}

/// A value from the sandbox as a Python object.
pub(crate) fn to_py(py: Python<'_>, state: &Arc<State>, value: Value) -> PyResult<Py<PyAny>> {
    Ok(match value {
        Value::None => py.None(),
        Value::Bool(flag) => PyBool::new(py, flag).to_owned().into_any().unbind(),
        Value::Int(int) => int.into_pyobject(py)?.into_any().unbind(),
        Value::BigInt(text) => {
            let base = if text.trim_start_matches('-').starts_with("0x") {
                16
            } else {
                10
            };
            py.get_type::<PyInt>().call1((text, base))?.unbind()
        }
        Value::Float(float) => PyFloat::new(py, float).into_any().unbind(),
        Value::Str(text) => PyString::new(py, &text).into_any().unbind(),
        Value::Bytes(data) => PyBytes::new(py, &data).into_any().unbind(),
        Value::Tuple(items) => PyTuple::new(py, all(py, state, items)?)?
            .into_any()
            .unbind(),
        Value::List(items) => PyList::new(py, all(py, state, items)?)?.into_any().unbind(),
        Value::Set(items) => PySet::new(py, all(py, state, items)?)?.into_any().unbind(),
        Value::FrozenSet(items) => PyFrozenSet::new(py, all(py, state, items)?)?
            .into_any()
            .unbind(),
        Value::Dict(pairs) => {
            let dict = PyDict::new(py);
            for (key, value) in pairs {
                dict.set_item(to_py(py, state, key)?, to_py(py, state, value)?)?;
            }
            dict.into_any().unbind()
        }
        Value::Object(object) => {
            let hooks = hooks::get(py)?;
            if hooks
                .wrapper_types
                .iter()
                .any(|name| name == object.type_name())
            {
                // A local object the sandbox hands back: itself.
                let proxy = proxy::proxy_for(py, state, object)?;
                return hooks.unwrap.call1(py, (state.companion.bind(py), proxy));
            }
            proxy::proxy_for(py, state, object)?
        }
    })
}

fn all(py: Python<'_>, state: &Arc<State>, items: Vec<Value>) -> PyResult<Vec<Py<PyAny>>> {
    items
        .into_iter()
        .map(|item| to_py(py, state, item))
        .collect()
}

/// A big int's wire text ([`pushy::protocol::Node::BigInt`]): decimal up to
/// [`pushy::protocol::DECIMAL_INT_BITS`] bits, hexadecimal past them. Of
/// the plain int: a subclass's `str` may be a name.
fn big_int_text(py: Python<'_>, int: &Bound<'_, PyInt>) -> PyResult<String> {
    let plain = py.get_type::<PyInt>().call1((int,))?;
    let bits: u64 = plain.call_method0("bit_length")?.extract()?;
    if bits <= pushy::protocol::DECIMAL_INT_BITS {
        return Ok(plain.str()?.to_string());
    }
    let builtins = py.import("builtins")?;
    builtins.getattr("hex")?.call1((plain,))?.extract()
}
