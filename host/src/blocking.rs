//! The blocking facade: the async client driven by a background runtime,
//! one `block_on` per method, no logic of its own.
//!
//! Usable from code without a runtime, and from inside local callbacks
//! (they run on blocking threads), which is how nested calls are made. Not
//! from async code running on a tokio runtime: blocking a runtime's thread
//! is refused by tokio with a panic; use the async API there.
//!
//! Values come back as [`Value`], as from the async API; an object in one
//! is the async handle, which [`RemoteObject::try_from`] turns into this
//! module's.

use std::future::Future;
use std::sync::OnceLock;

use serde::Serialize;
use tokio::runtime::Runtime;

use tokio::sync::mpsc::UnboundedReceiver;

use crate::client::{self, CallArgs, Callback, ConnectionConfig, Error, OutputChunk, Value};
use crate::protocol::{BinaryOp, CompareOp, Op, UnaryOp};
use crate::sandbox::{Sandbox, SessionConfig};
use crate::transport::ClientLink;

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

/// Blocking [`crate::default_sandbox`].
pub fn default_sandbox() -> Result<Sandbox, Error> {
    block(client::default_sandbox())
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

    /// See [`crate::Connection::embedded`].
    pub fn embedded(sandbox: &Sandbox) -> Result<Connection, Error> {
        block(client::Connection::embedded(sandbox)).map(Connection::from)
    }

    /// See [`crate::Connection::embedded_with`].
    pub fn embedded_with(
        sandbox: &Sandbox,
        session: SessionConfig,
        config: ConnectionConfig,
    ) -> Result<Connection, Error> {
        block(client::Connection::embedded_with(sandbox, session, config)).map(Connection::from)
    }

    /// See [`crate::Connection::over`] (its tasks run on the facade's runtime).
    pub fn over(link: ClientLink, config: ConnectionConfig) -> Connection {
        let _entered = runtime().enter();
        Connection::from(client::Connection::over(link, config))
    }

    /// See [`crate::Connection::request_op`].
    pub fn request_op(&self, op: Op) -> Result<Value, Error> {
        block(self.inner.request_op(op))
    }

    /// See [`crate::Connection::modules`].
    pub fn modules(&self) -> Modules {
        Modules {
            inner: self.inner.modules(),
        }
    }

    /// See [`crate::Connection::set_argv`].
    pub fn set_argv(&self, argv: &[String]) -> Result<(), Error> {
        block(self.inner.set_argv(argv))
    }

    /// See [`crate::Connection::run_script`].
    pub fn run_script(&self, source: impl AsRef<[u8]>, filename: &str) -> Result<i32, Error> {
        block(self.inner.run_script(source, filename))
    }

    /// See [`crate::Connection::live_callbacks`].
    pub fn live_callbacks(&self) -> usize {
        self.inner.live_callbacks()
    }

    /// See [`crate::Connection::take_output`]; read it with
    /// `blocking_recv`.
    pub fn take_output(&self) -> UnboundedReceiver<OutputChunk> {
        self.inner.take_output()
    }

    /// See [`crate::Connection::output_error`].
    pub fn output_error(&self) -> Option<std::io::ErrorKind> {
        self.inner.output_error()
    }

    /// See [`crate::Connection::interrupt`].
    pub fn interrupt(&self) {
        self.inner.interrupt()
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

    /// See [`crate::Connection::callback_by_id`].
    pub fn callback_by_id(&self, id: u64) -> Option<Callback> {
        self.inner.callback_by_id(id)
    }

    /// See [`crate::Connection::callback_raising`].
    pub fn callback_raising<F, T>(&self, f: F) -> Callback
    where
        F: Fn(CallArgs) -> Result<T, client::CallbackException> + Send + Sync + 'static,
        T: Serialize,
    {
        self.inner.callback_raising(f)
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

    /// See [`crate::RemoteObject::id`].
    pub fn id(&self) -> u64 {
        self.inner.id()
    }

    /// See [`crate::RemoteObject::type_name`].
    pub fn type_name(&self) -> &str {
        self.inner.type_name()
    }

    /// See [`crate::RemoteObject::opmask`].
    pub fn opmask(&self) -> u64 {
        self.inner.opmask()
    }

    /// See [`crate::RemoteObject::is_callable`].
    pub fn is_callable(&self) -> bool {
        self.inner.is_callable()
    }

    /// See [`crate::RemoteObject::connection`].
    pub fn connection(&self) -> Connection {
        Connection::from(self.inner.connection())
    }

    /// See [`crate::RemoteObject::getattr`].
    pub fn getattr(&self, name: &str) -> Result<Value, Error> {
        block(self.inner.getattr(name))
    }

    /// See [`crate::RemoteObject::setattr`].
    pub fn setattr<T: Serialize + ?Sized>(&self, name: &str, value: &T) -> Result<(), Error> {
        block(self.inner.setattr(name, value))
    }

    /// See [`crate::RemoteObject::delattr`].
    pub fn delattr(&self, name: &str) -> Result<(), Error> {
        block(self.inner.delattr(name))
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

    /// See [`crate::RemoteObject::call_method_kw`].
    pub fn call_method_kw<A: Serialize + ?Sized, K: Serialize + ?Sized>(
        &self,
        name: &str,
        args: &A,
        kwargs: &K,
    ) -> Result<Value, Error> {
        block(self.inner.call_method_kw(name, args, kwargs))
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

    /// See [`crate::RemoteObject::delitem`].
    pub fn delitem<K: Serialize + ?Sized>(&self, key: &K) -> Result<(), Error> {
        block(self.inner.delitem(key))
    }

    /// See [`crate::RemoteObject::len`].
    pub fn len(&self) -> Result<usize, Error> {
        block(self.inner.len())
    }

    /// See [`crate::RemoteObject::is_empty`].
    pub fn is_empty(&self) -> Result<bool, Error> {
        block(self.inner.is_empty())
    }

    /// See [`crate::RemoteObject::contains`].
    pub fn contains<K: Serialize + ?Sized>(&self, key: &K) -> Result<bool, Error> {
        block(self.inner.contains(key))
    }

    /// See [`crate::RemoteObject::iter_batched`].
    pub fn iter_batched(&self, batch: u32) -> Result<RemoteIter, Error> {
        block(self.inner.iter_batched(batch)).map(|inner| RemoteIter { inner })
    }

    /// See [`crate::RemoteObject::iter`].
    pub fn iter(&self) -> Result<RemoteIter, Error> {
        block(self.inner.iter()).map(|inner| RemoteIter { inner })
    }

    /// All items of an iterable, fetched in batches.
    pub fn collect(&self) -> Result<Vec<Value>, Error> {
        self.iter()?.collect()
    }

    /// See [`crate::RemoteObject::repr`].
    pub fn repr(&self) -> Result<String, Error> {
        block(self.inner.repr())
    }

    /// See [`crate::RemoteObject::str`].
    pub fn str(&self) -> Result<String, Error> {
        block(self.inner.str())
    }

    /// See [`crate::RemoteObject::truth`].
    pub fn truth(&self) -> Result<bool, Error> {
        block(self.inner.truth())
    }

    /// See [`crate::RemoteObject::hash`].
    pub fn hash(&self) -> Result<i64, Error> {
        block(self.inner.hash())
    }

    /// See [`crate::RemoteObject::binary`].
    pub fn binary<T: Serialize + ?Sized>(
        &self,
        op: BinaryOp,
        other: &T,
        reflected: bool,
    ) -> Result<Value, Error> {
        block(self.inner.binary(op, other, reflected))
    }

    /// See [`crate::RemoteObject::compare`].
    pub fn compare<T: Serialize + ?Sized>(&self, op: CompareOp, other: &T) -> Result<Value, Error> {
        block(self.inner.compare(op, other))
    }

    /// See [`crate::RemoteObject::unary`].
    pub fn unary(&self, op: UnaryOp) -> Result<Value, Error> {
        block(self.inner.unary(op))
    }

    /// See [`crate::RemoteObject::dir`].
    pub fn dir(&self) -> Result<Vec<String>, Error> {
        block(self.inner.dir())
    }

    /// See [`crate::RemoteObject::obtain`].
    pub fn obtain(&self) -> Result<Value, Error> {
        block(self.inner.obtain())
    }

    /// See [`crate::RemoteObject::obtain_limited`].
    pub fn obtain_limited(&self, max_items: u32) -> Result<Value, Error> {
        block(self.inner.obtain_limited(max_items))
    }
}

/// Blocking face of [`crate::Modules`].
#[derive(Clone, Debug)]
pub struct Modules {
    inner: client::Modules,
}

impl Modules {
    /// See [`crate::Modules::import`].
    pub fn import(&self, name: &str) -> Result<RemoteObject, Error> {
        block(self.inner.import(name)).map(RemoteObject::from)
    }
}

/// Blocking face of [`crate::RemoteIter`]: an [`Iterator`] of the items,
/// fetched in batches.
#[derive(Debug)]
pub struct RemoteIter {
    inner: client::RemoteIter,
}

impl Iterator for RemoteIter {
    type Item = Result<Value, Error>;

    fn next(&mut self) -> Option<Self::Item> {
        block(self.inner.next())
    }
}
