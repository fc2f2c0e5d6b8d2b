//! Local callables that guest code can call.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use serde::Serialize;

use super::encode::{CALLBACK_TOKEN, encode};
use super::shared::Shared;
use super::{Error, Value};
use crate::protocol::{ErrorInfo, ErrorKind, Kwargs, ReleaseEntry, Reply, WireValue};

/// Type name of the exception guest code gets when a local callback fails
/// (returns an error or panics), and so of the [`crate::PythonError`] that
/// reaches the caller when guest code lets it propagate: its message is the
/// callback's error.
pub const CALLBACK_ERROR_TYPE: &str = "pushy_guest.callbacks.CallbackError";

/// Arguments of a call from the sandbox to a local callback.
#[derive(Debug, Clone)]
pub struct CallArgs {
    /// Positional arguments.
    pub args: Vec<Value>,
    /// Keyword arguments.
    pub kwargs: Vec<(String, Value)>,
}

impl CallArgs {
    /// The positional arguments as a Rust tuple (or other type), with serde.
    pub fn extract<T: serde::de::DeserializeOwned>(&self) -> Result<T, Error> {
        Value::Tuple(self.args.clone()).extract()
    }
}

/// An exception for guest code to raise, from a local callback registered
/// with [`crate::Connection::callback_raising`]: guest code gets an instance
/// of the builtin exception class `type_name` names (`builtins.KeyError` is
/// a `KeyError` there, so `except KeyError:` and a mapping's missing key
/// work), else a `CallbackError` whose message names the type.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{type_name}: {message}")]
pub struct CallbackException {
    /// Qualified name of the exception's type, e.g. `builtins.KeyError`.
    pub type_name: String,
    /// The message: the one argument the guest's exception is made with.
    pub message: String,
}

impl CallbackException {
    /// An exception of type `type_name` (qualified: `builtins.ValueError`).
    pub fn new(type_name: impl Into<String>, message: impl Into<String>) -> Self {
        CallbackException {
            type_name: type_name.into(),
            message: message.into(),
        }
    }
}

type Handler = Arc<dyn Fn(CallArgs, &Arc<Shared>) -> Reply + Send + Sync>;

struct Entry {
    handler: Handler,
    /// References the guest holds (sends not yet released).
    sent: u64,
    /// How many local `Callback` values of it exist.
    local: u32,
}

#[derive(Default)]
pub(crate) struct CallbackRegistry {
    next_id: AtomicU64,
    entries: Mutex<HashMap<u64, Entry>>,
}

impl CallbackRegistry {
    /// Registers `f`; its errors become `CallbackError`s in the guest.
    pub(crate) fn register<F, T, E>(&self, shared: Arc<Shared>, f: F) -> Callback
    where
        F: Fn(CallArgs) -> Result<T, E> + Send + Sync + 'static,
        T: Serialize,
        E: std::fmt::Display,
    {
        self.register_with(shared, move |args| {
            f(args).map_err(|e| Box::new(error_reply(e.to_string())))
        })
    }

    /// Registers `f`; its errors are the exceptions they name.
    pub(crate) fn register_raising<F, T>(&self, shared: Arc<Shared>, f: F) -> Callback
    where
        F: Fn(CallArgs) -> Result<T, CallbackException> + Send + Sync + 'static,
        T: Serialize,
    {
        self.register_with(shared, move |args| {
            f(args).map_err(|e| Box::new(typed_error_reply(e.type_name, e.message)))
        })
    }

    /// Registers `f`, whose error is the reply to send.
    fn register_with<F, T>(&self, shared: Arc<Shared>, f: F) -> Callback
    where
        F: Fn(CallArgs) -> Result<T, Box<Reply>> + Send + Sync + 'static,
        T: Serialize,
    {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed) + 1;
        let handler: Handler = Arc::new(move |args, shared: &Arc<Shared>| match f(args) {
            Ok(value) => match encode(&value, shared.uid) {
                Ok(encoding) => {
                    shared.callbacks.count_sent(&encoding.callbacks);
                    Reply::Ok(WireValue(encoding.nodes))
                }
                Err(e) => error_reply(format!("cannot send the callback's result: {e}")),
            },
            Err(reply) => *reply,
        });
        self.entries.lock().expect("callback lock").insert(
            id,
            Entry {
                handler,
                sent: 0,
                local: 1,
            },
        );
        Callback { id, shared }
    }

    pub(crate) fn count_sent(&self, ids: &[u64]) {
        if ids.is_empty() {
            return;
        }
        let mut entries = self.entries.lock().expect("callback lock");
        for id in ids {
            if let Some(entry) = entries.get_mut(id) {
                entry.sent += 1;
            }
        }
    }

    pub(crate) fn release(&self, released: &[ReleaseEntry]) {
        let mut entries = self.entries.lock().expect("callback lock");
        for r in released {
            if let Some(entry) = entries.get_mut(&r.id) {
                entry.sent = entry.sent.saturating_sub(u64::from(r.count));
                if entry.sent == 0 && entry.local == 0 {
                    entries.remove(&r.id);
                }
            }
        }
    }

    /// Another local handle of callback `id`, if it is still registered.
    pub(crate) fn revive(&self, shared: Arc<Shared>, id: u64) -> Option<Callback> {
        let mut entries = self.entries.lock().expect("callback lock");
        let entry = entries.get_mut(&id)?;
        entry.local += 1;
        Some(Callback { id, shared })
    }

    fn local_dropped(&self, id: u64) {
        let mut entries = self.entries.lock().expect("callback lock");
        if let Some(entry) = entries.get_mut(&id) {
            entry.local = entry.local.saturating_sub(1);
            if entry.sent == 0 && entry.local == 0 {
                entries.remove(&id);
            }
        }
    }

    fn handler(&self, id: u64) -> Option<Handler> {
        self.entries
            .lock()
            .expect("callback lock")
            .get(&id)
            .map(|e| e.handler.clone())
    }

    /// Number of live callbacks (for tests and diagnostics).
    pub(crate) fn len(&self) -> usize {
        self.entries.lock().expect("callback lock").len()
    }
}

fn error_reply(message: String) -> Reply {
    typed_error_reply(CALLBACK_ERROR_TYPE.to_owned(), message)
}

/// The guest reads only the type's name and the message (see
/// `guest/pushy_guest/callbacks.py`); the bases are a placeholder.
fn typed_error_reply(type_name: String, message: String) -> Reply {
    Reply::Error(ErrorInfo {
        type_name,
        bases: vec!["builtins.Exception".to_owned()],
        message,
        traceback: String::new(),
        exception: None,
        memory_limit_hit: false,
        kind: ErrorKind::Exception,
    })
}

/// Runs a call from the guest on a blocking thread and sends the reply.
pub(crate) fn run(shared: &Arc<Shared>, call: u64, callback: u64, args: WireValue, kwargs: Kwargs) {
    let reply_now = |reply| {
        shared.send(crate::protocol::ClientMessage::CallbackReply { call, reply });
    };
    let Some(handler) = shared.callbacks.handler(callback) else {
        return reply_now(error_reply(format!("no local callback with id {callback}")));
    };
    let args = match shared.value_from_wire(args) {
        Ok(Value::Tuple(args)) => args,
        Ok(_) => return reply_now(error_reply("callback arguments must be a tuple".into())),
        Err(e) => return reply_now(error_reply(e.to_string())),
    };
    let mut named = Vec::with_capacity(kwargs.len());
    for (name, value) in kwargs {
        match shared.value_from_wire(value) {
            Ok(v) => named.push((name, v)),
            Err(e) => return reply_now(error_reply(e.to_string())),
        }
    }
    let shared = shared.clone();
    tokio::task::spawn_blocking(move || {
        let args = CallArgs {
            args,
            kwargs: named,
        };
        // A callback that panics must still answer, or the guest (and the
        // caller waiting on it) would wait forever.
        let reply =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| handler(args, &shared)))
                .unwrap_or_else(|panic| {
                    let what = panic
                        .downcast_ref::<&str>()
                        .map(|s| s.to_string())
                        .or_else(|| panic.downcast_ref::<String>().cloned())
                        .unwrap_or_else(|| "a panic".to_owned());
                    error_reply(format!("the local callback panicked: {what}"))
                });
        shared.send(crate::protocol::ClientMessage::CallbackReply { call, reply });
    });
}

/// A local callable registered with [`crate::Connection::callback`]; pass it
/// as an argument to make it callable in the sandbox.
pub struct Callback {
    id: u64,
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Callback {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "<local callback {}>", self.id)
    }
}

impl Callback {
    /// Its id on the local side.
    pub fn id(&self) -> u64 {
        self.id
    }
}

impl Serialize for Callback {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_newtype_struct(CALLBACK_TOKEN, &(self.shared.uid, self.id))
    }
}

impl Drop for Callback {
    fn drop(&mut self) {
        self.shared.callbacks.local_dropped(self.id);
    }
}
