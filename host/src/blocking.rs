//! The blocking facade: the async client driven by a background runtime,
//! one `block_on` per method, no logic of its own.
//!
//! Usable from code without a runtime, and from inside local callbacks
//! (they run on blocking threads), which is how nested calls are made.

use std::future::Future;
use std::sync::OnceLock;

use serde::Serialize;
use tokio::runtime::Runtime;

use crate::client::{self, CallArgs, Callback, ConnectionConfig, Error, Value};

fn runtime() -> &'static Runtime {
    static RUNTIME: OnceLock<Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("pushy-blocking")
            .enable_all()
            .build()
            .expect("cannot start the tokio runtime of pushy::blocking")
    })
}

fn block<F: Future>(future: F) -> F::Output {
    runtime().block_on(future)
}

/// Blocking [`crate::connect`].
pub fn connect(target: &str) -> Result<Connection, Error> {
    connect_with(target, ConnectionConfig::default())
}

/// Blocking [`crate::connect_with`].
pub fn connect_with(target: &str, config: ConnectionConfig) -> Result<Connection, Error> {
    block(client::connect_with(target, config)).map(|inner| Connection { inner })
}

/// Blocking face of [`crate::Connection`].
#[derive(Clone, Debug)]
pub struct Connection {
    inner: client::Connection,
}

impl From<client::Connection> for Connection {
    fn from(inner: client::Connection) -> Self {
        Connection { inner }
    }
}

impl Connection {
    /// The async connection underneath.
    pub fn as_async(&self) -> &client::Connection {
        &self.inner
    }

    /// See [`crate::Connection::eval`].
    pub fn eval(&self, expression: &str) -> Result<Value, Error> {
        block(self.inner.eval(expression))
    }

    /// See [`crate::Connection::execute`].
    pub fn execute(&self, statements: &str) -> Result<(), Error> {
        block(self.inner.execute(statements))
    }

    /// See [`crate::Connection::define`].
    pub fn define(&self, source: &str) -> Result<RemoteObject, Error> {
        block(self.inner.define(source)).map(RemoteObject::from)
    }

    /// See [`crate::Connection::import`].
    pub fn import(&self, module: &str) -> Result<RemoteObject, Error> {
        block(self.inner.import(module)).map(RemoteObject::from)
    }

    /// See [`crate::Connection::ping`].
    pub fn ping(&self) -> Result<(), Error> {
        block(self.inner.ping())
    }

    /// See [`crate::Connection::table_size`].
    pub fn table_size(&self) -> Result<usize, Error> {
        block(self.inner.table_size())
    }

    /// See [`crate::Connection::callback`].
    pub fn callback<F, T, E>(&self, f: F) -> Callback
    where
        F: Fn(CallArgs) -> Result<T, E> + Send + Sync + 'static,
        T: Serialize,
        E: std::fmt::Display,
    {
        self.inner.callback(f)
    }

    /// See [`crate::Connection::flush_releases`].
    pub fn flush_releases(&self) {
        self.inner.flush_releases()
    }

    /// See [`crate::Connection::close`].
    pub fn close(self) -> Result<(), Error> {
        block(self.inner.close())
    }
}

/// Blocking face of [`crate::RemoteObject`].
#[derive(Clone, Debug)]
pub struct RemoteObject {
    inner: client::RemoteObject,
}

impl From<client::RemoteObject> for RemoteObject {
    fn from(inner: client::RemoteObject) -> Self {
        RemoteObject { inner }
    }
}

impl TryFrom<Value> for RemoteObject {
    type Error = Error;
    fn try_from(value: Value) -> Result<Self, Error> {
        value.into_object().map(RemoteObject::from)
    }
}

impl Serialize for RemoteObject {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.inner.serialize(s)
    }
}

impl RemoteObject {
    /// The async handle underneath.
    pub fn as_async(&self) -> &client::RemoteObject {
        &self.inner
    }

    /// Qualified type name.
    pub fn type_name(&self) -> &str {
        self.inner.type_name()
    }

    /// See [`crate::RemoteObject::getattr`].
    pub fn getattr(&self, name: &str) -> Result<Value, Error> {
        block(self.inner.getattr(name))
    }

    /// See [`crate::RemoteObject::setattr`].
    pub fn setattr<T: Serialize + ?Sized>(&self, name: &str, value: &T) -> Result<(), Error> {
        block(self.inner.setattr(name, value))
    }

    /// See [`crate::RemoteObject::call`].
    pub fn call<A: Serialize + ?Sized>(&self, args: &A) -> Result<Value, Error> {
        block(self.inner.call(args))
    }

    /// See [`crate::RemoteObject::call_kw`].
    pub fn call_kw<A: Serialize + ?Sized, K: Serialize + ?Sized>(
        &self,
        args: &A,
        kwargs: &K,
    ) -> Result<Value, Error> {
        block(self.inner.call_kw(args, kwargs))
    }

    /// See [`crate::RemoteObject::call_method`].
    pub fn call_method<A: Serialize + ?Sized>(&self, name: &str, args: &A) -> Result<Value, Error> {
        block(self.inner.call_method(name, args))
    }

    /// See [`crate::RemoteObject::getitem`].
    pub fn getitem<K: Serialize + ?Sized>(&self, key: &K) -> Result<Value, Error> {
        block(self.inner.getitem(key))
    }

    /// See [`crate::RemoteObject::setitem`].
    pub fn setitem<K: Serialize + ?Sized, V: Serialize + ?Sized>(
        &self,
        key: &K,
        value: &V,
    ) -> Result<(), Error> {
        block(self.inner.setitem(key, value))
    }

    /// See [`crate::RemoteObject::len`].
    pub fn len(&self) -> Result<usize, Error> {
        block(self.inner.len())
    }

    /// Whether `len(obj) == 0`.
    pub fn is_empty(&self) -> Result<bool, Error> {
        Ok(self.len()? == 0)
    }

    /// See [`crate::RemoteObject::repr`].
    pub fn repr(&self) -> Result<String, Error> {
        block(self.inner.repr())
    }

    /// All items of an iterable, fetched in batches.
    pub fn collect(&self) -> Result<Vec<Value>, Error> {
        block(async { self.inner.iter().await?.collect_all().await })
    }

    /// See [`crate::RemoteObject::obtain`].
    pub fn obtain(&self) -> Result<Value, Error> {
        block(self.inner.obtain())
    }
}
