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

/// The lock that serialises the calls of one connection.
///
/// It is re-entrant (a callback's own requests nest in the call that made
/// it) and it can be lent: while a thread runs a callback and has no request
/// of its own in flight, another thread may take the lock, and its requests
/// then nest inside that callback as the callback's own would. Without
/// lending, a callback that waits for another thread using the same
/// connection would wait forever. The callback's answer waits until the
/// borrower is done, so the borrower's requests (and the callbacks they
/// make) stay inside the callback; see [`CallLock::lend`].
#[derive(Default)]
pub(crate) struct CallLock {
    frames: Mutex<Frames>,
    changed: Condvar,
}

#[derive(Default)]
struct Frames {
    /// Holders of the lock, the one whose requests may go now last.
    stack: Vec<Frame>,
    next_id: u64,
}

struct Frame {
    id: u64,
    thread: ThreadId,
    /// Requests of this frame in flight (nested ones included).
    requests: usize,
    /// Callbacks running on this frame's thread for its requests.
    callbacks: usize,
}

impl Frames {
    /// Takes the lock for `me` if it may: its own frame nests, a frame
    /// running a callback (with no request of its own in flight) lends.
    fn try_enter(&mut self, me: ThreadId) -> Option<u64> {
        match self.stack.last_mut() {
            Some(top) if top.thread == me => {
                top.requests += 1;
                return Some(top.id);
            }
            Some(top) if top.callbacks < top.requests => return None,
            _ => {}
        }
        self.next_id += 1;
        let id = self.next_id;
        self.stack.push(Frame {
            id,
            thread: me,
            requests: 1,
            callbacks: 0,
        });
        Some(id)
    }

    fn frame(&mut self, id: u64) -> Option<&mut Frame> {
        self.stack.iter_mut().rev().find(|frame| frame.id == id)
    }
}

/// Holding the call lock (one request of a frame).
pub(crate) struct CallGuard<'a> {
    lock: &'a CallLock,
    frame: u64,
}

/// A callback running on the frame's thread (see [`CallLock::lend`]).
pub(crate) struct Lent<'a> {
    lock: &'a CallLock,
    frame: u64,
}

impl CallLock {
    /// Takes the lock for one request, waiting (with the GIL released) while
    /// another thread's call is in flight; a signal while waiting (Ctrl-C)
    /// is raised.
    pub(crate) fn enter<'a>(&'a self, py: Python<'_>) -> PyResult<CallGuard<'a>> {
        let me = std::thread::current().id();
        loop {
            let entered = py.detach(|| {
                let mut frames = self.frames.lock().expect("call lock");
                if let Some(frame) = frames.try_enter(me) {
                    return Some(frame);
                }
                let (mut frames, _) = self.changed.wait_timeout(frames, TICK).expect("call lock");
                frames.try_enter(me)
            });
            if let Some(frame) = entered {
                return Ok(CallGuard { lock: self, frame });
            }
            py.check_signals()?;
        }
    }

    /// Marks a callback of `guard`'s request running on this thread: until
    /// it ends, other threads may take the lock. Dropping the result waits
    /// (GIL released) until they are done, so that the callback's answer
    /// goes after their requests.
    pub(crate) fn lend<'a>(&'a self, guard: &CallGuard<'_>) -> Lent<'a> {
        let mut frames = self.frames.lock().expect("call lock");
        if let Some(frame) = frames.frame(guard.frame) {
            frame.callbacks += 1;
        }
        drop(frames);
        self.changed.notify_all();
        Lent {
            lock: self,
            frame: guard.frame,
        }
    }
}

impl Lent<'_> {
    /// Ends the callback: waits until no other thread holds the lock above
    /// this frame (its guard keeps the frame on the stack meanwhile), and
    /// stops lending it in the same hold of the lock, so that no other
    /// thread can take it in between.
    pub(crate) fn reclaim(self, py: Python<'_>) {
        py.detach(|| {
            let mut frames = self.lock.frames.lock().expect("call lock");
            while frames.stack.last().is_some_and(|top| top.id != self.frame) {
                frames = self.lock.changed.wait(frames).expect("call lock");
            }
            if let Some(frame) = frames.frame(self.frame) {
                frame.callbacks = frame.callbacks.saturating_sub(1);
            }
        });
        std::mem::forget(self);
    }
}

impl Drop for Lent<'_> {
    /// Only if `reclaim` was not called (the callback's code panicked): no
    /// waiting then.
    fn drop(&mut self) {
        let mut frames = self.lock.frames.lock().expect("call lock");
        if let Some(frame) = frames.frame(self.frame) {
            frame.callbacks = frame.callbacks.saturating_sub(1);
        }
    }
}

impl Drop for CallGuard<'_> {
    fn drop(&mut self) {
        let mut frames = self.lock.frames.lock().expect("call lock");
        if let Some(at) = frames.stack.iter().rposition(|f| f.id == self.frame) {
            let frame = &mut frames.stack[at];
            frame.requests -= 1;
            if frame.requests == 0 {
                frames.stack.remove(at);
            }
        }
        drop(frames);
        self.lock.changed.notify_all();
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
    let call = state.calls.enter(py)?;
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
                let lent = state.calls.lend(&call);
                let stop = run_callback(py, state, job, lent);
                if let Some(error) = stop
                    && stopped.is_none()
                {
                    stopped = Some((error, state.interrupted_at()));
                }
            }
            Step::Tick => {
                state.write_output(py);
                match &stopped {
                    None => {
                        if let Err(error) = py.check_signals() {
                            state.con.interrupt();
                            stopped = Some((error, state.interrupted_at()));
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
/// (KeyboardInterrupt, SystemExit, another BaseException that is not an
/// Exception: not for guest code to swallow). A KeyboardInterrupt also ends
/// the session, as Ctrl-C during a call does; the others leave it usable.
fn run_callback(py: Python<'_>, state: &Arc<State>, job: Job, lent: Lent<'_>) -> Option<PyErr> {
    let Job {
        callable,
        args,
        reply,
    } = job;
    let result = call_local(py, state, &callable, args);
    // Requests other threads made meanwhile end before the answer.
    lent.reclaim(py);
    match result {
        Ok(arg) => {
            let _ = reply.send(Ok(arg));
            None
        }
        Err(error) => {
            // SystemExit and the like: raised here once the call is over
            // (guest code sees a CallbackError and unwinds). Ctrl-C also
            // stops the guest code at once, ending the session.
            let stop = !error.is_instance_of::<pyo3::exceptions::PyException>(py);
            if error.is_instance_of::<pyo3::exceptions::PyKeyboardInterrupt>(py) {
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
