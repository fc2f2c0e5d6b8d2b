//! `connect`: a session on any target with the keyword arguments of
//! `pushy.connect`, and the host that `local:` starts.
//!
//! `embedded:` sessions run in this process on a sandbox cached per
//! preload configuration (making one compiles or loads the component, and a
//! preload builds a snapshot). `local:` starts `python -m pushy._host` —
//! this package's own host, the same code as this module — unless
//! `$PUSHY_HOST_PROGRAM` names a `pushy` binary; its limits, mounts and
//! python path go as the host's flags, as the command line passes them.
//! `daemon:` sends the limits in the handshake (they only tighten the
//! daemon's) and refuses what would name this machine's files.

use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

use pushy::protocol::RequestedLimits;
use pushy::sandbox::{Mount, PythonPath};
use pushy::{ConnectionConfig, OutputMode, Sandbox, SandboxConfig, SessionConfig, Target};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

use crate::errors;
use crate::session::{Connection, State};
use crate::waiting::block_on;

/// The library's own release timer is not used: `State` runs one whose
/// interval can change (`con.gc_interval = ...`).
const LIBRARY_GC_INTERVAL: Duration = Duration::from_secs(365 * 24 * 3600);

/// The longest `gc_interval`, in seconds (longer ones would not fit a
/// `Duration` and mean nothing anyway).
pub(crate) const MAX_GC_INTERVAL: f64 = 365.0 * 24.0 * 3600.0;

/// Limits and what the sandbox sees, as `connect` takes them.
struct Settings {
    timeout: Option<f64>,
    memory_mib: Option<i128>,
    output_limit_mib: Option<i128>,
    scratch_mib: Option<i128>,
    path: Vec<PathBuf>,
    preload: Vec<String>,
    mounts: Vec<Mount>,
}

fn usage(message: impl std::fmt::Display) -> PyErr {
    PyValueError::new_err(message.to_string())
}

fn mib(name: &str, value: i128) -> PyResult<usize> {
    if value < 0 {
        return Err(usage(format!(
            "{name} must be a number of MiB, not {value}"
        )));
    }
    value
        .checked_mul(1 << 20)
        .and_then(|bytes| usize::try_from(bytes).ok())
        .ok_or_else(|| usage(format!("{name}={value} is too large")))
}

impl Settings {
    /// `timeout` as a limit: `None` for none (0), an error if unusable.
    fn time_limit(&self) -> PyResult<Option<Option<Duration>>> {
        let Some(seconds) = self.timeout else {
            return Ok(None);
        };
        const YEAR: f64 = 365.0 * 24.0 * 3600.0;
        if seconds == 0.0 {
            return Ok(Some(None));
        }
        if !(seconds.is_finite() && seconds > 0.0 && seconds <= YEAR) {
            return Err(usage(format!(
                "timeout must be a number of seconds from 0 (none) to {YEAR}, not {seconds}"
            )));
        }
        // The limit is kept in whole milliseconds.
        Ok(Some(Some(
            Duration::from_secs_f64(seconds).max(Duration::from_millis(1)),
        )))
    }

    fn check(&self) -> PyResult<()> {
        for module in &self.preload {
            pushy::sandbox::check_preload_name(module).map_err(usage)?;
        }
        pushy::sandbox::check_mounts(&self.mounts).map_err(usage)?;
        for (name, value) in [
            ("memory_mib", self.memory_mib),
            ("output_limit_mib", self.output_limit_mib),
            ("scratch_mib", self.scratch_mib),
        ] {
            value.map(|value| mib(name, value)).transpose()?;
        }
        self.time_limit().map(drop)
    }

    /// The session of an in-process sandbox (`embedded:`, this host).
    fn session(&self) -> PyResult<SessionConfig> {
        self.check()?;
        let mut session = SessionConfig::default();
        if let Some(limit) = self.time_limit()? {
            session.time_limit = limit;
        }
        if let Some(memory) = self.memory_mib {
            session.memory_limit = mib("memory_mib", memory)?;
        }
        if let Some(output) = self.output_limit_mib {
            session.output_limit = mib("output_limit_mib", output)?;
        }
        if let Some(scratch) = self.scratch_mib {
            session.scratch_limit = mib("scratch_mib", scratch)?;
        }
        session.mounts = self.mounts.clone();
        session.python_path = PythonPath::resolve(&self.path, None).map_err(usage)?;
        Ok(session)
    }

    /// The same as flags of `pushy host --stdio` (`remote`: over ssh, where
    /// paths name the remote's files).
    fn host_args(&self, remote: bool) -> PyResult<Vec<String>> {
        self.check()?;
        let mut args = Vec::new();
        if let Some(timeout) = self.timeout {
            args.push(format!("--timeout={timeout}"));
        }
        if let Some(memory) = self.memory_mib {
            args.push(format!("--memory={memory}"));
        }
        if let Some(output) = self.output_limit_mib {
            args.push(format!("--output-limit={output}"));
        }
        if let Some(scratch) = self.scratch_mib {
            args.push(format!("--scratch={scratch}"));
        }
        for mount in &self.mounts {
            let mode = if mount.read_only { ":ro" } else { "" };
            args.push(format!(
                "--dir={}:{}{mode}",
                mount.host.display(),
                mount.guest
            ));
        }
        if !remote {
            // Refused here, with the reason, rather than by the child.
            PythonPath::resolve(&self.path, None).map_err(usage)?;
        }
        for path in &self.path {
            let path = if remote {
                path.clone()
            } else {
                std::path::absolute(path).unwrap_or_else(|_| path.clone())
            };
            args.push(format!("--path={}", path.display()));
        }
        if !self.preload.is_empty() {
            args.push(format!("--preload={}", self.preload.join(",")));
        }
        Ok(args)
    }

    /// What a daemon is asked for.
    fn requested(&self) -> PyResult<RequestedLimits> {
        let given = [
            (!self.mounts.is_empty()).then_some("mounts"),
            (!self.path.is_empty()).then_some("path"),
            (!self.preload.is_empty()).then_some("preload"),
        ];
        if let Some(name) = given.into_iter().flatten().next() {
            return Err(usage(format!(
                "{name}= cannot be used with a daemon: target: a client cannot mount anything on \
                 the daemon's host (this machine's files do not exist there); the daemon's own \
                 `pushy serve` flags define what its sessions see"
            )));
        }
        let mut asked = RequestedLimits::default();
        if let Some(Some(limit)) = self.time_limit()? {
            asked.time_limit_ms = Some(u64::try_from(limit.as_millis()).unwrap_or(u64::MAX).max(1));
        }
        let bytes = |name, value: Option<i128>| -> PyResult<Option<u64>> {
            value.map(|v| mib(name, v).map(|b| b as u64)).transpose()
        };
        asked.memory_bytes = bytes("memory_mib", self.memory_mib)?;
        asked.output_bytes = bytes("output_limit_mib", self.output_limit_mib)?;
        asked.scratch_bytes = bytes("scratch_mib", self.scratch_mib)?;
        Ok(asked)
    }
}

/// Sandboxes made for preloads, by (modules, python path); the default one
/// is the library's.
static SANDBOXES: Mutex<Vec<(Vec<String>, PythonPath, Sandbox)>> = Mutex::new(Vec::new());

fn sandbox_for(session: &SessionConfig, preload: &[String]) -> Result<Sandbox, pushy::Error> {
    if preload.is_empty() {
        return block_on(pushy::default_sandbox());
    }
    let mut sandboxes = SANDBOXES.lock().expect("sandboxes");
    if let Some((_, _, sandbox)) = sandboxes
        .iter()
        .find(|(modules, path, _)| modules == preload && *path == session.python_path)
    {
        return Ok(sandbox.clone());
    }
    let mut config = SandboxConfig::default();
    config.session.python_path = session.python_path.clone();
    config.preload = preload.to_vec();
    let sandbox = Sandbox::new(config)?;
    sandboxes.push((
        preload.to_vec(),
        session.python_path.clone(),
        sandbox.clone(),
    ));
    Ok(sandbox)
}

fn mounts(given: Vec<(PathBuf, String, bool)>) -> Vec<Mount> {
    given
        .into_iter()
        .map(|(host, guest, read_only)| Mount {
            host,
            guest,
            read_only,
        })
        .collect()
}

/// Connects to a session (see `pushy.connect`, which documents every argument).
#[pyfunction]
#[pyo3(signature = (target, *, companion, token_file=None, tls_ca=None, timeout=None,
    memory_mib=None, output_limit_mib=None, scratch_mib=None, path=Vec::new(),
    preload=Vec::new(), mounts=Vec::new(), gc_interval=5.0, host_command=None))]
#[allow(clippy::too_many_arguments)]
pub(crate) fn connect(
    py: Python<'_>,
    target: &str,
    companion: Py<PyAny>,
    token_file: Option<PathBuf>,
    tls_ca: Option<PathBuf>,
    timeout: Option<f64>,
    memory_mib: Option<i128>,
    output_limit_mib: Option<i128>,
    scratch_mib: Option<i128>,
    path: Vec<PathBuf>,
    preload: Vec<String>,
    mounts: Vec<(PathBuf, String, bool)>,
    gc_interval: f64,
    host_command: Option<Vec<String>>,
) -> PyResult<Connection> {
    if !(gc_interval.is_finite() && (0.0..=MAX_GC_INTERVAL).contains(&gc_interval)) {
        return Err(usage(
            "gc_interval must be a number of seconds from 0 to a year",
        ));
    }
    let settings = Settings {
        timeout,
        memory_mib,
        output_limit_mib,
        scratch_mib,
        path,
        preload,
        mounts: self::mounts(mounts),
    };
    let parsed: Target = target.parse().map_err(|e| errors::to_py(py, None, e))?;
    let mut config = ConnectionConfig::default();
    config.output = OutputMode::Capture;
    config.gc_interval = LIBRARY_GC_INTERVAL;
    config.token_file = token_file;
    config.tls_ca = tls_ca;
    let connected = match parsed {
        Target::Embedded => {
            let session = settings.session()?;
            let preload = settings.preload.clone();
            py.detach(move || {
                let sandbox = sandbox_for(&session, &preload)?;
                block_on(pushy::Connection::embedded_with(&sandbox, session, config))
            })
        }
        Target::Daemon(_) => {
            config.limits = settings.requested()?;
            py.detach(|| block_on(pushy::connect_with(target, config)))
        }
        other => {
            let remote = !matches!(other, Target::Local);
            config.host_args = settings.host_args(remote)?;
            // The child enforces the limit; this side gives up on a child
            // that stops answering (stopped, wedged) a little after it.
            if let Some(Some(limit)) = settings.time_limit()? {
                config.unresponsive_after = Some(limit.saturating_add(pushy::UNRESPONSIVE_SLACK));
            }
            let own_host = std::env::var_os(pushy::transport::HOST_PROGRAM_ENV).is_none();
            if let (false, true, Some(command)) = (remote, own_host, host_command) {
                let mut command = command.into_iter();
                config.host_program = command.next().map(PathBuf::from);
                config.host_program_args = command.collect();
            }
            py.detach(|| block_on(pushy::connect_with(target, config)))
        }
    };
    let con = connected.map_err(|e| errors::to_py(py, None, e))?;
    Ok(Connection {
        state: State::start(con, Duration::from_secs_f64(gc_interval), companion),
    })
}

/// `python -m pushy._host host --stdio [flags]`: serves one session over
/// this process's stdin and stdout, as `pushy host --stdio` does.
#[pyfunction]
#[pyo3(signature = (*, timeout=None, memory_mib=None, output_limit_mib=None, scratch_mib=None,
    path=Vec::new(), preload=Vec::new(), mounts=Vec::new()))]
#[allow(clippy::too_many_arguments)]
pub(crate) fn serve_stdio(
    py: Python<'_>,
    timeout: Option<f64>,
    memory_mib: Option<i128>,
    output_limit_mib: Option<i128>,
    scratch_mib: Option<i128>,
    path: Vec<PathBuf>,
    preload: Vec<String>,
    mounts: Vec<(PathBuf, String, bool)>,
) -> PyResult<()> {
    let settings = Settings {
        timeout,
        memory_mib,
        output_limit_mib,
        scratch_mib,
        path,
        preload,
        mounts: self::mounts(mounts),
    };
    let session = settings.session()?;
    let preload = settings.preload.clone();
    let served = py.detach(move || -> Result<(), String> {
        let sandbox = sandbox_for(&session, &preload).map_err(|e| e.with_causes())?;
        pushy::transport::server::serve_stdio(&sandbox, &session).map_err(|e| with_causes(&e))
    });
    served.map_err(|message| errors::plain_error(py, "ConnectError", message, &[]))
}

/// The message of `error` and of each of its sources.
fn with_causes(error: &dyn std::error::Error) -> String {
    let mut message = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !message.contains(&text) {
            message = format!("{message}: {text}");
        }
        source = cause.source();
    }
    message
}
