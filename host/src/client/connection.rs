//! The connection: request ids and replies, handle bookkeeping, batched
//! releases, output events and local callbacks.
//!
//! A `Connection` is a cheap `Clone` over shared state. Callers put their
//! request on the outbound channel themselves (no hop through a task); one
//! dispatch task reads the inbound side and routes replies, output and
//! callback calls.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use serde::Serialize;
use tokio::sync::{mpsc, oneshot};

use super::callback::{Callback, CallbackRegistry};
use super::object::{HandleInner, RemoteObject};
use super::value::{EncodeError, Encoding, MAX_DEPTH, encode, split_kwargs};
use super::{Error, Value};
use crate::protocol::{
    ClientMessage, Failure, HandleInfo, Kwargs, Node, Op, OutputStream, ReleaseEntry, Reply,
    RequestedLimits, ServerMessage, WireValue,
};

static NEXT_CONNECTION_UID: AtomicU64 = AtomicU64::new(1);

/// Settings of a connection.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct ConnectionConfig {
    /// How often dropped handles are released in one batch message. Default:
    /// 5 s, as in Pushy; releases also ride on the next request. Zero sends
    /// each release at once.
    pub gc_interval: Duration,
    /// Where remote stdout/stderr go. Default: [`OutputMode::Print`].
    pub output: OutputMode,
    /// Largest frame accepted from the host. Default: 257 MiB.
    pub max_frame: usize,
    /// Token file for `daemon:` targets. Default: `$PUSHY_TOKEN_FILE`.
    pub token_file: Option<PathBuf>,
    /// Speak TLS to `daemon:` targets, trusting the CA certificate(s) in
    /// this PEM file. Default: plain TCP.
    pub tls_ca: Option<PathBuf>,
    /// The `pushy` program that `local:` starts. Default:
    /// `$PUSHY_HOST_PROGRAM`, else this executable if it is `pushy`, else
    /// `pushy` on PATH.
    pub host_program: Option<PathBuf>,
    /// Extra arguments for `pushy host --stdio` started by `local:` and
    /// `ssh:` (e.g. `--memory 64`).
    pub host_args: Vec<String>,
    /// Extra arguments for `ssh` (e.g. `-i KEY`, `-o Option=value`).
    pub ssh_options: Vec<String>,
    /// Where `ssh:` targets keep pushed binaries, as the remote shell
    /// expands it. Default: `$HOME/.cache/pushy/bin`.
    pub ssh_remote_dir: String,
    /// What the session's code reads as stdin. Default: [`InputMode::Closed`].
    pub input: InputMode,
    /// With [`OutputMode::Print`], interrupt the running call (ending the
    /// session) when its output cannot be written, as a command-line tool
    /// whose stdout was closed should stop. Default: false.
    pub stop_on_output_error: bool,
    /// Limits to ask the host for: each only tightens the host's own (a
    /// daemon's, or those `host_args` give a `local:`/`ssh:` host; for
    /// `embedded:`, the sandbox's). Default: none asked.
    pub limits: RequestedLimits,
    /// How long the host may take to answer the handshake. Default: `None`,
    /// meaning 20 s for `daemon:` and 120 s for `local:` and `ssh:` (whose
    /// host may first compile the sandbox or receive its binary).
    pub handshake_timeout: Option<Duration>,
}

impl Default for ConnectionConfig {
    fn default() -> Self {
        ConnectionConfig {
            gc_interval: Duration::from_secs(5),
            output: OutputMode::Print,
            max_frame: crate::transport::DEFAULT_MAX_FRAME,
            token_file: None,
            tls_ca: None,
            host_program: None,
            host_args: Vec::new(),
            ssh_options: Vec::new(),
            ssh_remote_dir: "$HOME/.cache/pushy/bin".to_owned(),
            input: InputMode::Closed,
            stop_on_output_error: false,
            limits: RequestedLimits::default(),
            handshake_timeout: None,
        }
    }
}

/// What the session's code reads as stdin.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum InputMode {
    /// Nothing: reads are at end of input at once.
    #[default]
    Closed,
    /// This process's stdin, streamed as the code reads it (at most 64 KiB
    /// a read); end of input when it closes.
    Inherit,
}

/// Where remote output goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum OutputMode {
    /// Written to this process's stdout/stderr as it arrives.
    Print,
    /// Queued for [`Connection::take_output`].
    Capture,
    /// Dropped.
    Discard,
}

/// A chunk of remote output.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutputChunk {
    /// stdout or stderr.
    pub stream: OutputStream,
    /// The bytes, in the order they were written.
    pub data: Vec<u8>,
}

type ReplySender = oneshot::Sender<Result<Reply, Failure>>;

/// What a transport hands the connection: a message, or why it stopped.
pub(crate) type Inbound = Result<ServerMessage, String>;

pub(crate) struct Shared {
    /// Distinguishes this connection's handles from another's.
    pub(crate) uid: u64,
    /// `None` once closed.
    outbound: Mutex<Option<mpsc::UnboundedSender<ClientMessage>>>,
    next_id: AtomicU64,
    pending: Mutex<HashMap<u64, ReplySender>>,
    /// Live handles by id; weak, so a handle's last drop frees it.
    handles: Mutex<HashMap<u64, Weak<HandleInner>>>,
    releases: Mutex<Vec<ReleaseEntry>>,
    pub(crate) callbacks: CallbackRegistry,
    /// Modules imported through [`Modules`]: each owns one guest count that
    /// is never released (the module lives in `sys.modules` anyway), so a
    /// second `modules().import()` of it needs no round trip.
    modules: Mutex<HashMap<String, HandleInfo>>,
    output: Mutex<OutputSink>,
    closed: Mutex<Option<String>>,
    /// The first failure to write remote output to this process's stdout or
    /// stderr ([`OutputMode::Print`]).
    output_error: Mutex<Option<std::io::Error>>,
    /// How long a caller polls for its reply before it sleeps.
    spin: Duration,
    config: ConnectionConfig,
}

enum OutputSink {
    Print,
    Capture(
        mpsc::UnboundedSender<OutputChunk>,
        Option<mpsc::UnboundedReceiver<OutputChunk>>,
    ),
    Discard,
}

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
    /// Wraps a message channel pair to a session; spawns the dispatch task
    /// on the current tokio runtime.
    pub(crate) fn start(
        outbound: mpsc::UnboundedSender<ClientMessage>,
        inbound: mpsc::UnboundedReceiver<Inbound>,
        config: ConnectionConfig,
    ) -> Connection {
        let output = match config.output {
            OutputMode::Print => OutputSink::Print,
            OutputMode::Capture => {
                let (tx, rx) = mpsc::unbounded_channel();
                OutputSink::Capture(tx, Some(rx))
            }
            OutputMode::Discard => OutputSink::Discard,
        };
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
        });
        tokio::spawn(dispatch(Arc::downgrade(&shared), inbound));
        if !shared.config.gc_interval.is_zero() {
            tokio::spawn(release_timer(
                Arc::downgrade(&shared),
                shared.config.gc_interval,
            ));
        }
        Connection { shared }
    }

    /// Sends `op` and waits for its reply.
    pub(crate) async fn request(&self, op: Op) -> Result<Reply, Error> {
        let shared = &self.shared;
        let id = shared.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, mut rx) = oneshot::channel();
        shared.pending.lock().expect("pending lock").insert(id, tx);
        shared.send_releases();
        if !shared.send(ClientMessage::Request { id, op }) {
            shared.pending.lock().expect("pending lock").remove(&id);
            return Err(Error::Closed(shared.closed_reason()));
        }
        let result = match wait_briefly(&mut rx, shared.spin).await {
            Brief::Arrived(result) => Some(result),
            Brief::Closed => None,
            Brief::Nothing => rx.await.ok(),
        };
        match result {
            Some(Ok(reply)) => Ok(reply),
            Some(Err(failure)) => Err(failure.into()),
            None => Err(Error::Closed(shared.closed_reason())),
        }
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

    /// Local callbacks still registered (held locally or by the guest).
    pub fn live_callbacks(&self) -> usize {
        self.shared.callbacks.len()
    }

    /// Sends the queued releases now instead of at the next interval.
    pub fn flush_releases(&self) {
        self.shared.send_releases();
    }

    /// Takes the captured output (with [`OutputMode::Capture`]; otherwise
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
    /// stderr, if any ([`OutputMode::Print`]; such output is dropped).
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
        self.shared.close("closed by the local side");
        Ok(())
    }
}

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

impl Shared {
    fn closed_reason(&self) -> String {
        self.closed
            .lock()
            .expect("closed lock")
            .clone()
            .unwrap_or_else(|| "the session ended".to_owned())
    }

    fn close(&self, reason: &str) {
        // Dropping the sender ends the session on the other side.
        self.outbound.lock().expect("outbound lock").take();
        self.closed
            .lock()
            .expect("closed lock")
            .get_or_insert_with(|| reason.to_owned());
        // Wake every waiter: their senders drop, they see `Closed`.
        self.pending.lock().expect("pending lock").clear();
    }

    pub(crate) fn send(&self, message: ClientMessage) -> bool {
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
    fn adopt(self: &Arc<Self>, info: HandleInfo) -> RemoteObject {
        self.handle_for(info, 1)
    }

    /// A handle for a cached module: the live one, or a new one that owns
    /// no guest count of its own.
    fn adopt_cached(self: &Arc<Self>, info: HandleInfo) -> RemoteObject {
        self.handle_for(info, 0)
    }

    /// The live handle for `info.id` counting `sends` more guest counts, or
    /// a new handle owning `sends`.
    fn handle_for(self: &Arc<Self>, info: HandleInfo, sends: u32) -> RemoteObject {
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

    /// Builds a value tree from pre-order nodes without recursion.
    pub(crate) fn value_from_wire(self: &Arc<Self>, value: WireValue) -> Result<Value, Error> {
        enum Frame {
            Seq(fn(Vec<Value>) -> Value, usize, Vec<Value>),
            Dict(usize, Vec<Value>),
        }
        let mut stack: Vec<Frame> = Vec::new();
        let mut nodes = value.0.into_iter();
        loop {
            let node = nodes
                .next()
                .ok_or_else(|| Error::Protocol("value ends inside a container".into()))?;
            let mut finished = match node {
                Node::None => Value::None,
                Node::Bool(b) => Value::Bool(b),
                Node::Int(i) => Value::Int(i),
                Node::BigInt(s) => Value::BigInt(s),
                Node::Float(f) => Value::Float(f),
                Node::Str(s) => Value::Str(s),
                Node::Bytes(b) => Value::Bytes(b),
                Node::Handle(info) => Value::Object(self.adopt(info)),
                Node::Object(_) | Node::Callback(_) => {
                    return Err(Error::Protocol("reference node in a reply".into()));
                }
                Node::Tuple(n)
                | Node::List(n)
                | Node::Set(n)
                | Node::FrozenSet(n)
                | Node::Dict(n) => {
                    if stack.len() >= MAX_DEPTH {
                        return Err(Error::Protocol(format!(
                            "value nested deeper than {MAX_DEPTH}"
                        )));
                    }
                    let n = n as usize;
                    // Capacity is bounded by what actually arrived, not by the claim.
                    let cap = n.min(nodes.len());
                    let frame = match node {
                        Node::Tuple(_) => Frame::Seq(Value::Tuple, n, Vec::with_capacity(cap)),
                        Node::List(_) => Frame::Seq(Value::List, n, Vec::with_capacity(cap)),
                        Node::Set(_) => Frame::Seq(Value::Set, n, Vec::with_capacity(cap)),
                        Node::FrozenSet(_) => {
                            Frame::Seq(Value::FrozenSet, n, Vec::with_capacity(cap))
                        }
                        _ => Frame::Dict(n.saturating_mul(2), Vec::with_capacity(cap)),
                    };
                    stack.push(frame);
                    // Close containers that are complete (possibly empty).
                    match close_complete(&mut stack) {
                        Some(v) => v,
                        None => continue,
                    }
                }
            };
            // Add `finished` to its parent, closing parents as they complete.
            loop {
                match stack.last_mut() {
                    None => {
                        if nodes.next().is_some() {
                            return Err(Error::Protocol("trailing nodes after value".into()));
                        }
                        return Ok(finished);
                    }
                    Some(Frame::Seq(_, _, items)) | Some(Frame::Dict(_, items)) => {
                        items.push(finished)
                    }
                }
                match close_complete(&mut stack) {
                    Some(v) => finished = v,
                    None => break,
                }
            }
        }

        fn close_complete(stack: &mut Vec<Frame>) -> Option<Value> {
            let complete = match stack.last()? {
                Frame::Seq(_, n, items) => items.len() >= *n,
                Frame::Dict(n, items) => items.len() >= *n,
            };
            if !complete {
                return None;
            }
            Some(match stack.pop()? {
                Frame::Seq(make, _, items) => make(items),
                Frame::Dict(_, items) => {
                    let mut pairs = Vec::with_capacity(items.len() / 2);
                    let mut iter = items.into_iter();
                    while let (Some(k), Some(v)) = (iter.next(), iter.next()) {
                        pairs.push((k, v));
                    }
                    Value::Dict(pairs)
                }
            })
        }
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
    fn read_input(self: &Arc<Self>, max: u32) {
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

    fn deliver_output(&self, stream: OutputStream, data: Vec<u8>) {
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
async fn dispatch(shared: Weak<Shared>, mut inbound: mpsc::UnboundedReceiver<Inbound>) {
    while let Some(message) = inbound.recv().await {
        let Some(shared) = shared.upgrade() else {
            return;
        };
        let message = match message {
            Ok(message) => message,
            Err(reason) => {
                shared.close(&reason);
                return;
            }
        };
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
            ServerMessage::Refused { reason } => {
                shared.close(&format!("refused by the server: {reason}"));
                return;
            }
        }
    }
    if let Some(shared) = shared.upgrade() {
        shared.close("the session ended");
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
