//! One guest instance: its `Store`, limits, and the host side of the WIT
//! imports (output, and the callback trampoline).

use std::time::{Duration, Instant};

use wasmtime::component::ResourceTable;
use wasmtime::{Engine, ResourceLimiter, Store, UpdateDeadline};
use wasmtime_wasi::{DirPerms, FilePerms, WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

use super::bindings::{self, Agent, AgentPre, host, wit};
use super::{MountError, SandboxError, SessionConfig, boxed};
use crate::protocol::{
    ClientMessage, Failure, Inbound, Op, OutputStream, ReleaseEntry, Reply, ServerMessage,
};

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
enum Nested {
    Request(u64),
    Release,
}

/// Store data of one instance.
pub(crate) struct HostState {
    wasi: WasiCtx,
    table: ResourceTable,
    limiter: MemoryLimiter,
    pub(super) link: Box<dyn SessionLink>,
    /// Calls to local callbacks in progress, innermost last.
    callbacks: Vec<u64>,
    next_call: u64,
    /// Nested requests the guest is handling, innermost last.
    nested: Vec<Nested>,
    output_limit: usize,
    output_used: usize,
    time_limit: Option<Duration>,
    call_started: Instant,
    /// Time of the current call spent waiting on the local side.
    waited: Duration,
    time_limit_hit: bool,
    interrupted: bool,
}

/// Denies growth past the session's memory limit and remembers that it did.
struct MemoryLimiter {
    limit: usize,
    denied: bool,
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
    fn send(&mut self, message: ServerMessage) -> wasmtime::Result<()> {
        if self.link.send(message) {
            Ok(())
        } else {
            Err(wasmtime::format_err!("the local side went away"))
        }
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
                    self.nested.push(Nested::Request(id));
                    break Inbound::Request(op);
                }
                Some(ClientMessage::Release(entries)) => {
                    self.nested.push(Nested::Release);
                    break Inbound::Request(Op::Release(entries));
                }
                Some(ClientMessage::Interrupt) => {
                    self.interrupted = true;
                    return Err(wasmtime::format_err!("interrupted during a callback"));
                }
                Some(ClientMessage::Hello { .. } | ClientMessage::AuthProof { .. }) => {
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
        let mut data = bindings::latin1_bytes(data);
        let stream = if stream == 2 {
            OutputStream::Stderr
        } else {
            OutputStream::Stdout
        };
        let room = self.output_limit.saturating_sub(self.output_used);
        if room == 0 {
            return Ok(());
        }
        let cut = data.len() > room;
        data.truncate(room);
        self.output_used += data.len();
        self.send(ServerMessage::Output { stream, data })?;
        if cut {
            self.output_used = self.output_limit;
            let notice = format!(
                "\n[pushy: output limit of {} bytes reached; further output of this call discarded]\n",
                self.output_limit
            );
            self.send(ServerMessage::Output {
                stream: OutputStream::Stderr,
                data: notice.into_bytes(),
            })?;
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
        match self.nested.pop() {
            Some(Nested::Request(id)) => {
                let result = Ok(bindings::reply_from_wit(reply));
                self.send(ServerMessage::Response { id, result })?;
            }
            Some(Nested::Release) => {}
            None => {
                return Err(wasmtime::format_err!(
                    "guest resumed with no nested request"
                ));
            }
        }
        self.wait_inbound()
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
    ) -> Result<Self, SandboxError> {
        let mut wasi = WasiCtxBuilder::new();
        // No environment, no arguments, no network: only what is asked for.
        wasi.allow_ip_name_lookup(false)
            .allow_tcp(false)
            .allow_udp(false);
        for mount in &config.mounts {
            let (dir_perms, file_perms) = if mount.read_only {
                (DirPerms::READ, FilePerms::READ)
            } else {
                (DirPerms::all(), FilePerms::all())
            };
            wasi.preopened_dir(&mount.host, &mount.guest, dir_perms, file_perms)
                .map_err(|e| MountError::Open {
                    path: mount.host.clone(),
                    source: boxed(e),
                })?;
        }
        let state = HostState {
            wasi: wasi.build(),
            table: ResourceTable::new(),
            limiter: MemoryLimiter {
                limit: config.memory_limit,
                denied: false,
            },
            link,
            callbacks: Vec::new(),
            next_call: 1,
            nested: Vec::new(),
            output_limit: config.output_limit,
            output_used: 0,
            time_limit: config.time_limit,
            call_started: Instant::now(),
            waited: Duration::ZERO,
            time_limit_hit: false,
            interrupted: false,
        };
        let mut store = Store::new(engine, state);
        store.limiter(|state| &mut state.limiter);
        store.epoch_deadline_callback(|mut store| {
            let state = store.data_mut();
            if state.link.poll_interrupt() {
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
        let agent = pre
            .instantiate(&mut store)
            .map_err(|e| SandboxError::Instantiate(boxed(e)))?;
        tracing::debug!(elapsed = ?started.elapsed(), "instantiated");
        Ok(Instance {
            store,
            agent,
            memory_limit: config.memory_limit,
            dead: None,
        })
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
        state.callbacks.clear();
        state.nested.clear();
        state.interrupted = false;
        self.store.set_epoch_deadline(1);
        let (agent, store) = (&self.agent, &mut self.store);
        match bindings::with_op_param(&op, |op| agent.call_dispatch(&mut *store, op)) {
            Ok(reply) => Ok(bindings::reply_from_wit(reply)),
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
        let reason = match error.downcast_ref::<wasmtime::Trap>() {
            Some(wasmtime::Trap::StackOverflow) => "wasm stack overflow".to_owned(),
            Some(trap) => trap.to_string(),
            None => format!("{error:#}"),
        };
        Failure::Trapped { reason }
    }
}
