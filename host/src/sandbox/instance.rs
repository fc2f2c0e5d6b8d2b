//! One guest instance: its `Store`, limits, and the host side of the WIT
//! imports (output, and the callback trampoline).
//!
//! Over 500 lines because the store's state, its limiter and the host
//! imports all read and write the same per-call fields (deadline, output
//! left, memory denied); split apart they would need those fields public
//! across modules.

use std::time::{Duration, Instant};

use wasmtime::component::ResourceTable;
use wasmtime::{Engine, ResourceLimiter, Store, UpdateDeadline};
use wasmtime_wasi::{DirPerms, FilePerms, WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

use super::bindings::{self, Agent, AgentPre, host, wit};
use super::latin1;
use super::scratch::{self, ScratchDir, ScratchState, ScratchView};
use super::{MountError, SandboxError, SessionConfig, boxed};
use crate::protocol::{
    ClientMessage, Failure, Inbound, MAX_VALUE_BYTES, MAX_VALUE_NODES, Op, OutputStream,
    ReleaseEntry, Reply, ServerMessage,
};

/// Bytes the guest may hand the host in one call (wasmtime's default is
/// 128 MiB): a value of the largest payload the guest sends
/// ([`MAX_VALUE_BYTES`]) and of the most nodes ([`MAX_VALUE_NODES`], 32 bytes
/// each in the canonical ABI) must fit.
const HOSTCALL_FUEL: usize = MAX_VALUE_BYTES + MAX_VALUE_NODES * 32 + (16 << 20);

/// Most bytes of stdin asked for in one message.
const MAX_INPUT_READ: u32 = 64 * 1024;

/// How a session talks to its local side: messages in, messages out.
///
/// The callback trampoline needs to block for the next inbound message while
/// the guest waits inside an import, so `recv` is blocking.
pub(crate) trait SessionLink: Send {
    /// The next message, or `None` when the local side has gone.
    fn recv(&mut self) -> Option<ClientMessage>;
    /// Sends a message; `false` when the local side has gone.
    fn send(&mut self, message: ServerMessage) -> bool;
    /// Checks, without blocking, whether the local side asked to interrupt
    /// the running call (or is gone). Other messages are kept for `recv`.
    /// Called every epoch tick while the guest runs.
    fn poll_interrupt(&mut self) -> bool {
        false
    }
}

/// What the trampoline owes a nested request once the guest replies.
enum Owed {
    Request(u64),
    Release,
}

/// A nested request the guest is handling, and the clock of the request it
/// is inside: each request has a time limit of its own, and the time a
/// nested one takes is the local side's for the one it is inside (it comes
/// from a callback, like the callback's own time).
struct Nested {
    owed: Owed,
    /// `call_started` and `waited` of the request it is inside.
    outer: (Instant, Duration),
}

/// Store data of one instance.
pub(crate) struct HostState {
    wasi: WasiCtx,
    table: ResourceTable,
    limiter: MemoryLimiter,
    /// Calls to local callbacks in progress, innermost last.
    callbacks: Vec<u64>,
    next_call: u64,
    /// Nested requests the guest is handling, innermost last.
    nested: Vec<Nested>,
    output_limit: usize,
    output_used: usize,
    /// Whether this call was told its output was cut.
    output_cut_noticed: bool,
    time_limit: Option<Duration>,
    /// When the running request (the innermost nested one, if any) started.
    call_started: Instant,
    /// Time of the running request spent waiting on the local side.
    waited: Duration,
    time_limit_hit: bool,
    interrupted: bool,
    /// The local side's stdin ended: further reads are at its end at once.
    input_ended: bool,
    /// Releases that arrived while the guest was reading stdin.
    deferred_releases: Vec<ReleaseEntry>,
    /// The status `os._exit` was called with.
    exit_status: Option<i32>,
    /// The session is shutting down: the link is gone, not interrupting.
    finishing: bool,
    /// The limit on the scratch directory, and the descriptors inside it.
    scratch: ScratchState,
    /// Removes the session's scratch directory when the state is dropped
    /// (after the descriptors into it are closed).
    _scratch_dir: ScratchDir,
    /// Dropped last: the local side sees the session end only once all of
    /// it is gone, its scratch directory included.
    pub(super) link: Box<dyn SessionLink>,
}

/// Denies growth past the session's memory limit and remembers that it did.
struct MemoryLimiter {
    limit: usize,
    denied: bool,
    /// The largest size asked for and denied.
    largest_denied: usize,
}

impl ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.limit {
            self.denied = true;
            self.largest_denied = self.largest_denied.max(desired);
            return Ok(false);
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= 1_000_000)
    }
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl wit::Host for HostState {}

impl HostState {
    /// The filesystem host the guest sees: wasmtime-wasi's, with the
    /// scratch directory's limit.
    pub(super) fn scratch_view(&mut self) -> ScratchView<'_> {
        ScratchView {
            fs: wasmtime_wasi::filesystem::WasiFilesystemCtxView {
                ctx: self.wasi.filesystem(),
                table: &mut self.table,
            },
            state: &mut self.scratch,
        }
    }

    /// The resource table wasmtime-wasi keeps its handles in.
    pub(super) fn resource_table(&mut self) -> &mut ResourceTable {
        &mut self.table
    }

    /// An error (which ends the call, like an epoch deadline) when the local
    /// side interrupted or went away while the guest was blocked.
    pub(super) fn check_link(&mut self) -> wasmtime::Result<()> {
        if !self.finishing && self.link.poll_interrupt() {
            self.interrupted = true;
            return Err(wasmtime::format_err!(
                "interrupted while blocked in a host call"
            ));
        }
        Ok(())
    }

    /// How long the guest may block in a host call before the host looks
    /// again: at most `slice`, never past the call's deadline. An error (which
    /// ends the call, like an epoch deadline) when the time is up.
    pub(super) fn blocking_slice(&mut self, slice: Duration) -> wasmtime::Result<Duration> {
        let Some(limit) = self.time_limit else {
            return Ok(slice);
        };
        let used = self.call_started.elapsed().saturating_sub(self.waited);
        match limit.checked_sub(used) {
            Some(left) if !left.is_zero() => Ok(left.min(slice)),
            _ => {
                self.time_limit_hit = true;
                Err(wasmtime::format_err!(
                    "time limit reached while blocked in a host call"
                ))
            }
        }
    }

    fn send(&mut self, message: ServerMessage) -> wasmtime::Result<()> {
        if self.link.send(message) {
            Ok(())
        } else {
            Err(wasmtime::format_err!("the local side went away"))
        }
    }

    /// Bytes of output the current call may still produce.
    fn output_room(&self) -> usize {
        self.output_limit.saturating_sub(self.output_used)
    }

    /// Output was cut: says so, once per call.
    fn output_cut(&mut self) -> wasmtime::Result<()> {
        if self.output_cut_noticed {
            return Ok(());
        }
        self.output_cut_noticed = true;
        self.output_used = self.output_limit;
        let notice = format!(
            "\n[pushy: output limit of {} bytes reached; further output of this call discarded]\n",
            self.output_limit
        );
        self.send(ServerMessage::Output {
            stream: OutputStream::Stderr,
            data: notice.into_bytes(),
        })
    }

    /// An exception's text is output too (the local side prints it): it is
    /// cut to what the call may still print, the rest said by a notice.
    fn limit_error_text(&mut self, reply: &mut Reply) {
        let Reply::Error(info) = reply else {
            return;
        };
        // The interpreter's own MemoryError (no message) after the limiter
        // refused memory in this call came from the limit; one raised with a
        // message came from code, even after a refusal it caught.
        info.memory_limit_hit = self.limiter.denied && info.message.is_empty();
        let room = self.output_room();
        let mut cut = false;
        for text in [&mut info.message, &mut info.traceback] {
            if text.len() > room {
                text.truncate(text.floor_char_boundary(room));
                text.push_str("\n[pushy: cut at the output limit]\n");
                cut = true;
            }
        }
        if cut {
            self.output_used = self.output_limit;
        }
    }

    /// A nested request starts: the waiting so far is the local side's time
    /// of the request it is inside, whose clock stops until it ends.
    fn start_nested(&mut self, owed: Owed, waiting_since: Instant) {
        self.waited += waiting_since.elapsed();
        self.nested.push(Nested {
            owed,
            outer: (self.call_started, self.waited),
        });
        self.call_started = Instant::now();
        self.waited = Duration::ZERO;
    }

    /// A nested request ended: the request it was inside runs on, the whole
    /// nested request counted as waiting on the local side.
    fn end_nested(&mut self) -> Option<Owed> {
        let Nested {
            owed,
            outer: (started, waited),
        } = self.nested.pop()?;
        let nested = self.call_started.elapsed();
        self.call_started = started;
        self.waited = waited + nested;
        Some(owed)
    }

    /// Blocks until the local side answers the innermost callback or sends
    /// something the guest must handle first.
    fn wait_inbound(&mut self) -> wasmtime::Result<wit::Inbound> {
        let started = Instant::now();
        let inbound = loop {
            match self.link.recv() {
                None => {
                    return Err(wasmtime::format_err!(
                        "the local side went away during a callback"
                    ));
                }
                Some(ClientMessage::Request { id, op }) => {
                    self.start_nested(Owed::Request(id), started);
                    return Ok(bindings::inbound_to_wit(Inbound::Request(op)));
                }
                Some(ClientMessage::Release(entries)) => {
                    self.start_nested(Owed::Release, started);
                    return Ok(bindings::inbound_to_wit(Inbound::Request(Op::Release(
                        entries,
                    ))));
                }
                Some(ClientMessage::Interrupt) => {
                    self.interrupted = true;
                    return Err(wasmtime::format_err!("interrupted during a callback"));
                }
                Some(
                    ClientMessage::Hello { .. }
                    | ClientMessage::AuthProof { .. }
                    | ClientMessage::Limits(_)
                    | ClientMessage::Input(_),
                ) => {
                    tracing::debug!("handshake message inside a session; ignored");
                }
                Some(ClientMessage::CallbackReply { call, reply }) => {
                    if self.callbacks.last() == Some(&call) {
                        self.callbacks.pop();
                        break Inbound::Done(reply);
                    }
                    tracing::debug!(call, "reply to a callback nobody waits for; ignored");
                }
            }
        };
        self.waited += started.elapsed();
        Ok(bindings::inbound_to_wit(inbound))
    }
}

impl host::Host for HostState {
    fn emit_output(&mut self, stream: u8, data: String) -> wasmtime::Result<()> {
        let mut data = latin1::to_bytes(data);
        let stream = if stream == 2 {
            OutputStream::Stderr
        } else {
            OutputStream::Stdout
        };
        if data.is_empty() {
            return Ok(());
        }
        let room = self.output_room();
        let cut = data.len() > room;
        data.truncate(room);
        if !data.is_empty() {
            self.output_used += data.len();
            self.send(ServerMessage::Output { stream, data })?;
        }
        if cut {
            self.output_cut()?;
        }
        Ok(())
    }

    fn call_local(
        &mut self,
        callback: u64,
        args: Vec<wit::NodeResult>,
        kwargs: Vec<(String, Vec<wit::NodeResult>)>,
    ) -> wasmtime::Result<wit::Inbound> {
        let call = self.next_call;
        self.next_call += 1;
        self.send(ServerMessage::CallLocal {
            call,
            callback,
            args: bindings::value_from_wit(args),
            kwargs: bindings::kwargs_from_wit(kwargs),
        })?;
        self.callbacks.push(call);
        self.wait_inbound()
    }

    fn resume(&mut self, reply: wit::Reply) -> wasmtime::Result<wit::Inbound> {
        match self.end_nested() {
            Some(Owed::Request(id)) => {
                let result = Ok(bindings::reply_from_wit(reply));
                self.send(ServerMessage::Response { id, result })?;
            }
            Some(Owed::Release) => {}
            None => {
                return Err(wasmtime::format_err!(
                    "guest resumed with no nested request"
                ));
            }
        }
        self.wait_inbound()
    }

    fn read_input(&mut self, max: u32) -> wasmtime::Result<Vec<u8>> {
        if self.input_ended {
            return Ok(Vec::new());
        }
        let max = max.clamp(1, MAX_INPUT_READ);
        self.send(ServerMessage::InputRequest { max })?;
        let started = Instant::now();
        let data = loop {
            match self.link.recv() {
                None => {
                    return Err(wasmtime::format_err!(
                        "the local side went away while the guest read stdin"
                    ));
                }
                Some(ClientMessage::Input(mut data)) => {
                    data.truncate(max as usize);
                    self.input_ended = data.is_empty();
                    break data;
                }
                Some(ClientMessage::Interrupt) => {
                    self.interrupted = true;
                    return Err(wasmtime::format_err!("interrupted while reading stdin"));
                }
                Some(ClientMessage::Release(entries)) => self.deferred_releases.extend(entries),
                Some(ClientMessage::Request { id, .. }) => {
                    let result = Err(Failure::BadRequest(
                        "the session is busy: its code is reading stdin".into(),
                    ));
                    self.send(ServerMessage::Response { id, result })?;
                }
                Some(_) => tracing::debug!("unexpected message while the guest reads stdin"),
            }
        };
        // Like a callback, waiting for the local side is not the guest's time.
        self.waited += started.elapsed();
        Ok(data)
    }

    fn exiting(&mut self, status: i32) -> wasmtime::Result<()> {
        self.exit_status = Some(status);
        Ok(())
    }

    fn release_local(&mut self, entries: Vec<wit::ReleaseEntry>) -> wasmtime::Result<()> {
        let entries = entries
            .into_iter()
            .map(|e| ReleaseEntry {
                id: e.id,
                count: e.count,
            })
            .collect();
        self.send(ServerMessage::ReleaseLocal(entries))
    }
}

/// An instance that could not be created, and the link it would have used
/// (so that the local side can be told why).
pub(crate) struct StartFailure {
    pub(crate) error: SandboxError,
    pub(crate) link: Box<dyn SessionLink>,
}

/// A session link that is never used: for checking that a session can start.
pub(crate) struct NoLink;

impl SessionLink for NoLink {
    fn recv(&mut self) -> Option<ClientMessage> {
        None
    }
    fn send(&mut self, _message: ServerMessage) -> bool {
        false
    }
}

/// A live guest instance. After a trap it is dead for good: every further
/// call fails with [`Failure::Terminated`].
pub(crate) struct Instance {
    store: Store<HostState>,
    agent: Agent,
    memory_limit: usize,
    dead: Option<String>,
}

impl Instance {
    pub(super) fn new(
        engine: &Engine,
        pre: &AgentPre<HostState>,
        config: &SessionConfig,
        link: Box<dyn SessionLink>,
    ) -> Result<Self, StartFailure> {
        Self::start(engine, config, link, |store| pre.instantiate(store))
    }

    /// A fresh instance made by `instantiate`, with the session's limits,
    /// mounts and python path.
    pub(super) fn start(
        engine: &Engine,
        config: &SessionConfig,
        link: Box<dyn SessionLink>,
        instantiate: impl FnOnce(&mut Store<HostState>) -> wasmtime::Result<Agent>,
    ) -> Result<Self, StartFailure> {
        let mut wasi = WasiCtxBuilder::new();
        // No environment, no arguments, no network: only what is asked for.
        wasi.allow_ip_name_lookup(false)
            .allow_tcp(false)
            .allow_udp(false)
            // A session runs on a thread of its own, never an async
            // runtime's: file operations run right there, without a hop to
            // tokio's blocking pool and back for every stat, open and read
            // (an import from a mount makes dozens).
            .allow_blocking_current_thread(true);
        let mounts = match config.python_path.mounts() {
            Ok(path_mounts) => [config.mounts.as_slice(), &path_mounts].concat(),
            Err(error) => {
                return Err(StartFailure {
                    error: error.into(),
                    link,
                });
            }
        };
        if let Err(error) = super::mounts::check(&mounts) {
            return Err(StartFailure {
                error: error.into(),
                link,
            });
        }
        for mount in &mounts {
            let (dir_perms, file_perms) = if mount.read_only {
                (DirPerms::READ, FilePerms::READ)
            } else {
                (DirPerms::all(), FilePerms::all())
            };
            if let Err(error) = wasi.preopened_dir(&mount.host, &mount.guest, dir_perms, file_perms)
            {
                let error = MountError::Open {
                    path: mount.host.clone(),
                    source: boxed(error),
                };
                return Err(StartFailure {
                    error: error.into(),
                    link,
                });
            }
        }
        let scratch_dir = match ScratchDir::create() {
            Ok(dir) => dir,
            Err(error) => return Err(StartFailure { error, link }),
        };
        // A `--dir` mount at /tmp or /dev takes the place of the scratch one.
        let mounted = |guest: &str| {
            config
                .mounts
                .iter()
                .any(|mount| mount.guest.trim_end_matches('/') == guest)
        };
        let with_tmp = !mounted(scratch::TMP_GUEST);
        let with_dev = !mounted(scratch::DEV_GUEST);
        let preopened = (if with_tmp {
            wasi.preopened_dir(
                scratch_dir.tmp(),
                scratch::TMP_GUEST,
                DirPerms::all(),
                FilePerms::all(),
            )
            .map(drop)
        } else {
            Ok(())
        })
        .and_then(|()| {
            if with_dev {
                wasi.preopened_dir(
                    scratch_dir.dev(),
                    scratch::DEV_GUEST,
                    DirPerms::READ,
                    FilePerms::READ,
                )
                .map(drop)
            } else {
                Ok(())
            }
        });
        if let Err(error) = preopened {
            let error = SandboxError::Scratch {
                path: scratch_dir.tmp(),
                source: std::io::Error::other(boxed(error)),
            };
            return Err(StartFailure { error, link });
        }
        let scratch = ScratchState::new(
            scratch_dir.tmp(),
            config.scratch_limit as u64,
            with_tmp,
            with_dev,
        );
        let state = HostState {
            wasi: wasi.build(),
            table: ResourceTable::new(),
            limiter: MemoryLimiter {
                limit: config.memory_limit,
                denied: false,
                largest_denied: 0,
            },
            link,
            callbacks: Vec::new(),
            next_call: 1,
            nested: Vec::new(),
            output_limit: config.output_limit,
            output_used: 0,
            output_cut_noticed: false,
            // Starting the session is not a call: the limit applies from
            // the first request (a tiny one would end every start).
            time_limit: None,
            call_started: Instant::now(),
            waited: Duration::ZERO,
            time_limit_hit: false,
            interrupted: false,
            input_ended: false,
            deferred_releases: Vec::new(),
            exit_status: None,
            finishing: false,
            scratch,
            _scratch_dir: scratch_dir,
        };
        let mut store = Store::new(engine, state);
        store.limiter(|state| &mut state.limiter);
        store.set_hostcall_fuel(HOSTCALL_FUEL);
        store.epoch_deadline_callback(|mut store| {
            let state = store.data_mut();
            if !state.finishing && state.link.poll_interrupt() {
                state.interrupted = true;
                return Ok(UpdateDeadline::Interrupt);
            }
            if let Some(limit) = state.time_limit {
                let used = state.call_started.elapsed().saturating_sub(state.waited);
                if used > limit {
                    state.time_limit_hit = true;
                    return Ok(UpdateDeadline::Interrupt);
                }
            }
            Ok(UpdateDeadline::Continue(1))
        });
        store.set_epoch_deadline(1);
        let started = Instant::now();
        let agent = match instantiate(&mut store) {
            Ok(agent) => agent,
            Err(error) => {
                let state = store.into_data();
                let error = if state.limiter.denied {
                    SandboxError::MemoryTooSmall {
                        limit_mib: config.memory_limit >> 20,
                        needed_mib: state.limiter.largest_denied.div_ceil(1 << 20),
                    }
                } else if super::pool::exhausted(&error) {
                    // The sandbox fills in its pool's size.
                    SandboxError::PoolExhausted { limit: 0 }
                } else {
                    SandboxError::Instantiate(boxed(error))
                };
                return Err(StartFailure {
                    error,
                    link: state.link,
                });
            }
        };
        tracing::debug!(elapsed = ?started.elapsed(), "instantiated");
        let mut instance = Instance {
            store,
            agent,
            memory_limit: config.memory_limit,
            dead: None,
        };
        if let Err(reason) = instance.install_python_path(config) {
            return Err(StartFailure {
                error: SandboxError::PythonPathSetup(reason),
                link: instance.store.into_data().link,
            });
        }
        instance.store.data_mut().time_limit = config.time_limit;
        Ok(instance)
    }

    /// Puts the session's python path (host paths, mounted) at the front of
    /// the guest's `sys.path`; idempotent, so a preloaded snapshot that has
    /// them already gets the same list.
    pub(super) fn install_python_path(&mut self, config: &SessionConfig) -> Result<(), String> {
        if config.python_path.is_empty() {
            return Ok(());
        }
        let entries: Vec<String> = config
            .python_path
            .entries()
            .map(|entry| python_str(&entry.to_string_lossy()))
            .collect();
        let source = format!(
            "__import__('pushy_guest.paths').paths.install([{}])",
            entries.join(", ")
        );
        match self.dispatch(Op::Execute(source)) {
            Ok(Reply::Ok(_)) => Ok(()),
            Ok(Reply::Error(error)) => Err(error.traceback),
            Err(failure) => Err(failure.to_string()),
        }
    }

    /// The store, for reading the instance out (preloaded snapshots).
    pub(super) fn into_store(self) -> Store<HostState> {
        self.store
    }

    /// Interpreter shutdown at the end of a session (`atexit` handlers, open
    /// files flushed), within the time limit; nobody is there to interrupt it
    /// or read its output.
    pub(crate) fn finish(&mut self) {
        if self.dead.is_some() {
            return;
        }
        self.store.data_mut().finishing = true;
        let _ = self.dispatch(Op::Shutdown);
    }

    /// The ids of the nested requests the last call was running when it
    /// ended, outermost first (empty after a call that returned).
    pub(crate) fn take_nested_requests(&mut self) -> Vec<u64> {
        std::mem::take(&mut self.store.data_mut().nested)
            .into_iter()
            .filter_map(|nested| match nested.owed {
                Owed::Request(id) => Some(id),
                Owed::Release => None,
            })
            .collect()
    }

    /// Releases that arrived while the guest read stdin, to apply now.
    pub(crate) fn take_deferred_releases(&mut self) -> Vec<ReleaseEntry> {
        std::mem::take(&mut self.store.data_mut().deferred_releases)
    }

    /// Whether the instance trapped and can no longer be used.
    pub(crate) fn is_dead(&self) -> bool {
        self.dead.is_some()
    }

    /// The link to the local side, between calls.
    pub(crate) fn link(&mut self) -> &mut dyn SessionLink {
        self.store.data_mut().link.as_mut()
    }

    /// Runs one operation in the guest.
    pub(crate) fn dispatch(&mut self, op: Op) -> Result<Reply, Failure> {
        if let Some(reason) = &self.dead {
            return Err(Failure::Terminated {
                reason: reason.clone(),
            });
        }
        let state = self.store.data_mut();
        state.call_started = Instant::now();
        state.waited = Duration::ZERO;
        state.output_used = 0;
        state.output_cut_noticed = false;
        state.callbacks.clear();
        state.nested.clear();
        state.interrupted = false;
        state.limiter.denied = false;
        state.exit_status = None;
        self.store.set_epoch_deadline(1);
        let (agent, store) = (&self.agent, &mut self.store);
        match bindings::with_op_param(&op, |op| agent.call_dispatch(&mut *store, op)) {
            Ok(reply) => {
                let mut reply = bindings::reply_from_wit(reply);
                self.store.data_mut().limit_error_text(&mut reply);
                Ok(reply)
            }
            Err(error) => {
                let failure = self.classify(error);
                self.dead = Some(failure.to_string());
                Err(failure)
            }
        }
    }

    fn classify(&mut self, error: wasmtime::Error) -> Failure {
        let state = self.store.data();
        if state.interrupted {
            return Failure::Interrupted;
        }
        if state.time_limit_hit {
            return Failure::TimeLimit {
                limit_ms: state.time_limit.map_or(0, |d| d.as_millis() as u64),
            };
        }
        if state.limiter.denied {
            return Failure::MemoryLimit {
                limit_bytes: self.memory_limit as u64,
            };
        }
        // `os._exit` and `os.abort` say their status before ending the instance.
        if let Some(status) = state.exit_status {
            return Failure::Exited { status };
        }
        if let Some(exit) = error.downcast_ref::<wasmtime_wasi::I32Exit>() {
            return Failure::Exited { status: exit.0 };
        }
        let reason = match error.downcast_ref::<wasmtime::Trap>() {
            Some(wasmtime::Trap::StackOverflow) => "wasm stack overflow".to_owned(),
            Some(trap) => trap.to_string(),
            None => format!("{error:#}"),
        };
        Failure::Trapped { reason }
    }
}

/// `text` as a Python string literal.
fn python_str(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('\'');
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\'' => out.push_str("\\'"),
            c if c.is_control() => out.push_str(&format!("\\U{:08x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('\'');
    out
}

#[cfg(test)]
mod python_str_tests {
    #[test]
    fn escapes_quotes_backslashes_and_controls() {
        assert_eq!(super::python_str("/a/b"), "'/a/b'");
        assert_eq!(super::python_str("it's\\x"), "'it\\'s\\\\x'");
        assert_eq!(super::python_str("a\nb"), "'a\\U0000000ab'");
    }
}
