//! The connection: the API of a session — eval, execute, define, modules,
//! scripts, callbacks, output, interrupt, close. Its state, shared with
//! every handle, is in [`super::shared`].

use std::sync::Arc;
use std::sync::atomic::Ordering;

use serde::Serialize;
use tokio::sync::mpsc;

use super::callback::Callback;
use super::config::{ConnectionConfig, OutputChunk};
use super::error::CloseReason;
use super::object::RemoteObject;
use super::shared::{OutputSink, Shared};
use super::{Error, Value};
use crate::protocol::{ClientMessage, HandleInfo, Op, Reply};
use crate::transport::ClientLink;

/// A connection to a sandboxed Python interpreter.
///
/// Cheap to clone; the session ends when [`Connection::close`] is called or
/// the last clone and the last [`RemoteObject`] of it are dropped.
#[derive(Clone)]
pub struct Connection {
    pub(crate) shared: Arc<Shared>,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("uid", &self.shared.uid)
            .finish_non_exhaustive()
    }
}

impl Connection {
    /// A connection over a link to a session (from [`crate::transport`], or
    /// an in-process one); spawns its dispatch task on the current tokio
    /// runtime.
    pub fn over(link: ClientLink, config: ConnectionConfig) -> Connection {
        Connection {
            shared: Shared::start(link, config),
        }
    }

    /// Sends `op` and waits for its reply.
    pub(crate) async fn request(&self, op: Op) -> Result<Reply, Error> {
        self.shared.request(op).await
    }

    /// Sends `op` and converts its reply to a [`Value`].
    pub(crate) async fn call_op(&self, op: Op) -> Result<Value, Error> {
        let reply = self.request(op).await?;
        self.shared.reply_value(reply)
    }

    /// Sends one raw protocol operation and converts its reply: the
    /// low-level door for tools and tests; the typed methods cover every op.
    pub async fn request_op(&self, op: Op) -> Result<Value, Error> {
        self.call_op(op).await
    }

    /// `eval(expression)` in the session's `__main__` namespace.
    pub async fn eval(&self, expression: &str) -> Result<Value, Error> {
        self.call_op(Op::Eval(expression.to_owned())).await
    }

    /// `exec(statements)` in the session's `__main__` namespace.
    pub async fn execute(&self, statements: &str) -> Result<(), Error> {
        self.call_op(Op::Execute(statements.to_owned()))
            .await
            .map(drop)
    }

    /// Runs `source` (which defines a function or class) in the session's
    /// `__main__` namespace and returns a handle to the last one it defines:
    /// Pushy's `compile`.
    pub async fn define(&self, source: &str) -> Result<RemoteObject, Error> {
        self.call_op(Op::Define(source.to_owned()))
            .await?
            .into_object()
    }

    /// Pushy's `modules`: `con.modules().import("os.path")`.
    pub fn modules(&self) -> Modules {
        Modules {
            connection: self.clone(),
        }
    }

    /// Imports a module (submodules too: `xml.dom.minidom`) and returns it.
    pub async fn import(&self, module: &str) -> Result<RemoteObject, Error> {
        self.call_op(Op::ImportModule(module.to_owned()))
            .await?
            .into_object()
    }

    /// One round trip into the guest and back; does nothing.
    pub async fn ping(&self) -> Result<(), Error> {
        self.call_op(Op::Ping).await.map(drop)
    }

    /// Number of objects the guest holds for this connection's handles.
    pub async fn table_size(&self) -> Result<usize, Error> {
        self.call_op(Op::TableSize).await?.extract()
    }

    /// Sets `sys.argv` in the session.
    pub async fn set_argv(&self, argv: &[String]) -> Result<(), Error> {
        self.call_op(Op::SetArgv(argv.to_vec())).await.map(drop)
    }

    /// Runs a script as `__main__`; returns its exit status (`SystemExit`).
    /// `source` is the file's bytes, decoded as Python decodes a file (UTF-8,
    /// a BOM, or a PEP 263 coding cookie).
    pub async fn run_script(&self, source: impl AsRef<[u8]>, filename: &str) -> Result<i32, Error> {
        let source = source.as_ref();
        // Refused here, with the reason, rather than by the connection.
        if source.len() + filename.len() + 1024 > self.shared.config.max_frame {
            return Err(Error::BadArgument(format!(
                "the script is {} bytes; a message is at most {} bytes",
                source.len(),
                self.shared.config.max_frame
            )));
        }
        self.call_op(Op::RunScript {
            source: source.to_vec(),
            filename: filename.to_owned(),
        })
        .await?
        .extract()
    }

    /// Makes `f` callable from the sandbox: pass the returned [`Callback`] as
    /// an argument, and guest code calling it runs `f` here. `f` runs on a
    /// blocking thread, so it may itself use [`crate::blocking`] calls on
    /// this connection (nested calls are trampolined).
    pub fn callback<F, T, E>(&self, f: F) -> Callback
    where
        F: Fn(super::CallArgs) -> Result<T, E> + Send + Sync + 'static,
        T: Serialize,
        E: std::fmt::Display,
    {
        self.shared.callbacks.register(self.shared.clone(), f)
    }

    /// [`Connection::callback`] whose failures reach guest code as the
    /// exceptions they name: a [`crate::CallbackException`] of type
    /// `builtins.KeyError` is a `KeyError` there (any builtin `Exception`
    /// class by its qualified name), another type a `CallbackError` whose
    /// message names it.
    pub fn callback_raising<F, T>(&self, f: F) -> Callback
    where
        F: Fn(super::CallArgs) -> Result<T, super::CallbackException> + Send + Sync + 'static,
        T: Serialize,
    {
        self.shared
            .callbacks
            .register_raising(self.shared.clone(), f)
    }

    /// A new handle of the callback with this [`Callback::id`] while it is
    /// still registered (a local handle of it exists, or guest code holds
    /// it): sending it sends the same id, so guest code sees the same
    /// object, as for the first handle. `None` once it has been released.
    pub fn callback_by_id(&self, id: u64) -> Option<Callback> {
        self.shared.callbacks.revive(self.shared.clone(), id)
    }

    /// Local callbacks still registered (held locally or by the guest).
    pub fn live_callbacks(&self) -> usize {
        self.shared.callbacks.len()
    }

    /// Sends the queued releases now instead of at the next interval.
    pub fn flush_releases(&self) {
        self.shared.send_releases();
    }

    /// Takes the captured output (with [`crate::OutputMode::Capture`]; otherwise
    /// switches to capturing from now on).
    pub fn take_output(&self) -> mpsc::UnboundedReceiver<OutputChunk> {
        let mut sink = self.shared.output.lock().expect("output lock");
        match &mut *sink {
            OutputSink::Capture(_, rx @ Some(_)) => rx.take().expect("checked"),
            _ => {
                let (tx, rx) = mpsc::unbounded_channel();
                *sink = OutputSink::Capture(tx, None);
                rx
            }
        }
    }

    /// The first error writing remote output to this process's stdout or
    /// stderr, if any ([`crate::OutputMode::Print`]; such output is dropped).
    pub fn output_error(&self) -> Option<std::io::ErrorKind> {
        self.shared
            .output_error
            .lock()
            .expect("output error lock")
            .as_ref()
            .map(std::io::Error::kind)
    }

    /// Asks the host to stop the running call. The session is terminated
    /// (a trapped instance cannot be reused): the call fails with
    /// [`Error::Interrupted`] and later calls with [`Error::SessionTerminated`].
    pub fn interrupt(&self) {
        self.shared.send(ClientMessage::Interrupt);
    }

    /// Releases what is queued and ends the session. Other clones and
    /// handles of this connection fail with [`Error::Closed`] from now on.
    pub async fn close(self) -> Result<(), Error> {
        self.shared.send_releases();
        self.shared.close(CloseReason::ByLocalSide);
        // The session ends on its side as the link closes: give it a moment
        // to finish (its `atexit` handlers, its scratch directory removed, a
        // `local:` child gone) before this process may exit.
        self.shared.wait_ended(CLOSE_WAIT).await;
        Ok(())
    }
}

/// How long [`Connection::close`] waits for the session to finish on its side.
const CLOSE_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// Pushy's `con.modules`: imports remote modules.
#[derive(Clone, Debug)]
pub struct Modules {
    connection: Connection,
}

impl Modules {
    /// `importlib.import_module(name)` in the sandbox, once per connection:
    /// later imports of the same name return the same module without a round
    /// trip, as Pushy's and RPyC's `modules` do. (A module replaced in
    /// `sys.modules` afterwards is not seen; use [`Connection::import`].)
    pub async fn import(&self, name: &str) -> Result<RemoteObject, Error> {
        let shared = &self.connection.shared;
        let cached = shared
            .modules
            .lock()
            .expect("modules lock")
            .get(name)
            .cloned();
        if let Some(info) = cached {
            return Ok(shared.adopt_cached(info));
        }
        let module = self.connection.import(name).await?;
        let mut modules = shared.modules.lock().expect("modules lock");
        if !modules.contains_key(name) {
            // Move one of the counts the guest gave us to the cache.
            module.inner.received.fetch_sub(1, Ordering::Relaxed);
            modules.insert(
                name.to_owned(),
                HandleInfo {
                    id: module.id(),
                    type_name: module.type_name().to_owned(),
                    opmask: module.opmask(),
                },
            );
        }
        Ok(module)
    }
}
