//! The `pushy` command line.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use pushy::{Error, Mount, Sandbox, SandboxConfig, SessionConfig};

/// Exit status when a time or memory limit ended the run.
const EXIT_LIMIT: u8 = 3;
/// Exit status of usage errors (as clap and python3 use it).
const EXIT_USAGE: u8 = 2;

#[derive(Parser)]
#[command(
    name = "pushy",
    version,
    about = "Run Python in a wasmtime sandbox and drive it remotely"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a script in a fresh sandbox; its output streams live.
    Run(RunArgs),
    /// Evaluate an expression in a fresh sandbox and print its repr.
    Eval(EvalArgs),
}

#[derive(Args)]
struct LimitArgs {
    /// Time limit per call, in seconds (0: none).
    #[arg(long, value_name = "S", default_value_t = 60.0)]
    timeout: f64,
    /// Memory limit of the sandbox, in MiB.
    #[arg(long, value_name = "MIB", default_value_t = 512)]
    memory: usize,
    /// Output limit per call, in MiB (the rest is cut with a notice).
    #[arg(long, value_name = "MIB", default_value_t = 64)]
    output_limit: usize,
    /// Mount a host directory into the sandbox (repeatable).
    #[arg(long = "dir", value_name = "HOST:GUEST[:ro]")]
    dirs: Vec<Mount>,
}

#[derive(Args)]
struct RunArgs {
    #[command(flatten)]
    limits: LimitArgs,
    /// The script to run.
    script: PathBuf,
    /// Arguments for the script (its sys.argv[1:]).
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    args: Vec<String>,
}

#[derive(Args)]
struct EvalArgs {
    #[command(flatten)]
    limits: LimitArgs,
    /// A Python expression.
    expression: String,
}

impl LimitArgs {
    fn session_config(&self) -> anyhow::Result<SessionConfig> {
        if !(self.timeout.is_finite() && self.timeout >= 0.0) {
            anyhow::bail!("--timeout must be a non-negative number of seconds");
        }
        let mut config = SessionConfig::default();
        config.time_limit = (self.timeout > 0.0).then(|| Duration::from_secs_f64(self.timeout));
        config.memory_limit = self
            .memory
            .checked_mul(1 << 20)
            .context("--memory is too large")?;
        config.output_limit = self
            .output_limit
            .checked_mul(1 << 20)
            .context("--output-limit is too large")?;
        config.mounts = self.dirs.clone();
        Ok(config)
    }
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("pushy: cannot start the runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async {
        match cli.command {
            Command::Run(args) => run(args).await,
            Command::Eval(args) => eval(args).await,
        }
    })
}

async fn connect(limits: &LimitArgs) -> Result<pushy::Connection, ExitCode> {
    let session = limits.session_config().map_err(|e| {
        eprintln!("pushy: {e:#}");
        ExitCode::from(EXIT_USAGE)
    })?;
    let mut config = SandboxConfig::default();
    config.session = session;
    // Blocking here is fine: nothing else runs on this runtime yet, and a
    // thread hop would cost more than it saves.
    let sandbox =
        Sandbox::new(config).map_err(|e| fail(&format!("{:#}", anyhow::Error::from(e))))?;
    sandbox.connect().await.map_err(|e| report(&e))
}

async fn run(args: RunArgs) -> ExitCode {
    let source = match std::fs::read_to_string(&args.script) {
        Ok(source) => source,
        Err(error) => {
            eprintln!(
                "pushy: can't open file '{}': {error}",
                args.script.display()
            );
            return ExitCode::from(EXIT_USAGE);
        }
    };
    let con = match connect(&args.limits).await {
        Ok(con) => con,
        Err(code) => return code,
    };
    let filename = args.script.display().to_string();
    let mut argv = vec![filename.clone()];
    argv.extend(args.args);
    if let Err(error) = con.set_argv(&argv).await {
        return report(&error);
    }
    match con.run_script(&source, &filename).await {
        Ok(status) => ExitCode::from(status.clamp(0, 255) as u8),
        Err(error) => report(&error),
    }
}

async fn eval(args: EvalArgs) -> ExitCode {
    let con = match connect(&args.limits).await {
        Ok(con) => con,
        Err(code) => return code,
    };
    let result = match con.eval(&args.expression).await {
        Ok(pushy::Value::Object(object)) => object.repr().await,
        Ok(value) => match con.define("def __pushy_repr(v):\n    return repr(v)").await {
            Ok(repr) => repr.call(&(value,)).await.and_then(|v| v.extract()),
            Err(e) => Err(e),
        },
        Err(e) => Err(e),
    };
    match result {
        Ok(text) => {
            println!("{text}");
            ExitCode::SUCCESS
        }
        Err(error) => report(&error),
    }
}

fn fail(message: &str) -> ExitCode {
    eprintln!("pushy: {message}");
    ExitCode::FAILURE
}

/// Prints an error the way a user needs it and picks the exit status.
fn report(error: &Error) -> ExitCode {
    match error {
        Error::Python(exception) => {
            let text = if exception.traceback.is_empty() {
                format!("{exception}\n")
            } else {
                exception.traceback.clone()
            };
            eprint!("{text}");
            if exception.is_instance("MemoryError") {
                eprintln!("pushy: memory limit exceeded (MemoryError)");
                return ExitCode::from(EXIT_LIMIT);
            }
            ExitCode::FAILURE
        }
        Error::TimeLimit { .. } | Error::MemoryLimit { .. } => {
            eprintln!("pushy: {error}");
            ExitCode::from(EXIT_LIMIT)
        }
        other => fail(&other.to_string()),
    }
}
