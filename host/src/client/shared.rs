//! The state every clone of a connection and every handle shares: request
//! ids and waiting callers, live handles and queued releases, cached
//! modules, output and input; and the tasks that serve it (the dispatcher
//! of everything the session sends, the release timer).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use serde::Serialize;
use tokio::sync::{mpsc, oneshot};

use super::callback::CallbackRegistry;
use super::config::{ConnectionConfig, InputMode, OutputChunk, OutputMode};
use super::encode::{EncodeError, Encoding, encode, split_kwargs};
use super::error::CloseReason;
use super::object::{HandleInner, RemoteObject};
use super::{Error, Value};
use crate::protocol::{
    ClientMessage, Failure, HandleInfo, Kwargs, Op, OutputStream, ReleaseEntry, Reply,
    ServerMessage, WireValue,
};
use crate::transport::{ClientLink, Inbound};

static NEXT_CONNECTION_UID: AtomicU64 = AtomicU64::new(1);

type ReplySender = oneshot::Sender<Result<Reply, Failure>>;

pub(crate) struct Shared {
    /// Distinguishes this connection's handles from another's.
    pub(crate) uid: u64,
    /// `None` once closed.
    pub(super) outbound: Mutex<Option<mpsc::UnboundedSender<ClientMessage>>>,
    pub(super) next_id: AtomicU64,
    pub(super) pending: Mutex<HashMap<u64, ReplySender>>,
    /// Live handles by id; weak, so a handle's last drop frees it.
    pub(super) handles: Mutex<HashMap<u64, Weak<HandleInner>>>,
    pub(super) releases: Mutex<Vec<ReleaseEntry>>,
    pub(crate) callbacks: CallbackRegistry,
    /// Modules imported through [`Modules`]: each owns one guest count that
    /// is never released (the module lives in `sys.modules` anyway), so a
    /// second `modules().import()` of it needs no round trip.
    pub(super) modules: Mutex<HashMap<String, HandleInfo>>,
    pub(super) output: Mutex<OutputSink>,
    pub(super) closed: Mutex<Option<CloseReason>>,
    /// The first failure to write remote output to this process's stdout or
    /// stderr ([`OutputMode::Print`]).
    pub(super) output_error: Mutex<Option<std::io::Error>>,
    /// How long a caller polls for its reply before it sleeps.
    pub(super) spin: Duration,
    pub(super) config: ConnectionConfig,
    /// When the host last sent something, or was last sent what it waits
    /// for; and how many callbacks and stdin reads it waits for now. Kept
    /// only for the watchdog ([`ConnectionConfig::unresponsive_after`]).
    pub(super) quiet: Option<Mutex<Quiet>>,
    /// Changes never; closed when the dispatch task ends, i.e. when the
    /// session's side has gone (see [`Shared::wait_ended`]).
    ended: tokio::sync::watch::Receiver<()>,
}

/// What the unresponsive-host watchdog looks at.
pub(super) struct Quiet {
    since: std::time::Instant,
    /// Callbacks and stdin reads the host waits for the local side to answer.
    local_busy: usize,
}

pub(super) enum OutputSink {
    Print,
    Capture(
        mpsc::UnboundedSender<OutputChunk>,
        Option<mpsc::UnboundedReceiver<OutputChunk>>,
    ),
    Discard,
}

impl Shared {
    /// The state of a new connection over `link`; spawns its dispatch task
    /// (and release timer) on the current tokio runtime.
    pub(super) fn start(link: ClientLink, config: ConnectionConfig) -> Arc<Shared> {
        let ClientLink { outbound, inbound } = link;
        let output = match config.output {
            OutputMode::Print => OutputSink::Print,
            OutputMode::Capture => {
                let (tx, rx) = mpsc::unbounded_channel();
                OutputSink::Capture(tx, Some(rx))
            }
            OutputMode::Discard => OutputSink::Discard,
        };
        let (ended_tx, ended_rx) = tokio::sync::watch::channel(());
        let unresponsive_after = config.unresponsive_after();
        let shared = Arc::new(Shared {
            uid: NEXT_CONNECTION_UID.fetch_add(1, Ordering::Relaxed),
            outbound: Mutex::new(Some(outbound)),
            next_id: AtomicU64::new(1),
            pending: Mutex::new(HashMap::new()),
            handles: Mutex::new(HashMap::new()),
            releases: Mutex::new(Vec::new()),
            callbacks: CallbackRegistry::default(),
            modules: Mutex::new(HashMap::new()),
            output: Mutex::new(output),
            closed: Mutex::new(None),
            output_error: Mutex::new(None),
            spin: crate::transport::spin::budget(crate::transport::spin::DEFAULT_CLIENT_SPIN),
            config,
            quiet: unresponsive_after.map(|_| {
                Mutex::new(Quiet {
                    since: std::time::Instant::now(),
                    local_busy: 0,
                })
            }),
            ended: ended_rx,
        });
        tokio::spawn(dispatch(Arc::downgrade(&shared), inbound, ended_tx));
        if !shared.config.gc_interval.is_zero() {
            tokio::spawn(release_timer(
                Arc::downgrade(&shared),
                shared.config.gc_interval,
            ));
        }
        if let Some(after) = unresponsive_after {
            tokio::spawn(watchdog(Arc::downgrade(&shared), after));
        }
        shared
    }

    /// Something came from the host, or went to it that it was waiting for
    /// (`busy` counts what the host now waits for the local side to do).
    fn heard(&self, busy: isize) {
        let Some(quiet) = &self.quiet else {
            return;
        };
        let mut quiet = quiet.lock().expect("quiet lock");
        quiet.since = std::time::Instant::now();
        quiet.local_busy = quiet.local_busy.saturating_add_signed(busy);
    }

    /// Sends `op` and waits for its reply.
    pub(super) async fn request(&self, op: Op) -> Result<Reply, Error> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let message = ClientMessage::Request { id, op };
        // Refused here, with the reason, and the session goes on: a frame
        // past the limit would end the link (the peer cannot read it).
        let size = postcard::experimental::serialized_size(&message)
            .map_err(|e| Error::BadArgument(format!("cannot encode the request: {e}")))?;
        if size > self.config.max_frame {
            return Err(Error::BadArgument(format!(
                "the request is {size} bytes; a message is at most {} bytes \
                 (send large data in pieces, or as a file: putfile)",
                self.config.max_frame
            )));
        }
        let (tx, mut rx) = oneshot::channel();
        self.pending.lock().expect("pending lock").insert(id, tx);
        self.send_releases();
        if !self.send(message) {
            self.pending.lock().expect("pending lock").remove(&id);
            return Err(Error::Closed(self.closed_reason()));
        }
        let result = match wait_briefly(&mut rx, self.spin).await {
            Brief::Arrived(result) => Some(result),
            Brief::Closed => None,
            Brief::Nothing => rx.await.ok(),
        };
        match result {
            Some(Ok(reply)) => Ok(reply),
            Some(Err(failure)) => Err(failure.into()),
            None => Err(Error::Closed(self.closed_reason())),
        }
    }

    pub(super) fn closed_reason(&self) -> CloseReason {
        self.closed
            .lock()
            .expect("closed lock")
            .clone()
            .unwrap_or(CloseReason::SessionEnded)
    }

    /// Waits, at most `limit`, until the session's side has gone: after a
    /// close, until it has finished (its interpreter shut down, its scratch
    /// directory removed, a `local:` child exited).
    pub(super) async fn wait_ended(&self, limit: Duration) {
        let mut ended = self.ended.clone();
        let _ = tokio::time::timeout(limit, async { while ended.changed().await.is_ok() {} }).await;
    }

    pub(super) fn close(&self, reason: CloseReason) {
        // Dropping the sender ends the session on the other side.
        self.outbound.lock().expect("outbound lock").take();
        self.closed
            .lock()
            .expect("closed lock")
            .get_or_insert(reason);
        // Wake every waiter: their senders drop, they see `Closed`.
        self.pending.lock().expect("pending lock").clear();
    }

    pub(crate) fn send(&self, message: ClientMessage) -> bool {
        match &message {
            ClientMessage::Request { .. } => self.heard(0),
            ClientMessage::CallbackReply { .. } | ClientMessage::Input(_) => self.heard(-1),
            _ => {}
        }
        match &*self.outbound.lock().expect("outbound lock") {
            Some(outbound) => outbound.send(message).is_ok(),
            None => false,
        }
    }

    pub(crate) fn send_releases(&self) {
        let batch = std::mem::take(&mut *self.releases.lock().expect("release lock"));
        if !batch.is_empty() {
            self.send(ClientMessage::Release(batch));
        }
    }

    /// Called by the last drop of a handle: queue its release.
    pub(crate) fn forget_handle(&self, id: u64, inner: *const HandleInner, count: u32) {
        {
            let mut handles = self.handles.lock().expect("handle lock");
            // Only remove the entry if it is ours: a re-send of the same id may
            // already have created a newer handle.
            if handles
                .get(&id)
                .is_some_and(|weak| std::ptr::eq(weak.as_ptr(), inner))
            {
                handles.remove(&id);
            }
        }
        if count == 0 {
            // A cached module's handle: the cache keeps the guest's count.
            return;
        }
        let entry = ReleaseEntry { id, count };
        if self.config.gc_interval.is_zero() {
            self.send(ClientMessage::Release(vec![entry]));
        } else {
            self.releases.lock().expect("release lock").push(entry);
        }
    }

    /// A handle for an id the guest sent: the live one, or a new one.
    pub(super) fn adopt(self: &Arc<Self>, info: HandleInfo) -> RemoteObject {
        self.handle_for(info, 1)
    }

    /// A handle for a cached module: the live one, or a new one that owns
    /// no guest count of its own.
    pub(super) fn adopt_cached(self: &Arc<Self>, info: HandleInfo) -> RemoteObject {
        self.handle_for(info, 0)
    }

    /// The live handle for `info.id` counting `sends` more guest counts, or
    /// a new handle owning `sends`.
    pub(super) fn handle_for(self: &Arc<Self>, info: HandleInfo, sends: u32) -> RemoteObject {
        let mut handles = self.handles.lock().expect("handle lock");
        if let Some(inner) = handles.get(&info.id).and_then(Weak::upgrade) {
            inner.received.fetch_add(sends, Ordering::Relaxed);
            return RemoteObject { inner };
        }
        let inner = Arc::new(HandleInner {
            id: info.id,
            type_name: info.type_name,
            opmask: info.opmask,
            received: AtomicU32::new(sends),
            shared: self.clone(),
        });
        handles.insert(info.id, Arc::downgrade(&inner));
        RemoteObject { inner }
    }

    pub(crate) fn reply_value(self: &Arc<Self>, reply: Reply) -> Result<Value, Error> {
        match reply {
            Reply::Ok(value) => self.value_from_wire(value),
            Reply::Error(mut info) => {
                let exception = info.exception.take().map(|h| self.adopt(h));
                Err(Error::from_python(info, exception))
            }
        }
    }

    /// The value a reply's nodes describe, adopting the handles in it.
    pub(crate) fn value_from_wire(self: &Arc<Self>, value: WireValue) -> Result<Value, Error> {
        super::tree::build(value, |info| Value::Object(self.adopt(info)))
    }

    /// Encodes a value; counts the callbacks it carries as sent.
    pub(crate) fn encode_value<T: Serialize + ?Sized>(
        &self,
        value: &T,
        how: fn(&T, u64) -> Result<Encoding, EncodeError>,
    ) -> Result<WireValue, Error> {
        let encoding = how(value, self.uid).map_err(|e| Error::BadArgument(e.0))?;
        self.callbacks.count_sent(&encoding.callbacks);
        Ok(WireValue(encoding.nodes))
    }

    pub(crate) fn encode_kwargs<K: Serialize + ?Sized>(&self, kwargs: &K) -> Result<Kwargs, Error> {
        let encoding = encode(kwargs, self.uid).map_err(|e| Error::BadArgument(e.0))?;
        let kwargs = split_kwargs(encoding.nodes).map_err(|e| Error::BadArgument(e.0))?;
        self.callbacks.count_sent(&encoding.callbacks);
        Ok(kwargs)
    }

    /// Answers the guest's read of stdin, without holding up the dispatcher.
    pub(super) fn read_input(self: &Arc<Self>, max: u32) {
        match self.config.input {
            InputMode::Closed => {
                self.send(ClientMessage::Input(Vec::new()));
            }
            InputMode::Inherit => {
                let shared = Arc::downgrade(self);
                tokio::spawn(async move {
                    use tokio::io::AsyncReadExt;
                    let mut data = vec![0u8; max.clamp(1, 64 * 1024) as usize];
                    // A read error is the end of input, as for python3.
                    let got = tokio::io::stdin().read(&mut data).await.unwrap_or(0);
                    data.truncate(got);
                    if let Some(shared) = shared.upgrade() {
                        shared.send(ClientMessage::Input(data));
                    }
                });
            }
        }
    }

    pub(super) fn deliver_output(&self, stream: OutputStream, data: Vec<u8>) {
        use std::io::Write;
        let sink = self.output.lock().expect("output lock");
        match &*sink {
            OutputSink::Print => {
                // Output of a sandbox must not be able to kill us (EPIPE, a
                // full disk): the first failure is kept for the caller, and
                // with `stop_on_output_error` the running call is stopped,
                // as python3 dies of its BrokenPipeError.
                let written = match stream {
                    OutputStream::Stdout => {
                        let mut out = std::io::stdout().lock();
                        out.write_all(&data).and_then(|_| out.flush())
                    }
                    OutputStream::Stderr => std::io::stderr().lock().write_all(&data),
                };
                if let Err(error) = written {
                    let mut first = self.output_error.lock().expect("output error lock");
                    if first.is_none() {
                        *first = Some(error);
                        if self.config.stop_on_output_error {
                            self.send(ClientMessage::Interrupt);
                        }
                    }
                }
            }
            OutputSink::Capture(tx, _) => {
                let _ = tx.send(OutputChunk { stream, data });
            }
            OutputSink::Discard => {}
        }
    }
}

/// What [`wait_briefly`] saw.
enum Brief<T> {
    Arrived(T),
    /// The sender was dropped: no reply will come (the receiver must not be
    /// polled again, it has completed).
    Closed,
    /// Nothing yet.
    Nothing,
}

/// Polls `rx` for up to `spin`, letting the runtime's other tasks (the
/// reader, the dispatcher) run and its I/O driver poll between tries; see
/// [`crate::transport::spin`].
async fn wait_briefly<T>(rx: &mut oneshot::Receiver<T>, spin: Duration) -> Brief<T> {
    if spin.is_zero() {
        return Brief::Nothing;
    }
    let Some(_permit) = crate::transport::spin::permit() else {
        return Brief::Nothing;
    };
    let started = std::time::Instant::now();
    loop {
        match rx.try_recv() {
            Ok(value) => return Brief::Arrived(value),
            Err(oneshot::error::TryRecvError::Closed) => return Brief::Closed,
            Err(oneshot::error::TryRecvError::Empty) => {}
        }
        let spun = started.elapsed();
        if spun >= spin {
            return Brief::Nothing;
        }
        if spun >= crate::transport::spin::YIELD_AFTER {
            // A peer sharing this CPU gets to run.
            std::thread::yield_now();
        }
        // Lets the runtime poll its I/O driver and run the reader.
        tokio::task::yield_now().await;
    }
}

/// Routes everything the session sends until it goes away.
async fn dispatch(
    shared: Weak<Shared>,
    mut inbound: mpsc::UnboundedReceiver<Inbound>,
    // Dropped when this task ends, whichever way: `Shared::wait_ended`.
    _ended: tokio::sync::watch::Sender<()>,
) {
    while let Some(message) = inbound.recv().await {
        let Some(shared) = shared.upgrade() else {
            return;
        };
        let message = match message {
            Ok(message) => message,
            Err(error) => {
                shared.close(CloseReason::Transport(Arc::new(error)));
                return;
            }
        };
        let busy = matches!(
            message,
            ServerMessage::CallLocal { .. } | ServerMessage::InputRequest { .. }
        );
        shared.heard(isize::from(busy));
        match message {
            ServerMessage::Response { id, result } => {
                let waiter = shared.pending.lock().expect("pending lock").remove(&id);
                if let Some(waiter) = waiter
                    && let Err(Ok(reply)) = waiter.send(result)
                {
                    // The caller gave up: adopt and drop the handles so the
                    // guest's counts are released.
                    drop(shared.reply_value(reply));
                }
            }
            ServerMessage::Output { stream, data } => shared.deliver_output(stream, data),
            ServerMessage::CallLocal {
                call,
                callback,
                args,
                kwargs,
            } => super::callback::run(&shared, call, callback, args, kwargs),
            ServerMessage::ReleaseLocal(entries) => shared.callbacks.release(&entries),
            ServerMessage::InputRequest { max } => shared.read_input(max),
            ServerMessage::Hello { .. } | ServerMessage::Welcome => {
                tracing::debug!("handshake message after the handshake; ignored");
            }
            ServerMessage::Refused(refusal) => {
                shared.close(CloseReason::Refused(refusal));
                return;
            }
        }
    }
    if let Some(shared) = shared.upgrade() {
        shared.close(CloseReason::SessionEnded);
    }
}

/// Closes the connection when the host has been silent for `after` while a
/// request waits on it ([`ConnectionConfig::unresponsive_after`]).
async fn watchdog(shared: Weak<Shared>, after: Duration) {
    let every = (after / 4).clamp(Duration::from_millis(50), Duration::from_secs(1));
    loop {
        tokio::time::sleep(every).await;
        let Some(shared) = shared.upgrade() else {
            return;
        };
        if shared.closed.lock().expect("closed lock").is_some() {
            return;
        }
        let silent = shared.quiet.as_ref().and_then(|quiet| {
            let quiet = quiet.lock().expect("quiet lock");
            (quiet.local_busy == 0).then(|| quiet.since.elapsed())
        });
        let waiting = !shared.pending.lock().expect("pending lock").is_empty();
        if waiting && silent.is_some_and(|silent| silent > after) {
            tracing::warn!(?after, "the host is unresponsive; closing the connection");
            shared.close(CloseReason::Unresponsive { after });
            return;
        }
    }
}

async fn release_timer(shared: Weak<Shared>, every: Duration) {
    let mut ticker = tokio::time::interval(every);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticker.tick().await;
    loop {
        ticker.tick().await;
        match shared.upgrade() {
            Some(shared) => shared.send_releases(),
            None => return,
        }
    }
}
