//! The `pushy` command line.
//!
//! - `cli`: the arguments (clap), and how limit flags become session limits.
//! - `run`: `pushy run` and `pushy eval`.
//! - `repl`: `pushy repl`, python3's prompt over a session.
//! - `serve`: `pushy host --stdio` and `pushy serve`.
//! - `test`: `pushy test`'s flags and report; `testing`: its harness
//!   (discovery, parallel runs over targets, JUnit XML).
//! - `output`: print macros that drop a write instead of panicking.
//!
//! Here, shared by the commands: connecting with the limit flags, and an
//! error's message and exit status.

#[macro_use]
mod output;
mod cli;
mod repl;
mod run;
mod serve;
mod test;
mod testing;

use std::process::ExitCode;

use clap::Parser;
use pushy::{Connection, ConnectionConfig, Error, Sandbox, SandboxConfig, SessionConfig};

use crate::cli::{Cli, Command, LimitArgs, TargetArgs};

/// Exit status when a time or memory limit ended the run.
const EXIT_LIMIT: u8 = 3;
/// Exit status of usage errors (as clap and python3 use it).
const EXIT_USAGE: u8 = 2;

fn main() -> ExitCode {
    // Large values reuse their buffers instead of faulting in fresh pages.
    pushy::sandbox::heap::keep_large_blocks();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        // Colour codes only where a person reads them, not in log files.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let command = match Cli::parse().command {
        // One blocking session; no async runtime (see `serve_stdio`).
        Command::Host(args) => return serve::host(args),
        command => command,
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            errln!("pushy: cannot start the runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let code = runtime.block_on(async {
        match command {
            Command::Run(args) => run::run(args).await,
            Command::Eval(args) => run::eval(args).await,
            Command::Repl(args) => repl::repl(args.target, args.limits).await,
            Command::Host(args) => serve::host(args),
            Command::Serve(args) => serve::serve_command(args).await,
            Command::Test(args) => test::test_command(args).await,
        }
    });
    // A read of stdin for a session that has ended must not keep us here.
    runtime.shutdown_background();
    code
}

fn usage(error: impl std::fmt::Display) -> ExitCode {
    errln!("pushy: {error}");
    ExitCode::from(EXIT_USAGE)
}

/// A sandbox whose sessions have `session`'s limits, with `preload`
/// imported, for at most `live_sessions` sessions at once.
fn sandbox_with(
    session: SessionConfig,
    preload: &[String],
    live_sessions: u32,
) -> Result<Sandbox, ExitCode> {
    let mut config = SandboxConfig::default();
    config.session = session;
    config.preload = preload.to_vec();
    config.max_live_sessions = live_sessions;
    // Blocking here is fine: nothing else runs on this runtime yet, and a
    // thread hop would cost more than it saves.
    Sandbox::new(config).map_err(|e| fail(&format!("{:#}", anyhow::Error::from(e))))
}

/// Connects to `target` with `limits` (applied by whichever host runs the session).
pub(crate) async fn connect(
    target: &TargetArgs,
    limits: &LimitArgs,
) -> Result<Connection, ExitCode> {
    connect_with_input(target, limits, pushy::InputMode::Closed).await
}

/// [`connect`], with the session's stdin.
async fn connect_with_input(
    target: &TargetArgs,
    limits: &LimitArgs,
    input: pushy::InputMode,
) -> Result<Connection, ExitCode> {
    let parsed: pushy::Target = target.target.parse().map_err(usage)?;
    limits.check_target(&parsed).map_err(usage)?;
    let mut config = ConnectionConfig::default();
    config.input = input;
    config.stop_on_output_error = true;
    if parsed == pushy::Target::Embedded {
        let session = limits.session_config().map_err(usage)?;
        // One session (and the check before it).
        let sandbox = sandbox_with(session.clone(), &limits.preload, 2)?;
        return Connection::embedded_with(&sandbox, session, config)
            .await
            .map_err(|e| report(&e));
    }
    config.token_file = target.token_file.clone();
    config.tls_ca = target.tls_ca.clone();
    if parsed == pushy::Target::Local {
        // Same machine: a bad --path is a usage error here, before the child.
        limits.session_config().map_err(usage)?;
    }
    config.host_args = limits.host_args(matches!(parsed, pushy::Target::Ssh(_)));
    config.limits = limits.requested().map_err(usage)?;
    pushy::connect_with(&target.target, config)
        .await
        .map_err(|e| report(&e))
}

fn fail(message: &str) -> ExitCode {
    errln!("pushy: {message}");
    ExitCode::FAILURE
}

/// Prints an error the way a user needs it and picks the exit status.
pub(crate) fn report(error: &Error) -> ExitCode {
    match error {
        Error::Python(exception) => {
            let text = if exception.traceback.is_empty() {
                format!("{exception}\n")
            } else {
                exception.traceback.clone()
            };
            err!("{text}");
            if exception.is_instance("MemoryError") && exception.memory_limit_hit {
                errln!("pushy: memory limit exceeded (MemoryError)");
                return ExitCode::from(EXIT_LIMIT);
            }
            if exception.is_instance("KeyboardInterrupt") {
                // python3 dies of the SIGINT it re-raises: the shell says 130.
                return ExitCode::from(130);
            }
            ExitCode::FAILURE
        }
        Error::TimeLimit { .. } | Error::MemoryLimit { .. } => {
            errln!("pushy: {error}");
            ExitCode::from(EXIT_LIMIT)
        }
        Error::Exited { status } => ExitCode::from((*status & 0xFF) as u8),
        Error::UnsupportedTarget(_) => usage(error),
        other => fail(&other.with_causes()),
    }
}
