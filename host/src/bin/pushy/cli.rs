//! The command line's arguments, and how the limit flags become a session's limits.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use pushy::{Mount, SessionConfig};

#[derive(Parser)]
#[command(
    name = "pushy",
    version,
    about = "Run Python in a wasmtime sandbox and drive it remotely"
)]
pub(crate) struct Cli {
    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Subcommand)]
pub(crate) enum Command {
    /// Run a script in a fresh sandbox; its output streams live.
    Run(RunArgs),
    /// Evaluate an expression in a fresh sandbox and print its repr.
    Eval(EvalArgs),
    /// An interactive Python prompt whose input runs in the sandbox.
    Repl(ReplArgs),
    /// Serve one session over stdin/stdout (what `local:` and `ssh:` start).
    Host(HostArgs),
    /// Serve sessions over TCP to `daemon:HOST:PORT` clients.
    Serve(ServeArgs),
    /// Run test files, each in a fresh sandbox, in parallel over targets.
    Test(TestArgs),
}

#[derive(Args)]
pub(crate) struct TestArgs {
    /// Test files or directories (test_*.py, *_test.py).
    #[arg(default_value = ".")]
    pub(crate) paths: Vec<PathBuf>,
    /// Sessions at once [default: number of cores].
    #[arg(long, short = 'j', value_name = "N")]
    pub(crate) jobs: Option<usize>,
    /// Where to run (repeatable: files are spread over all) [default: embedded:].
    #[arg(long = "target", value_name = "URL")]
    pub(crate) targets: Vec<String>,
    /// Token file for daemon: targets [default: $PUSHY_TOKEN_FILE].
    #[arg(long, value_name = "FILE")]
    pub(crate) token_file: Option<PathBuf>,
    /// Speak TLS to daemon: targets, trusting this CA (PEM).
    #[arg(long, value_name = "FILE")]
    pub(crate) tls_ca: Option<PathBuf>,
    /// Write JUnit XML here.
    #[arg(long, value_name = "FILE")]
    pub(crate) junit: Option<PathBuf>,
    /// Only tests whose FILE_STEM::NAME contains PATTERN (under pytest:
    /// pytest's -k expression).
    #[arg(short = 'k', value_name = "PATTERN")]
    pub(crate) pattern: Option<String>,
    /// Stop at the first failure.
    #[arg(long)]
    pub(crate) fail_fast: bool,
    /// Run only shard I of N (1-based): a fixed 1/N of the files, so that N
    /// runs (CI jobs, an Indexed Job's pods) together run every file once.
    #[arg(long, value_name = "I/N")]
    pub(crate) shard: Option<Shard>,
    /// Under pytest, where compiled modules are kept between sessions and
    /// runs (default: `bytecode/` in the cache directory). Sessions read it;
    /// only a session that runs none of the project's code writes it.
    #[arg(long, value_name = "DIR", conflicts_with = "no_bytecode_cache")]
    pub(crate) bytecode_cache: Option<std::path::PathBuf>,
    /// Under pytest, keep no compiled modules: every file's session compiles
    /// the project from source.
    #[arg(long)]
    pub(crate) no_bytecode_cache: bool,
    #[command(flatten)]
    pub(crate) limits: LimitArgs,
    /// Arguments for pytest (when the environment has it), after `--`.
    #[arg(last = true, value_name = "PYTEST_ARGS")]
    pub(crate) pytest_args: Vec<String>,
}

/// `--shard I/N`: the files whose index in the sorted list is I-1 modulo N.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Shard {
    /// 1-based.
    pub(crate) index: usize,
    pub(crate) count: usize,
}

impl std::str::FromStr for Shard {
    type Err = String;

    fn from_str(spec: &str) -> Result<Self, Self::Err> {
        let bad = || format!("--shard takes I/N with 1 <= I <= N (e.g. 2/4), not {spec:?}");
        let (index, count) = spec.split_once('/').ok_or_else(bad)?;
        let index: usize = index.trim().parse().map_err(|_| bad())?;
        let count: usize = count.trim().parse().map_err(|_| bad())?;
        if index == 0 || count == 0 || index > count {
            return Err(bad());
        }
        Ok(Shard { index, count })
    }
}

impl Shard {
    /// This shard's part of `files` (sorted): every N-th, from the I-th.
    pub(crate) fn select<T>(self, files: Vec<T>) -> Vec<T> {
        files
            .into_iter()
            .enumerate()
            .filter(|(at, _)| at % self.count == self.index - 1)
            .map(|(_, file)| file)
            .collect()
    }
}

#[derive(Args, Clone)]
pub(crate) struct LimitArgs {
    /// Time limit per call, in seconds (0: none) [default: 60].
    #[arg(long, value_name = "S")]
    pub(crate) timeout: Option<f64>,
    /// Memory limit of the sandbox, in MiB [default: 512].
    #[arg(long, value_name = "MIB")]
    pub(crate) memory: Option<usize>,
    /// Output limit per call, in MiB (the rest is cut with a notice) [default: 64].
    #[arg(long, value_name = "MIB")]
    pub(crate) output_limit: Option<usize>,
    /// What the session's private /tmp may hold, in MiB (past it, writes fail
    /// with ENOSPC) [default: 64].
    #[arg(long, value_name = "MIB")]
    pub(crate) scratch: Option<usize>,
    /// Mount a host directory into the sandbox (repeatable).
    #[arg(long = "dir", value_name = "HOST:GUEST[:ro]")]
    pub(crate) dirs: Vec<Mount>,
    /// Import from this directory, .whl or .zip, seen read-only at its host
    /// path (repeatable: sys.path in the order given).
    #[arg(long = "path", value_name = "DIR|WHL|ZIP")]
    pub(crate) python_path: Vec<PathBuf>,
    /// Import from this virtualenv's site-packages [default: $VIRTUAL_ENV].
    #[arg(long, value_name = "DIR")]
    pub(crate) venv: Option<PathBuf>,
    /// Import these modules once into a snapshot (cached on disk) that every
    /// session starts from.
    #[arg(long, value_name = "MODULE[,MODULE...]", value_delimiter = ',')]
    pub(crate) preload: Vec<String>,
}

#[derive(Args, Clone)]
pub(crate) struct TargetArgs {
    /// Where the sandbox runs: embedded:, local:, daemon:HOST:PORT, ssh:[USER@]HOST[:PORT].
    #[arg(long, value_name = "URL", default_value = "embedded:")]
    pub(crate) target: String,
    /// Token file for daemon: targets [default: $PUSHY_TOKEN_FILE].
    #[arg(long, value_name = "FILE")]
    pub(crate) token_file: Option<PathBuf>,
    /// Speak TLS to a daemon: target, trusting the CA certificate(s) in this PEM file.
    #[arg(long, value_name = "FILE")]
    pub(crate) tls_ca: Option<PathBuf>,
}

#[derive(Args)]
pub(crate) struct RunArgs {
    #[command(flatten)]
    pub(crate) target: TargetArgs,
    #[command(flatten)]
    pub(crate) limits: LimitArgs,
    /// The script to run, then its arguments (its sys.argv[1:]): everything
    /// after SCRIPT belongs to the script, as with python3.
    #[arg(
        value_name = "SCRIPT [ARGS]",
        required = true,
        num_args = 1..,
        trailing_var_arg = true,
        allow_hyphen_values = true
    )]
    pub(crate) command: Vec<String>,
}

#[derive(Args)]
pub(crate) struct EvalArgs {
    #[command(flatten)]
    pub(crate) target: TargetArgs,
    #[command(flatten)]
    pub(crate) limits: LimitArgs,
    /// A Python expression.
    #[arg(allow_hyphen_values = true)]
    pub(crate) expression: String,
}

#[derive(Args)]
pub(crate) struct ReplArgs {
    #[command(flatten)]
    pub(crate) target: TargetArgs,
    #[command(flatten)]
    pub(crate) limits: LimitArgs,
}

#[derive(Args)]
pub(crate) struct HostArgs {
    /// Speak the protocol on stdin/stdout (the only mode).
    #[arg(long, required = true)]
    pub(crate) stdio: bool,
    #[command(flatten)]
    pub(crate) limits: LimitArgs,
}

#[derive(Args)]
pub(crate) struct ServeArgs {
    /// Address to listen on.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:7700")]
    pub(crate) listen: String,
    /// Clients must prove they know the token in this file [default: $PUSHY_TOKEN_FILE].
    #[arg(long, value_name = "FILE")]
    pub(crate) token_file: Option<PathBuf>,
    /// Accept clients without a token (only for trusted networks).
    #[arg(long)]
    pub(crate) no_auth: bool,
    /// Serve TLS with this certificate chain (PEM); needs --tls-key.
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    pub(crate) tls_cert: Option<PathBuf>,
    /// Private key (PEM) of --tls-cert.
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub(crate) tls_key: Option<PathBuf>,
    /// Sessions at once; more are refused.
    #[arg(long, value_name = "N", default_value_t = 64)]
    pub(crate) max_sessions: usize,
    /// Close a session after this many idle seconds (0: never).
    #[arg(long, value_name = "S", default_value_t = 900.0)]
    pub(crate) idle_timeout: f64,
    #[command(flatten)]
    pub(crate) limits: LimitArgs,
}

impl LimitArgs {
    pub(crate) fn session_config(&self) -> anyhow::Result<SessionConfig> {
        let mut config = SessionConfig::default();
        if let Some(timeout) = self.timeout {
            config.time_limit = seconds("--timeout", timeout)?;
        }
        if let Some(memory) = self.memory {
            config.memory_limit = mib("--memory", memory)?;
        }
        if let Some(output) = self.output_limit {
            config.output_limit = mib("--output-limit", output)?;
        }
        if let Some(scratch) = self.scratch {
            config.scratch_limit = mib("--scratch", scratch)?;
        }
        pushy::sandbox::check_mounts(&self.dirs)?;
        config.mounts = self.dirs.clone();
        for module in &self.preload {
            pushy::sandbox::check_preload_name(module)?;
        }
        let venv = self.venv_or_ambient();
        config.python_path =
            pushy::sandbox::PythonPath::resolve(&self.python_path, venv.as_deref()).map_err(
                |error| match error {
                    pushy::sandbox::PathError::NotAVenv(_) if self.venv.is_none() => {
                        anyhow::anyhow!("$VIRTUAL_ENV={error}")
                    }
                    pushy::sandbox::PathError::NotAVenv(_) => anyhow::anyhow!("--venv {error}"),
                    other => other.into(),
                },
            )?;
        Ok(config)
    }

    /// `--venv`, else `$VIRTUAL_ENV` (an active virtualenv), if set.
    fn venv_or_ambient(&self) -> Option<PathBuf> {
        self.venv.clone().or_else(|| {
            std::env::var_os("VIRTUAL_ENV")
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
        })
    }

    /// The limits given on the command line, for a host elsewhere to apply
    /// (each only tightens that host's own).
    pub(crate) fn requested(&self) -> anyhow::Result<pushy::protocol::RequestedLimits> {
        let mut asked = pushy::protocol::RequestedLimits::default();
        if let Some(timeout) = self.timeout {
            asked.time_limit_ms = seconds("--timeout", timeout)?
                .map(|limit| u64::try_from(limit.as_millis()).unwrap_or(u64::MAX).max(1));
        }
        if let Some(memory) = self.memory {
            asked.memory_bytes = Some(mib("--memory", memory)? as u64);
        }
        if let Some(output) = self.output_limit {
            asked.output_bytes = Some(mib("--output-limit", output)? as u64);
        }
        if let Some(scratch) = self.scratch {
            asked.scratch_bytes = Some(mib("--scratch", scratch)? as u64);
        }
        Ok(asked)
    }

    /// Whether these flags can be honoured over `target`.
    pub(crate) fn check_target(&self, target: &pushy::Target) -> anyhow::Result<()> {
        if matches!(target, pushy::Target::Daemon(_)) {
            let given = [
                (!self.dirs.is_empty()).then_some("--dir"),
                (!self.python_path.is_empty()).then_some("--path"),
                self.venv.is_some().then_some("--venv"),
                (!self.preload.is_empty()).then_some("--preload"),
            ];
            if let Some(flag) = given.into_iter().flatten().next() {
                anyhow::bail!(
                    "{flag} cannot be used with a daemon: target: a client cannot mount \
                     anything on the daemon's host (this machine's files do not exist \
                     there); the daemon's own `pushy serve {flag}` defines what its \
                     sessions see"
                );
            }
        }
        Ok(())
    }

    /// The python path flags for a `pushy host` started elsewhere: paths made
    /// absolute for a local child; over ssh they name the remote's files,
    /// which must exist there (the remote host refuses them otherwise), and
    /// this machine's `$VIRTUAL_ENV` means nothing there.
    fn path_args(&self, remote: bool) -> Vec<String> {
        let absolute = |path: &PathBuf| {
            if remote {
                path.clone()
            } else {
                std::path::absolute(path).unwrap_or_else(|_| path.clone())
            }
        };
        let mut args = Vec::new();
        for path in &self.python_path {
            args.push(format!("--path={}", absolute(path).display()));
        }
        let venv = if remote {
            self.venv.clone()
        } else {
            self.venv_or_ambient()
        };
        if let Some(venv) = venv {
            args.push(format!("--venv={}", absolute(&venv).display()));
        }
        if !self.preload.is_empty() {
            args.push(format!("--preload={}", self.preload.join(",")));
        }
        args
    }

    /// The same limits as flags for a `pushy host` started elsewhere
    /// (`remote`: on another machine, over ssh).
    pub(crate) fn host_args(&self, remote: bool) -> Vec<String> {
        let mut args = Vec::new();
        if let Some(timeout) = self.timeout {
            args.push(format!("--timeout={timeout}"));
        }
        if let Some(memory) = self.memory {
            args.push(format!("--memory={memory}"));
        }
        if let Some(output) = self.output_limit {
            args.push(format!("--output-limit={output}"));
        }
        if let Some(scratch) = self.scratch {
            args.push(format!("--scratch={scratch}"));
        }
        for dir in &self.dirs {
            let mode = if dir.read_only { ":ro" } else { "" };
            args.push(format!("--dir={}:{}{mode}", dir.host.display(), dir.guest));
        }
        args.extend(self.path_args(remote));
        args
    }
}

/// A size flag in MiB, in bytes.
fn mib(flag: &str, value: usize) -> anyhow::Result<usize> {
    value
        .checked_mul(1 << 20)
        .with_context(|| format!("{flag} {value} is too large"))
}

/// A duration flag in seconds; 0 means none.
pub(crate) fn seconds(flag: &str, value: f64) -> anyhow::Result<Option<Duration>> {
    if value == 0.0 {
        return Ok(None);
    }
    // At most a year: far beyond any real limit, and every deadline
    // computed from it stays representable.
    const MAX: f64 = 365.0 * 24.0 * 3600.0;
    if !(value.is_finite() && value > 0.0 && value <= MAX) {
        anyhow::bail!("{flag} must be a number of seconds from 0 (none) to {MAX}, not {value}");
    }
    Ok(Some(Duration::from_secs_f64(value)))
}
