//! Handles to objects in the sandbox.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use serde::Serialize;

use super::connection::Connection;
use super::encode::{OBJECT_TOKEN, encode, encode_args};
use super::iter::RemoteIter;
use super::shared::Shared;
use super::{Error, Value};
use crate::protocol::{BinaryOp, CompareOp, Op, UnaryOp, WireValue, opmask};

/// Default cap on the nodes `obtain` copies.
pub const DEFAULT_OBTAIN_LIMIT: u32 = 10_000_000;

pub(crate) struct HandleInner {
    pub(crate) id: u64,
    pub(crate) type_name: String,
    pub(crate) opmask: u64,
    /// How many sends of this id the guest counted for us; all are released
    /// together when the last `RemoteObject` for it is dropped.
    pub(crate) received: AtomicU32,
    pub(crate) shared: Arc<Shared>,
}

impl Drop for HandleInner {
    fn drop(&mut self) {
        // Never blocks on I/O: only queues the release.
        self.shared.forget_handle(
            self.id,
            self as *const HandleInner,
            self.received.load(Ordering::Relaxed),
        );
    }
}

/// A handle to a Python object in the sandbox (a proxy, in Pushy's terms).
///
/// Cloning is cheap. When the last clone is dropped the object is released
/// in the sandbox (batched; see [`crate::ConnectionConfig::gc_interval`]).
#[derive(Clone)]
pub struct RemoteObject {
    pub(crate) inner: Arc<HandleInner>,
}

impl std::fmt::Debug for RemoteObject {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "<remote {} #{}>", self.inner.type_name, self.inner.id)
    }
}

impl Serialize for RemoteObject {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_newtype_struct(OBJECT_TOKEN, &(self.inner.shared.uid, self.inner.id))
    }
}

impl RemoteObject {
    /// The handle id in the sandbox's object table.
    pub fn id(&self) -> u64 {
        self.inner.id
    }

    /// Qualified type name, e.g. `builtins.list`.
    pub fn type_name(&self) -> &str {
        &self.inner.type_name
    }

    /// Bit set of supported dunders (see [`crate::protocol::opmask`]).
    pub fn opmask(&self) -> u64 {
        self.inner.opmask
    }

    /// Whether the object is callable (known without a round trip).
    pub fn is_callable(&self) -> bool {
        self.inner.opmask & opmask::CALL != 0
    }

    /// The connection this object lives on.
    pub fn connection(&self) -> Connection {
        Connection {
            shared: self.inner.shared.clone(),
        }
    }

    fn con(&self) -> Connection {
        self.connection()
    }

    fn value<T: Serialize + ?Sized>(&self, value: &T) -> Result<WireValue, Error> {
        self.inner.shared.encode_value(value, encode)
    }

    /// `getattr(obj, name)`
    pub async fn getattr(&self, name: &str) -> Result<Value, Error> {
        self.con()
            .call_op(Op::GetAttr {
                target: self.id(),
                name: name.to_owned(),
            })
            .await
    }

    /// `setattr(obj, name, value)`
    pub async fn setattr<T: Serialize + ?Sized>(&self, name: &str, value: &T) -> Result<(), Error> {
        let value = self.value(value)?;
        self.con()
            .call_op(Op::SetAttr {
                target: self.id(),
                name: name.to_owned(),
                value,
            })
            .await
            .map(drop)
    }

    /// `delattr(obj, name)`
    pub async fn delattr(&self, name: &str) -> Result<(), Error> {
        self.con()
            .call_op(Op::DelAttr {
                target: self.id(),
                name: name.to_owned(),
            })
            .await
            .map(drop)
    }

    /// `obj(*args)`: a tuple is the positional arguments, `()` none, any
    /// other value the single argument.
    pub async fn call<A: Serialize + ?Sized>(&self, args: &A) -> Result<Value, Error> {
        self.call_kw(args, &()).await
    }

    /// `obj(*args, **kwargs)`; `kwargs` is a map or a struct.
    pub async fn call_kw<A: Serialize + ?Sized, K: Serialize + ?Sized>(
        &self,
        args: &A,
        kwargs: &K,
    ) -> Result<Value, Error> {
        let shared = &self.inner.shared;
        let args = shared.encode_value(args, encode_args)?;
        let kwargs = shared.encode_kwargs(kwargs)?;
        self.con()
            .call_op(Op::Call {
                target: self.id(),
                args,
                kwargs,
            })
            .await
    }

    /// `obj.name(*args)` in one round trip.
    pub async fn call_method<A: Serialize + ?Sized>(
        &self,
        name: &str,
        args: &A,
    ) -> Result<Value, Error> {
        self.call_method_kw(name, args, &()).await
    }

    /// `obj.name(*args, **kwargs)` in one round trip.
    pub async fn call_method_kw<A: Serialize + ?Sized, K: Serialize + ?Sized>(
        &self,
        name: &str,
        args: &A,
        kwargs: &K,
    ) -> Result<Value, Error> {
        let shared = &self.inner.shared;
        let args = shared.encode_value(args, encode_args)?;
        let kwargs = shared.encode_kwargs(kwargs)?;
        self.con()
            .call_op(Op::CallMethod {
                target: self.id(),
                name: name.to_owned(),
                args,
                kwargs,
            })
            .await
    }

    /// `obj[key]`
    pub async fn getitem<K: Serialize + ?Sized>(&self, key: &K) -> Result<Value, Error> {
        let key = self.value(key)?;
        self.con()
            .call_op(Op::GetItem {
                target: self.id(),
                key,
            })
            .await
    }

    /// `obj[key] = value`
    pub async fn setitem<K: Serialize + ?Sized, V: Serialize + ?Sized>(
        &self,
        key: &K,
        value: &V,
    ) -> Result<(), Error> {
        let key = self.value(key)?;
        let value = self.value(value)?;
        self.con()
            .call_op(Op::SetItem {
                target: self.id(),
                key,
                value,
            })
            .await
            .map(drop)
    }

    /// `del obj[key]`
    pub async fn delitem<K: Serialize + ?Sized>(&self, key: &K) -> Result<(), Error> {
        let key = self.value(key)?;
        self.con()
            .call_op(Op::DelItem {
                target: self.id(),
                key,
            })
            .await
            .map(drop)
    }

    /// `len(obj)`
    pub async fn len(&self) -> Result<usize, Error> {
        self.con().call_op(Op::Len(self.id())).await?.extract()
    }

    /// Whether `len(obj) == 0`.
    pub async fn is_empty(&self) -> Result<bool, Error> {
        Ok(self.len().await? == 0)
    }

    /// `key in obj`
    pub async fn contains<K: Serialize + ?Sized>(&self, key: &K) -> Result<bool, Error> {
        let key = self.value(key)?;
        self.con()
            .call_op(Op::Contains {
                target: self.id(),
                key,
            })
            .await?
            .extract()
    }

    /// Iterates in batches of `batch` items per round trip.
    pub async fn iter_batched(&self, batch: u32) -> Result<RemoteIter, Error> {
        RemoteIter::start(self, batch).await
    }

    /// Iterates, 256 items per round trip.
    pub async fn iter(&self) -> Result<RemoteIter, Error> {
        self.iter_batched(256).await
    }

    /// `repr(obj)`
    pub async fn repr(&self) -> Result<String, Error> {
        self.con().call_op(Op::Repr(self.id())).await?.extract()
    }

    /// `str(obj)`
    pub async fn str(&self) -> Result<String, Error> {
        self.con().call_op(Op::Str(self.id())).await?.extract()
    }

    /// `bool(obj)`
    pub async fn truth(&self) -> Result<bool, Error> {
        self.con().call_op(Op::Truth(self.id())).await?.extract()
    }

    /// `hash(obj)`
    pub async fn hash(&self) -> Result<i64, Error> {
        self.con().call_op(Op::Hash(self.id())).await?.extract()
    }

    /// `obj <op> other`, or `other <op> obj` when `reflected`.
    pub async fn binary<T: Serialize + ?Sized>(
        &self,
        op: BinaryOp,
        other: &T,
        reflected: bool,
    ) -> Result<Value, Error> {
        let other = self.value(other)?;
        self.con()
            .call_op(Op::Binary {
                op,
                target: self.id(),
                other,
                reflected,
            })
            .await
    }

    /// `obj <op> other` for rich comparisons; the result may be any object.
    pub async fn compare<T: Serialize + ?Sized>(
        &self,
        op: CompareOp,
        other: &T,
    ) -> Result<Value, Error> {
        let other = self.value(other)?;
        self.con()
            .call_op(Op::Compare {
                op,
                target: self.id(),
                other,
            })
            .await
    }

    /// `<op> obj`
    pub async fn unary(&self, op: UnaryOp) -> Result<Value, Error> {
        self.con()
            .call_op(Op::Unary {
                op,
                target: self.id(),
            })
            .await
    }

    /// `dir(obj)`
    pub async fn dir(&self) -> Result<Vec<String>, Error> {
        self.con().call_op(Op::Dir(self.id())).await?.extract()
    }

    /// A deep copy by value of a list/dict/set/tuple (objects inside that
    /// are not containers stay handles). At most [`DEFAULT_OBTAIN_LIMIT`] nodes.
    pub async fn obtain(&self) -> Result<Value, Error> {
        self.obtain_limited(DEFAULT_OBTAIN_LIMIT).await
    }

    /// [`RemoteObject::obtain`] with a cap on the number of nodes copied.
    pub async fn obtain_limited(&self, max_items: u32) -> Result<Value, Error> {
        self.con()
            .call_op(Op::Obtain {
                target: self.id(),
                max_items,
            })
            .await
    }
}
