//! Waiting for a request on the Python thread that made it, and serving the
//! callbacks guest code makes meanwhile on that same thread (as Pushy did:
//! thread-locals and re-entrance work).
//!
//! The waiting thread polls the request itself, with the GIL released, in
//! turns of `block_on`: each turn ends with the reply, with a callback of
//! the call (the callback handler, on one of tokio's blocking threads, hands
//! it to the innermost waiter of its connection — the call running in the
//! guest — and waits for the answer), or after a tick (to look at signals
//! and output). A callback runs between turns, so the requests it makes
//! take turns of their own and `block_on` never nests. Polling on the
//! caller's thread (rather than spawning the request and waiting for its
//! result on a channel) spares a thread hop each way, which on this
//! project's VMs costs more than a call's own work; the client's brief
//! polling for the reply then happens on the caller's thread too.
//!
//! Calls of one connection are serialised by a re-entrant lock: guest code
//! runs one call at a time, and a callback can only be routed to the thread
//! whose call it belongs to if no other thread has a call in flight. The
//! owner of the lock may nest (a callback's own requests).

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex, Once, OnceLock};
use std::thread::ThreadId;
use std::time::{Duration, Instant};

use pushy::{CallArgs, CallbackException, Value};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyTuple};
use tokio::runtime::Runtime;

use crate::convert::{self, Arg};
use crate::errors;
use crate::session::State;

/// How often a waiting thread looks at signals (Ctrl-C) and output.
const TICK: Duration = Duration::from_millis(50);
/// How long an interrupted call may take to end before the wait gives up.
const INTERRUPT_GRACE: Duration = Duration::from_secs(5);

/// How often the runtime is driven when no thread waits on it (for the
/// release timers: queued releases also go with the next request).
const IDLE_PUMP: Duration = Duration::from_millis(100);

/// Threads inside [`block_on`] now.
static DRIVERS: AtomicUsize = AtomicUsize::new(0);

/// The runtime every connection of this process runs on.
///
/// It is a current-thread runtime: the thread that waits for a reply drives
/// the connection's I/O itself, as the Rust client does, so a round trip
/// wakes no other thread of this process (on a VM a thread wake-up costs
/// more than the call's own work). When no thread waits, a pump thread
/// drives it every [`IDLE_PUMP`] so that timers (batched releases) fire.
pub(crate) fn runtime() -> &'static Runtime {
    static RUNTIME: OnceLock<Runtime> = OnceLock::new();
    static PUMP: Once = Once::new();
    let runtime = RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .thread_name("pushy-python")
            .enable_all()
            .build()
            .expect("cannot start the tokio runtime of pushy._core")
    });
    PUMP.call_once(|| {
        let started = std::thread::Builder::new()
            .name("pushy-python-pump".into())
            .spawn(pump);
        if let Err(error) = started {
            // Releases then go with the next request only.
            eprintln!("pushy: cannot start the idle pump thread: {error}");
        }
    });
    runtime
}

/// Runs `future` to completion on this thread, driving the runtime's tasks
/// and I/O meanwhile (several threads may wait at once: one drives, the
/// others are woken when their future is ready).
pub(crate) fn block_on<F: Future>(future: F) -> F::Output {
    struct Driving;
    impl Drop for Driving {
        fn drop(&mut self) {
            DRIVERS.fetch_sub(1, Ordering::AcqRel);
        }
    }
    DRIVERS.fetch_add(1, Ordering::AcqRel);
    let _driving = Driving;
    runtime().block_on(future)
}

/// Drives the runtime for a few scheduler turns whenever no thread waits.
fn pump() {
    loop {
        std::thread::sleep(IDLE_PUMP);
        if DRIVERS.load(Ordering::Acquire) == 0 {
            block_on(async {
                // Each yield is one turn: ready tasks run and the I/O and
                // time drivers are polled without blocking.
                for _ in 0..4 {
                    tokio::task::yield_now().await;
                }
            });
        }
    }
}

/// One call of a local callable by guest code.
pub(crate) struct Job {
    pub(crate) callable: Arc<Py<PyAny>>,
    pub(crate) args: CallArgs,
    pub(crate) reply: mpsc::Sender<Result<Arg, CallbackException>>,
}

/// A re-entrant lock whose owner is a thread; waiting for it releases the GIL.
#[derive(Default)]
pub(crate) struct CallLock {
    owner: Mutex<Option<(ThreadId, usize)>>,
    freed: Condvar,
}

pub(crate) struct CallGuard<'a>(&'a CallLock);

impl CallLock {
    pub(crate) fn enter<'a>(&'a self, py: Python<'_>) -> CallGuard<'a> {
        let me = std::thread::current().id();
        {
            let mut owner = self.owner.lock().expect("call lock");
            match &mut *owner {
                None => {
                    *owner = Some((me, 1));
                    return CallGuard(self);
                }
                Some((thread, depth)) if *thread == me => {
                    *depth += 1;
                    return CallGuard(self);
                }
                Some(_) => {}
            }
        }
        py.detach(|| {
            let mut owner = self.owner.lock().expect("call lock");
            while owner.is_some() {
                owner = self.freed.wait(owner).expect("call lock");
            }
            *owner = Some((me, 1));
        });
        CallGuard(self)
    }
}

impl Drop for CallGuard<'_> {
    fn drop(&mut self) {
        let mut owner = self.0.owner.lock().expect("call lock");
        if let Some((_, depth)) = &mut *owner {
            *depth -= 1;
            if *depth == 0 {
                *owner = None;
                self.0.freed.notify_one();
            }
        }
    }
}

/// What one turn of a wait brought.
enum Step {
    Done(Result<Value, pushy::Error>),
    Callback(Job),
    Tick,
}

/// Runs `request` on this thread and waits for it, running the callbacks
/// it makes here; Ctrl-C interrupts the session (its state is lost) and
/// raises `KeyboardInterrupt`.
pub(crate) fn wait<F>(py: Python<'_>, state: &Arc<State>, request: F) -> PyResult<Value>
where
    F: Future<Output = Result<Value, pushy::Error>> + Send,
{
    let _call = state.calls.enter(py);
    let (jobs, mut inbox) = tokio::sync::mpsc::unbounded_channel();
    let waiter = state.push_waiter(jobs);
    let mut request = std::pin::pin!(request);
    // The first signal's exception (a KeyboardInterrupt, usually), or a
    // callback's KeyboardInterrupt/SystemExit: raised once the call is over.
    let mut stopped: Option<(PyErr, Instant)> = None;
    let outcome = loop {
        // One turn: until the reply, a callback or a tick. Leaving
        // `block_on` for each callback is what lets a callback make calls
        // of its own (they have turns of their own; block_on never nests).
        // The request future stays here between turns: its reply is
        // delivered to it by the connection's dispatcher meanwhile.
        let step = py.detach(|| {
            block_on(async {
                tokio::select! {
                    biased;
                    result = &mut request => Step::Done(result),
                    Some(job) = inbox.recv() => Step::Callback(job),
                    () = tokio::time::sleep(TICK) => Step::Tick,
                }
            })
        });
        match step {
            Step::Done(result) => break Some(result),
            Step::Callback(job) => {
                state.write_output(py);
                if let Some(error) = run_callback(py, state, job)
                    && stopped.is_none()
                {
                    stopped = Some((error, Instant::now()));
                }
            }
            Step::Tick => {
                state.write_output(py);
                match &stopped {
                    None => {
                        if let Err(error) = py.check_signals() {
                            state.con.interrupt();
                            stopped = Some((error, Instant::now()));
                        }
                    }
                    Some((_, since)) if since.elapsed() > INTERRUPT_GRACE => break None,
                    Some(_) => {}
                }
            }
        }
    };
    state.pop_waiter(waiter);
    state.write_output(py);
    if let Some((error, _)) = stopped {
        return Err(error);
    }
    match outcome {
        Some(Ok(value)) => Ok(value),
        Some(Err(error)) => Err(errors::to_py(py, Some(state), error)),
        None => Err(errors::to_py(
            py,
            Some(state),
            pushy::Error::Closed(pushy::CloseReason::SessionEnded),
        )),
    }
}

/// Runs one callback here and answers it. Returns the error to raise when
/// the call is over if the callback asked for the program to stop
/// (KeyboardInterrupt, SystemExit: not exceptions for guest code to catch).
fn run_callback(py: Python<'_>, state: &Arc<State>, job: Job) -> Option<PyErr> {
    let Job {
        callable,
        args,
        reply,
    } = job;
    match call_local(py, state, &callable, args) {
        Ok(arg) => {
            let _ = reply.send(Ok(arg));
            None
        }
        Err(error) => {
            let stop = !error.is_instance_of::<pyo3::exceptions::PyException>(py);
            if stop {
                // Before the answer: the host then ends the call where it
                // waits for the callback, and no more guest code runs.
                state.con.interrupt();
            }
            let _ = reply.send(Err(exception_for_guest(py, &error)));
            stop.then_some(error)
        }
    }
}

fn call_local(
    py: Python<'_>,
    state: &Arc<State>,
    callable: &Py<PyAny>,
    args: CallArgs,
) -> PyResult<Arg> {
    let positional = args
        .args
        .into_iter()
        .map(|value| convert::to_py(py, state, value))
        .collect::<PyResult<Vec<_>>>()?;
    let positional = PyTuple::new(py, positional)?;
    let named = PyDict::new(py);
    for (name, value) in args.kwargs {
        named.set_item(name, convert::to_py(py, state, value)?)?;
    }
    let result = callable.bind(py).call(positional, Some(&named))?;
    convert::to_arg(py, state, &result)
}

/// A local exception as guest code will see it: its qualified type name and
/// message (its one string argument, else `str()` of it).
pub(crate) fn exception_for_guest(py: Python<'_>, error: &PyErr) -> CallbackException {
    let kind = error.get_type(py);
    let module = kind
        .getattr("__module__")
        .and_then(|m| m.extract::<String>())
        .unwrap_or_else(|_| "builtins".to_owned());
    let name = kind
        .getattr("__qualname__")
        .and_then(|n| n.extract::<String>())
        .unwrap_or_else(|_| "Exception".to_owned());
    let value = error.value(py);
    let message = value
        .getattr("args")
        .ok()
        .and_then(|args| args.extract::<(String,)>().ok())
        .map(|(only,)| only)
        .unwrap_or_else(|| value.str().map(|s| s.to_string()).unwrap_or_default());
    CallbackException::new(format!("{module}.{name}"), message)
}
