//! The in-process sandbox: CPython (WASI) in wasmtime.
//!
//! A [`Sandbox`] is compiled once (engine, compiled component, linker,
//! `InstancePre`) and shared by many sessions; each session gets its own
//! `Store` and instance, with its own limits.

mod bindings;
mod blocking;
mod cache;
pub mod heap;
mod instance;
mod latin1;
mod mounts;
mod packed;
mod pool;
mod preload;
mod python_path;
mod scratch;
mod serve;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use wasmtime::component::{Component, Linker};
use wasmtime::{Config, Engine};

use crate::protocol::RequestedLimits;

use instance::NoLink;
pub(crate) use instance::{Instance, SessionLink, StartFailure};
pub use mounts::{Mount, MountError, check as check_mounts};
pub use preload::{PreloadError, check_name as check_preload_name};
pub use python_path::{PathError, PythonPath};
pub use scratch::root as scratch_root;

/// The directory this user's caches are kept in (compiled code, preloaded
/// snapshots, `pushy test`'s bytecode): `$PUSHY_CACHE_DIR`, else
/// `$XDG_CACHE_HOME/pushy`, else `$HOME/.cache/pushy`, else a private
/// directory in the temporary directory; `None` if there is none safe to use.
pub fn cache_dir() -> Option<std::path::PathBuf> {
    cache::default_dir()
}
pub(crate) use serve::serve_session;

use bindings::AgentPre;
use instance::HostState;

/// The guest component, built from `wit/` + `guest/` by `build.rs`.
static COMPONENT: &[u8] = include_bytes!(env!("PUSHY_COMPONENT_PATH"));
/// SHA-256 of [`COMPONENT`], computed at build time.
const COMPONENT_SHA256: &str = env!("PUSHY_COMPONENT_SHA256");

/// Interval of the epoch ticker: the granularity of time limits.
const EPOCH_TICK: Duration = Duration::from_millis(5);

/// A boxed error from a lower layer (wasmtime, I/O).
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Errors of the sandbox layer: setting it up and starting sessions.
///
/// Failures of a running session (time limit, trap) are [`crate::protocol::Failure`]s.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SandboxError {
    /// The wasmtime engine could not be configured.
    #[error("failed to configure the wasmtime engine")]
    Engine(#[source] BoxError),
    /// The guest component could not be compiled.
    #[error("failed to compile the guest component")]
    Compile(#[source] BoxError),
    /// The guest's imports could not be linked.
    #[error("failed to link the guest component's imports")]
    Link(#[source] BoxError),
    /// A new instance could not be created.
    #[error("failed to instantiate the guest component")]
    Instantiate(#[source] BoxError),
    /// As many sessions as the sandbox's pool holds are live
    /// ([`SandboxConfig::max_live_sessions`]).
    #[error("too many live sessions: this sandbox's instance pool holds {limit}")]
    PoolExhausted {
        /// The pool's size in sessions.
        limit: u32,
    },
    /// The memory limit is below what the sandbox needs to start.
    #[error(
        "a memory limit of {limit_mib} MiB is too small to start the sandbox \
         (it needs at least {needed_mib} MiB)"
    )]
    MemoryTooSmall {
        /// The limit asked for, in MiB.
        limit_mib: usize,
        /// What the sandbox tried to allocate, in MiB.
        needed_mib: usize,
    },
    /// A `--dir` mount was invalid.
    #[error(transparent)]
    Mount(#[from] MountError),
    /// The session's scratch directory (its `/tmp`) could not be created.
    #[error("cannot create the session's scratch directory {}", path.display())]
    Scratch {
        /// The directory.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The session's thread could not be started.
    #[error("failed to start the session thread")]
    Thread(#[source] std::io::Error),
    /// A `--path` or `--venv` could not be used.
    #[error(transparent)]
    PythonPath(#[from] PathError),
    /// Putting the python path on the guest's `sys.path` failed.
    #[error("setting up the python path in the sandbox failed: {0}")]
    PythonPathSetup(String),
    /// A preloaded snapshot could not be made.
    #[error(transparent)]
    Preload(#[from] PreloadError),
    /// Setting the sandbox up panicked (a bug: please report it).
    #[error("setting the sandbox up panicked")]
    SetupPanicked,
    /// The session's thread died before its instance existed (a bug).
    #[error("the session thread died while starting")]
    SessionThreadDied,
}

impl SandboxError {
    /// What a server tells a client whose session could not start.
    pub fn refusal(&self) -> crate::protocol::Refusal {
        use crate::protocol::Refusal;
        match self {
            SandboxError::MemoryTooSmall {
                limit_mib,
                needed_mib,
            } => Refusal::MemoryTooSmall {
                limit_mib: *limit_mib as u64,
                needed_mib: *needed_mib as u64,
            },
            other => Refusal::SessionFailed {
                reason: crate::causes::chain(other),
            },
        }
    }
}

/// Native stack a session thread has beneath the wasm stack, for the
/// host's own frames.
const SESSION_STACK_HOST: usize = 8 << 20;

pub(crate) fn boxed(error: wasmtime::Error) -> BoxError {
    error.into_boxed_dyn_error()
}

/// Settings of the compiled sandbox, shared by all its sessions.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct SandboxConfig {
    /// Where compiled code is cached. Default: `$PUSHY_CACHE_DIR`, else
    /// `$XDG_CACHE_HOME/pushy`, else `~/.cache/pushy`; `None` disables the cache.
    pub cache_dir: Option<PathBuf>,
    /// Native stack for wasm code. Default: 64 MiB. CPython on WASI guards
    /// its C recursion by its shadow stack in linear memory, which grows
    /// far slower than the native one; with 8 MiB, dropping a list nested
    /// 100,000 deep overflowed the native stack (a trap) before CPython's
    /// trashcan stepped in. The stack is virtual memory: only touched pages
    /// cost anything.
    pub max_wasm_stack: usize,
    /// Limits each new session gets unless it asks for others.
    pub session: SessionConfig,
    /// Modules imported once into a snapshot that every session of this
    /// sandbox starts from (`--preload`), with `session.python_path`
    /// mounted. The snapshot is cached (see [`SandboxConfig::cache_dir`]),
    /// keyed by this binary, the modules and the state of every file under
    /// the python path; the first build takes seconds. Default: none.
    pub preload: Vec<String>,
    /// Sessions of this sandbox that may be live at once. Their instances
    /// come from a pool that wasmtime reserves when the sandbox is made
    /// (address space only: about 4 GiB per linear memory, committed as
    /// used), so a new session reuses a slot whose memory stayed mapped and
    /// is reset page by page instead of being mapped and faulted in anew.
    /// Past the limit a new session fails with
    /// [`SandboxError::PoolExhausted`]. `0` allocates every instance on
    /// demand instead (also the fallback where the pool cannot be
    /// reserved, e.g. under a small `ulimit -v`). Default: 1000.
    pub max_live_sessions: u32,
}

impl Default for SandboxConfig {
    fn default() -> Self {
        SandboxConfig {
            cache_dir: cache::default_dir(),
            max_wasm_stack: 64 << 20,
            session: SessionConfig::default(),
            preload: Vec::new(),
            max_live_sessions: 1000,
        }
    }
}

/// Limits and mounts of one session.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct SessionConfig {
    /// Linear memory the guest may use. Default: 512 MiB.
    pub memory_limit: usize,
    /// Guest time per call (time spent waiting on local callbacks is not
    /// counted). Default: 60 s; `None` means no limit.
    pub time_limit: Option<Duration>,
    /// Bytes of stdout+stderr per call; the rest is cut with a notice.
    /// Default: 64 MiB.
    pub output_limit: usize,
    /// Host directories visible to the guest. Default: none.
    pub mounts: Vec<Mount>,
    /// Directories and archives on the guest's `sys.path`, seen read-only
    /// at their host paths (`--path`, `--venv`). Default: none.
    pub python_path: PythonPath,
    /// Bytes the session's private, writable `/tmp` may hold (each file,
    /// directory or link counting 4 KiB besides its contents); a write past
    /// it fails in the guest with `OSError` `ENOSPC`. The directory lives on
    /// the host (in `/dev/shm` when it can) and is removed when the session
    /// ends. Default: 64 MiB.
    pub scratch_limit: usize,
}

impl Default for SessionConfig {
    fn default() -> Self {
        SessionConfig {
            memory_limit: 512 << 20,
            time_limit: Some(Duration::from_secs(60)),
            output_limit: 64 << 20,
            mounts: Vec::new(),
            python_path: PythonPath::default(),
            scratch_limit: 64 << 20,
        }
    }
}

impl SessionConfig {
    /// These limits, tightened by what a client asked for: each limit is the
    /// smaller of the two, so a client can never loosen one.
    pub fn tightened(&self, asked: &RequestedLimits) -> SessionConfig {
        let mut config = self.clone();
        if let Some(ms) = asked.time_limit_ms {
            let asked = Duration::from_millis(ms);
            config.time_limit = Some(config.time_limit.map_or(asked, |own| own.min(asked)));
        }
        if let Some(bytes) = asked.memory_bytes {
            let bytes = usize::try_from(bytes).unwrap_or(usize::MAX);
            config.memory_limit = config.memory_limit.min(bytes);
        }
        if let Some(bytes) = asked.output_bytes {
            let bytes = usize::try_from(bytes).unwrap_or(usize::MAX);
            config.output_limit = config.output_limit.min(bytes);
        }
        if let Some(bytes) = asked.scratch_bytes {
            let bytes = usize::try_from(bytes).unwrap_or(usize::MAX);
            config.scratch_limit = config.scratch_limit.min(bytes);
        }
        config
    }
}

/// A compiled sandbox: cheap to clone, shared by many sessions.
#[derive(Clone)]
pub struct Sandbox {
    inner: Arc<SandboxInner>,
}

struct SandboxInner {
    engine: Engine,
    pre: AgentPre<HostState>,
    config: SandboxConfig,
}

impl std::fmt::Debug for Sandbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sandbox")
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

impl Sandbox {
    /// Compiles (or loads from the cache) the guest component.
    pub fn new(config: SandboxConfig) -> Result<Self, SandboxError> {
        let started = std::time::Instant::now();
        let mut wasm_config = Config::new();
        wasm_config
            .wasm_component_model(true)
            // Every call is synchronous: without the component-model-async
            // bookkeeping (a guest task per call) a call is cheaper.
            .concurrency_support(false)
            .epoch_interruption(true)
            .max_wasm_stack(config.max_wasm_stack)
            // Unused (calls are synchronous) but must not be below the wasm stack.
            .async_stack_size(config.max_wasm_stack + (1 << 20))
            // Python tracebacks are what users read; wasm-level backtraces and
            // address maps only add metadata that every start must load.
            .wasm_backtrace_max_frames(None)
            // Every table entry is set at instantiation: the interpreter
            // calls through hundreds of function pointers in any session,
            // and a lazily set entry costs a call out of wasm on its first
            // use, which a profile of fresh sessions showed among its costs.
            .table_lazy_init(false)
            .generate_address_map(false);
        let engine = pool::engine(&wasm_config, config.max_live_sessions)
            .map_err(|e| SandboxError::Engine(boxed(e)))?;
        let mut linker: Linker<HostState> = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker)
            .and_then(|()| blocking::add_to_linker(&mut linker))
            .and_then(|()| add_scratch_to_linker(&mut linker))
            .map_err(|e| SandboxError::Link(boxed(e)))?;
        bindings::Agent::add_to_linker::<_, wasmtime::component::HasSelf<_>>(&mut linker, |s| s)
            .map_err(|e| SandboxError::Link(boxed(e)))?;
        // Before a preload runs its imports: its time limit needs the ticks.
        spawn_epoch_ticker(&engine);
        let component: Component = if config.preload.is_empty() {
            cache::load_or_compile(
                &engine,
                COMPONENT,
                COMPONENT_SHA256,
                config.cache_dir.as_deref(),
            )?
        } else {
            Self::preloaded(&engine, &linker, &config)?
        };
        if let Some(needs) = component.resources_required() {
            tracing::debug!(
                memories = needs.num_memories,
                tables = needs.num_tables,
                largest_table = needs.max_initial_table_size,
                "guest component"
            );
        }
        let pre = linker
            .instantiate_pre(&component)
            .and_then(AgentPre::new)
            .map_err(|e| SandboxError::Link(boxed(e)))?;
        tracing::debug!(elapsed = ?started.elapsed(), "sandbox ready");
        Ok(Sandbox {
            inner: Arc::new(SandboxInner {
                engine,
                pre,
                config,
            }),
        })
    }

    /// The component with `config.preload` imported, from the cache or built.
    fn preloaded(
        engine: &Engine,
        linker: &Linker<HostState>,
        config: &SandboxConfig,
    ) -> Result<Component, SandboxError> {
        for module in &config.preload {
            preload::check_name(module)?;
        }
        let roots: Vec<PathBuf> = config
            .session
            .python_path
            .entries()
            .map(Into::into)
            .collect();
        let path = config.cache_dir.as_deref().map(|dir| {
            let key = preload::cache_key(COMPONENT_SHA256, &config.preload, &roots);
            cache::snapshot_file(engine, COMPONENT_SHA256, &key, dir)
        });
        cache::load_or_build(engine, path.as_deref(), || {
            let started = std::time::Instant::now();
            let bytes = preload::build(
                engine,
                linker,
                COMPONENT,
                &config.session,
                &config.preload,
                config.max_wasm_stack + (8 << 20),
                config
                    .cache_dir
                    .as_deref()
                    .map(|dir| cache::instrumented_file(engine, COMPONENT_SHA256, dir)),
            )?;
            tracing::info!(
                modules = %config.preload.join(","),
                elapsed = ?started.elapsed(),
                "built the preloaded snapshot"
            );
            Component::new(engine, &bytes).map_err(|e| SandboxError::Compile(boxed(e)))
        })
    }

    /// Native stack a thread running a session needs: the wasm stack plus
    /// room for the host's own frames beneath it.
    pub(crate) fn session_stack_size(&self) -> usize {
        self.inner.config.max_wasm_stack + SESSION_STACK_HOST
    }

    /// The configuration this sandbox was created with.
    pub fn config(&self) -> &SandboxConfig {
        &self.inner.config
    }

    /// A fresh instance with the given limits, linked to `link`.
    pub(crate) fn instantiate(
        &self,
        config: &SessionConfig,
        link: Box<dyn SessionLink>,
    ) -> Result<Instance, StartFailure> {
        Instance::new(&self.inner.engine, &self.inner.pre, config, link).map_err(|mut failure| {
            if let SandboxError::PoolExhausted { limit } = &mut failure.error {
                *limit = self.inner.config.max_live_sessions;
            }
            failure
        })
    }

    /// Checks that a session with `config` can start (its memory limit is
    /// large enough, its mounts open, its python path set up), by starting
    /// and dropping one, on a thread of its own like every session (a
    /// session's blocking WASI calls must not run on an async runtime's).
    pub fn check_session(&self, config: &SessionConfig) -> Result<(), SandboxError> {
        let (sandbox, config) = (self.clone(), config.clone());
        std::thread::Builder::new()
            .name("pushy-check".into())
            .stack_size(self.session_stack_size())
            .spawn(move || {
                sandbox
                    .instantiate(&config, Box::new(NoLink))
                    .map(drop)
                    .map_err(|failure| failure.error)
            })
            .map_err(SandboxError::Thread)?
            .join()
            .map_err(|_| SandboxError::SetupPanicked)?
    }
}

/// Replaces wasmtime-wasi's `wasi:filesystem` interfaces with the wrapped
/// ones of [`scratch`] (the same implementation, with the scratch limit).
fn add_scratch_to_linker(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    use wasmtime_wasi::p2::bindings::filesystem::preopens;
    use wasmtime_wasi::p2::bindings::sync::filesystem::types;
    linker.allow_shadowing(true);
    types::add_to_linker::<HostState, scratch::ScratchFs>(linker, HostState::scratch_view)?;
    preopens::add_to_linker::<HostState, scratch::ScratchFs>(linker, HostState::scratch_view)?;
    linker.allow_shadowing(false);
    Ok(())
}

/// Advances the engine's epoch every [`EPOCH_TICK`] while the engine lives.
fn spawn_epoch_ticker(engine: &Engine) {
    let weak = engine.weak();
    let spawned = std::thread::Builder::new()
        .name("pushy-epoch".into())
        .spawn(move || {
            while let Some(engine) = weak.upgrade() {
                engine.increment_epoch();
                drop(engine);
                std::thread::sleep(EPOCH_TICK);
            }
        });
    if let Err(error) = spawned {
        tracing::warn!(%error, "could not start the epoch ticker; time limits are not enforced");
    }
}
