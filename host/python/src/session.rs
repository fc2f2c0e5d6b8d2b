//! One connection: the async client, its call lock and waiters, its output,
//! its live proxies, its GC settings; and the `Connection` class around it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak, mpsc};
use std::time::{Duration, Instant};

use pushy::protocol::OutputStream;
use pushy::{CallbackException, OutputChunk, RemoteObject, Value};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyWeakrefReference};
use tokio::sync::Notify;
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender};

use crate::convert::{self, Arg};
use crate::hooks;
use crate::waiting::{self, CallLock, Job};

/// Longest sleep of the release timer between looks at its settings.
const FOREVER: Duration = Duration::from_secs(24 * 3600);

pub(crate) struct State {
    pub(crate) con: pushy::Connection,
    pub(crate) calls: CallLock,
    /// Threads waiting for a request, innermost last (only the owner of the
    /// call lock has any); callbacks go to the innermost.
    waiters: Mutex<Vec<(u64, UnboundedSender<Job>)>>,
    next_waiter: AtomicU64,
    output: Mutex<Option<UnboundedReceiver<OutputChunk>>>,
    /// The live proxy of each handle id, and its serial: the same remote
    /// object gives the same proxy while it lives.
    proxies: Mutex<HashMap<u64, (u64, Py<PyWeakrefReference>)>>,
    next_serial: AtomicU64,
    gc_enabled: AtomicBool,
    /// Handles of proxies dropped while `gc_enabled` is false.
    held: Mutex<Vec<RemoteObject>>,
    gc_interval_ms: AtomicU64,
    gc_changed: Arc<Notify>,
    closed: AtomicBool,
    /// When the running call was first interrupted (Ctrl-C, or a callback
    /// that raised KeyboardInterrupt): every nested wait gives up one grace
    /// after it, not one grace each.
    interrupted: Mutex<Option<Instant>>,
    /// The package's per-connection state (its capability caches): handed
    /// to its hooks. It holds nothing of this, so no cycle runs through here.
    pub(crate) companion: Py<PyAny>,
}

impl State {
    pub(crate) fn start(
        con: pushy::Connection,
        gc_interval: Duration,
        companion: Py<PyAny>,
    ) -> Arc<State> {
        let output = con.take_output();
        let state = Arc::new(State {
            con,
            calls: CallLock::default(),
            waiters: Mutex::new(Vec::new()),
            next_waiter: AtomicU64::new(1),
            output: Mutex::new(Some(output)),
            proxies: Mutex::new(HashMap::new()),
            next_serial: AtomicU64::new(1),
            gc_enabled: AtomicBool::new(true),
            held: Mutex::new(Vec::new()),
            gc_interval_ms: AtomicU64::new(millis(gc_interval)),
            gc_changed: Arc::new(Notify::new()),
            closed: AtomicBool::new(false),
            interrupted: Mutex::new(None),
            companion,
        });
        waiting::runtime().spawn(release_timer(
            Arc::downgrade(&state),
            state.gc_changed.clone(),
        ));
        state
    }

    pub(crate) fn push_waiter(&self, events: UnboundedSender<Job>) -> u64 {
        let id = self.next_waiter.fetch_add(1, Ordering::Relaxed);
        self.waiters.lock().expect("waiters").push((id, events));
        id
    }

    pub(crate) fn pop_waiter(&self, id: u64) {
        self.waiters
            .lock()
            .expect("waiters")
            .retain(|(waiter, _)| *waiter != id);
    }

    fn innermost_waiter(&self) -> Option<UnboundedSender<Job>> {
        self.waiters
            .lock()
            .expect("waiters")
            .last()
            .map(|(_, events)| events.clone())
    }

    /// Writes the remote output that has arrived to `sys.stdout`/`sys.stderr`
    /// (through the package's writer), in order. Never fails: a writer's
    /// error is reported as unraisable.
    pub(crate) fn write_output(&self, py: Python<'_>) {
        let chunks: Vec<OutputChunk> = {
            let mut output = self.output.lock().expect("output");
            let Some(output) = output.as_mut() else {
                return;
            };
            std::iter::from_fn(|| output.try_recv().ok()).collect()
        };
        if chunks.is_empty() {
            return;
        }
        let Ok(hooks) = hooks::get(py) else {
            return;
        };
        for chunk in chunks {
            let stream = match chunk.stream {
                OutputStream::Stdout => 1,
                OutputStream::Stderr => 2,
            };
            if let Err(error) = hooks.write_output.call1(
                py,
                (
                    self.companion.bind(py),
                    stream,
                    PyBytes::new(py, &chunk.data),
                ),
            ) {
                error.write_unraisable(py, None);
            }
        }
    }

    /// The live proxy of handle `id`, if there is one.
    pub(crate) fn live_proxy<'py>(&self, py: Python<'py>, id: u64) -> Option<Bound<'py, PyAny>> {
        let proxies = self.proxies.lock().expect("proxies");
        proxies
            .get(&id)
            .and_then(|(_, weak)| weak.bind(py).upgrade())
    }

    /// Records `proxy` as the proxy of handle `id`; returns its serial.
    pub(crate) fn remember_proxy(&self, id: u64, weak: Py<PyWeakrefReference>) -> u64 {
        let serial = self.next_serial.fetch_add(1, Ordering::Relaxed);
        let replaced = self
            .proxies
            .lock()
            .expect("proxies")
            .insert(id, (serial, weak));
        drop(replaced);
        serial
    }

    /// The last reference to a proxy went (it is being deallocated): forget
    /// it and release its handle, or hold it while GC is off. No Python code
    /// runs here, and nothing waits.
    pub(crate) fn proxy_dropped(&self, id: u64, serial: u64, object: RemoteObject) {
        let removed = {
            let mut proxies = self.proxies.lock().expect("proxies");
            match proxies.get(&id) {
                Some((mine, _)) if *mine == serial => proxies.remove(&id),
                _ => None,
            }
        };
        drop(removed);
        if !self.gc_enabled.load(Ordering::Relaxed) {
            self.held.lock().expect("held").push(object);
            return;
        }
        drop(object);
        if self.gc_interval_ms.load(Ordering::Relaxed) == 0 {
            self.con.flush_releases();
        }
    }

    /// When the session was first interrupted (now, if it was not before).
    pub(crate) fn interrupted_at(&self) -> Instant {
        *self
            .interrupted
            .lock()
            .expect("interrupted")
            .get_or_insert_with(Instant::now)
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Relaxed)
    }

    /// Registers `callable` as a callback of this connection: guest code
    /// calling it runs it on the Python thread whose call is waiting.
    pub(crate) fn register(self: &Arc<Self>, callable: Py<PyAny>) -> pushy::Callback {
        let state = Arc::downgrade(self);
        let callable = Arc::new(callable);
        self.con
            .callback_raising(move |args| forward(&state, &callable, args))
    }
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

fn runtime_error(message: &str) -> CallbackException {
    CallbackException::new("builtins.RuntimeError", message)
}

/// The callback handler (on a blocking thread of the runtime): hands the call
/// to the innermost waiting thread and waits for its answer.
fn forward(
    state: &Weak<State>,
    callable: &Arc<Py<PyAny>>,
    args: pushy::CallArgs,
) -> Result<Arg, CallbackException> {
    let state = state
        .upgrade()
        .ok_or_else(|| runtime_error("the connection of this callback is gone"))?;
    let waiter = state
        .innermost_waiter()
        .ok_or_else(|| runtime_error("no call of this connection is waiting for the callback"))?;
    drop(state);
    let (reply, answer) = mpsc::channel();
    let job = Job {
        callable: callable.clone(),
        args,
        reply,
    };
    if waiter.send(job).is_err() {
        return Err(runtime_error("the call waiting for the callback is gone"));
    }
    answer
        .recv()
        .unwrap_or_else(|_| Err(runtime_error("the call waiting for the callback is gone")))
}

/// Sends the queued releases every `gc_interval` while GC is on.
async fn release_timer(state: Weak<State>, changed: Arc<Notify>) {
    loop {
        let interval = match state.upgrade() {
            Some(state) if !state.is_closed() => state.gc_interval_ms.load(Ordering::Relaxed),
            _ => return,
        };
        let sleep = if interval == 0 {
            FOREVER
        } else {
            Duration::from_millis(interval)
        };
        tokio::select! {
            _ = tokio::time::sleep(sleep) => {}
            _ = changed.notified() => continue,
        }
        match state.upgrade() {
            Some(state) if state.gc_enabled.load(Ordering::Relaxed) => state.con.flush_releases(),
            Some(_) => {}
            None => return,
        }
    }
}

/// One session in the sandbox (the Rust side of `pushy.Connection`).
#[pyclass(frozen, module = "pushy._core", name = "Connection")]
pub(crate) struct Connection {
    pub(crate) state: Arc<State>,
}

/// A local callable registered with a connection: what the package's
/// `localize` hands back for a local function.
#[pyclass(frozen, module = "pushy._core")]
pub(crate) struct CallbackRef {
    pub(crate) callback: Arc<pushy::Callback>,
}

#[pymethods]
impl CallbackRef {
    /// Its id on the local side (see `Connection.revive_callback`).
    #[getter]
    fn id(&self) -> u64 {
        self.callback.id()
    }
}

impl Connection {
    fn request<F>(&self, py: Python<'_>, request: F) -> PyResult<Py<PyAny>>
    where
        F: std::future::Future<Output = Result<Value, pushy::Error>> + Send + 'static,
    {
        let value = waiting::wait(py, &self.state, request)?;
        convert::to_py(py, &self.state, value)
    }
}

#[pymethods]
impl Connection {
    /// `eval(expression)` in the session's `__main__`.
    fn eval(&self, py: Python<'_>, expression: String) -> PyResult<Py<PyAny>> {
        let con = self.state.con.clone();
        self.request(py, async move { con.eval(&expression).await })
    }

    /// `exec(source)` in the session's `__main__`.
    fn execute(&self, py: Python<'_>, source: String) -> PyResult<Py<PyAny>> {
        let con = self.state.con.clone();
        self.request(py, async move {
            con.execute(&source).await.map(|()| Value::None)
        })
    }

    /// Runs `source` in `__main__`; returns the last function or class it defines.
    fn define(&self, py: Python<'_>, source: String) -> PyResult<Py<PyAny>> {
        let con = self.state.con.clone();
        self.request(
            py,
            async move { con.define(&source).await.map(Value::Object) },
        )
    }

    /// Imports a module (dotted names too), once per connection.
    fn import_module(&self, py: Python<'_>, name: String) -> PyResult<Py<PyAny>> {
        let modules = self.state.con.modules();
        self.request(
            py,
            async move { modules.import(&name).await.map(Value::Object) },
        )
    }

    /// One round trip that does nothing.
    fn ping(&self, py: Python<'_>) -> PyResult<()> {
        let con = self.state.con.clone();
        waiting::wait(py, &self.state, async move {
            con.ping().await.map(|()| Value::None)
        })
        .map(drop)
    }

    /// Objects the sandbox holds for this connection's handles.
    fn table_size(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        let con = self.state.con.clone();
        self.request(py, async move {
            con.table_size()
                .await
                .map(|n| Value::Int(i64::try_from(n).unwrap_or(i64::MAX)))
        })
    }

    /// Local callables registered (held here or by guest code).
    fn live_callbacks(&self) -> usize {
        self.state.con.live_callbacks()
    }

    /// Proxies alive here.
    fn live_proxies(&self) -> usize {
        self.state.proxies.lock().expect("proxies").len()
    }

    /// Registers `callable`: sending the result makes it callable in the sandbox.
    fn callback(&self, callable: Py<PyAny>) -> CallbackRef {
        CallbackRef {
            callback: Arc::new(self.state.register(callable)),
        }
    }

    /// The callback of this id while it is still registered (the same
    /// object for guest code), else None.
    fn revive_callback(&self, id: u64) -> Option<CallbackRef> {
        self.state
            .con
            .callback_by_id(id)
            .map(|callback| CallbackRef {
                callback: Arc::new(callback),
            })
    }

    /// Stops the running call; the session is terminated (its state is lost).
    fn interrupt(&self) {
        self.state.con.interrupt();
    }

    /// Releases what is queued and ends the session (idempotent).
    fn close(&self, py: Python<'_>) {
        if self.state.closed.swap(true, Ordering::Relaxed) {
            return;
        }
        let con = self.state.con.clone();
        py.detach(|| {
            let _ = waiting::block_on(con.close());
        });
        self.state.gc_changed.notify_one();
        self.state.write_output(py);
    }

    /// Whether `close()` was called.
    #[getter]
    fn closed(&self) -> bool {
        self.state.is_closed()
    }

    /// Sends the queued releases now.
    fn flush_releases(&self) {
        self.state.con.flush_releases();
    }

    /// Whether dropped proxies release their remote objects.
    #[getter]
    fn get_gc_enabled(&self) -> bool {
        self.state.gc_enabled.load(Ordering::Relaxed)
    }

    #[setter]
    fn set_gc_enabled(&self, enabled: bool) {
        self.state.gc_enabled.store(enabled, Ordering::Relaxed);
        if enabled {
            let held = std::mem::take(&mut *self.state.held.lock().expect("held"));
            drop(held);
            if self.state.gc_interval_ms.load(Ordering::Relaxed) == 0 {
                self.state.con.flush_releases();
            }
        }
    }

    /// Seconds between batched release messages (0: each at once).
    #[getter]
    fn get_gc_interval(&self) -> f64 {
        self.state.gc_interval_ms.load(Ordering::Relaxed) as f64 / 1000.0
    }

    #[setter]
    fn set_gc_interval(&self, seconds: f64) -> PyResult<()> {
        if !(seconds.is_finite() && (0.0..=crate::targets::MAX_GC_INTERVAL).contains(&seconds)) {
            return Err(pyo3::exceptions::PyValueError::new_err(
                "gc_interval must be a number of seconds from 0 to a year",
            ));
        }
        self.state
            .gc_interval_ms
            .store(millis(Duration::from_secs_f64(seconds)), Ordering::Relaxed);
        self.state.gc_changed.notify_one();
        if seconds == 0.0 {
            self.state.con.flush_releases();
        }
        Ok(())
    }

    /// The package's per-connection state given to `connect`.
    #[getter]
    fn companion(&self, py: Python<'_>) -> Py<PyAny> {
        self.state.companion.clone_ref(py)
    }
}
