//! The `pushy` command line.

mod repl;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use pushy::transport::auth::Token;
use pushy::transport::server::{ServerConfig, serve, serve_stdio};
use pushy::{Connection, ConnectionConfig, Error, Mount, Sandbox, SandboxConfig, SessionConfig};

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
struct TestArgs {
    /// Test files or directories (test_*.py, *_test.py).
    #[arg(default_value = ".")]
    paths: Vec<PathBuf>,
    /// Sessions at once [default: number of cores].
    #[arg(long, short = 'j', value_name = "N")]
    jobs: Option<usize>,
    /// Where to run (repeatable: files are spread over all) [default: embedded:].
    #[arg(long = "target", value_name = "URL")]
    targets: Vec<String>,
    /// Token file for daemon: targets [default: $PUSHY_TOKEN_FILE].
    #[arg(long, value_name = "FILE")]
    token_file: Option<PathBuf>,
    /// Speak TLS to daemon: targets, trusting this CA (PEM).
    #[arg(long, value_name = "FILE")]
    tls_ca: Option<PathBuf>,
    /// Write JUnit XML here.
    #[arg(long, value_name = "FILE")]
    junit: Option<PathBuf>,
    /// Only tests whose FILE_STEM::NAME contains PATTERN.
    #[arg(short = 'k', value_name = "PATTERN")]
    pattern: Option<String>,
    /// Stop at the first failure.
    #[arg(long)]
    fail_fast: bool,
    #[command(flatten)]
    limits: LimitArgs,
}

#[derive(Args, Clone)]
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

#[derive(Args, Clone)]
struct TargetArgs {
    /// Where the sandbox runs: embedded:, local:, daemon:HOST:PORT, ssh:[USER@]HOST[:PORT].
    #[arg(long, value_name = "URL", default_value = "embedded:")]
    target: String,
    /// Token file for daemon: targets [default: $PUSHY_TOKEN_FILE].
    #[arg(long, value_name = "FILE")]
    token_file: Option<PathBuf>,
    /// Speak TLS to a daemon: target, trusting the CA certificate(s) in this PEM file.
    #[arg(long, value_name = "FILE")]
    tls_ca: Option<PathBuf>,
}

#[derive(Args)]
struct RunArgs {
    #[command(flatten)]
    target: TargetArgs,
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
    target: TargetArgs,
    #[command(flatten)]
    limits: LimitArgs,
    /// A Python expression.
    expression: String,
}

#[derive(Args)]
struct ReplArgs {
    #[command(flatten)]
    target: TargetArgs,
    #[command(flatten)]
    limits: LimitArgs,
}

#[derive(Args)]
struct HostArgs {
    /// Speak the protocol on stdin/stdout (the only mode).
    #[arg(long, required = true)]
    stdio: bool,
    #[command(flatten)]
    limits: LimitArgs,
}

#[derive(Args)]
struct ServeArgs {
    /// Address to listen on.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:7700")]
    listen: String,
    /// Clients must prove they know the token in this file [default: $PUSHY_TOKEN_FILE].
    #[arg(long, value_name = "FILE")]
    token_file: Option<PathBuf>,
    /// Accept clients without a token (only for trusted networks).
    #[arg(long)]
    no_auth: bool,
    /// Serve TLS with this certificate chain (PEM); needs --tls-key.
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// Private key (PEM) of --tls-cert.
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Sessions at once; more are refused.
    #[arg(long, value_name = "N", default_value_t = 64)]
    max_sessions: usize,
    /// Close a session after this many idle seconds (0: never).
    #[arg(long, value_name = "S", default_value_t = 900.0)]
    idle_timeout: f64,
    #[command(flatten)]
    limits: LimitArgs,
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

    /// The same limits as flags for a `pushy host` started elsewhere.
    fn host_args(&self) -> Vec<String> {
        let mut args = vec![
            format!("--timeout={}", self.timeout),
            format!("--memory={}", self.memory),
            format!("--output-limit={}", self.output_limit),
        ];
        for dir in &self.dirs {
            let mode = if dir.read_only { ":ro" } else { "" };
            args.push(format!("--dir={}:{}{mode}", dir.host.display(), dir.guest));
        }
        args
    }
}

fn main() -> ExitCode {
    // Large values reuse their buffers instead of faulting in fresh pages.
    pushy::sandbox::heap::keep_large_blocks();
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
            Command::Repl(args) => repl::repl(args.target, args.limits).await,
            Command::Host(args) => host(args),
            Command::Serve(args) => serve_command(args).await,
            Command::Test(args) => test_command(args).await,
        }
    })
}

fn usage(error: impl std::fmt::Display) -> ExitCode {
    eprintln!("pushy: {error}");
    ExitCode::from(EXIT_USAGE)
}

fn sandbox_with(session: SessionConfig) -> Result<Sandbox, ExitCode> {
    let mut config = SandboxConfig::default();
    config.session = session;
    // Blocking here is fine: nothing else runs on this runtime yet, and a
    // thread hop would cost more than it saves.
    Sandbox::new(config).map_err(|e| fail(&format!("{:#}", anyhow::Error::from(e))))
}

/// Connects to `target` with `limits` (applied by whichever host runs the session).
pub(crate) async fn connect(
    target: &TargetArgs,
    limits: &LimitArgs,
) -> Result<Connection, ExitCode> {
    let session = limits.session_config().map_err(usage)?;
    let parsed: pushy::Target = target.target.parse().map_err(usage)?;
    if parsed == pushy::Target::Embedded {
        let sandbox = sandbox_with(session)?;
        return sandbox.connect().await.map_err(|e| report(&e));
    }
    let mut config = ConnectionConfig::default();
    config.token_file = target.token_file.clone();
    config.tls_ca = target.tls_ca.clone();
    config.host_args = limits.host_args();
    pushy::connect_with(&target.target, config)
        .await
        .map_err(|e| report(&e))
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
    let con = match connect(&args.target, &args.limits).await {
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
    let con = match connect(&args.target, &args.limits).await {
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

fn host(args: HostArgs) -> ExitCode {
    let session = match args.limits.session_config() {
        Ok(session) => session,
        Err(error) => return usage(error),
    };
    let sandbox = match sandbox_with(session.clone()) {
        Ok(sandbox) => sandbox,
        Err(code) => return code,
    };
    match serve_stdio(&sandbox, &session) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => fail(&error.to_string()),
    }
}

async fn serve_command(args: ServeArgs) -> ExitCode {
    let session = match args.limits.session_config() {
        Ok(session) => session,
        Err(error) => return usage(error),
    };
    let token = match Token::from_flag_or_env(args.token_file.as_deref()) {
        Ok(token) => token,
        Err(error) => return usage(format!("cannot read the token file: {error}")),
    };
    if token.is_none() && !args.no_auth {
        return usage(
            "serve needs --token-file FILE (or PUSHY_TOKEN_FILE); --no-auth to accept anyone",
        );
    }
    if !(args.idle_timeout.is_finite() && args.idle_timeout >= 0.0) {
        return usage("--idle-timeout must be a non-negative number of seconds");
    }
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => match pushy::transport::tls::server_config(cert, key) {
            Ok(tls) => Some(tls),
            Err(error) => return usage(error),
        },
        _ => None,
    };
    let sandbox = match sandbox_with(session.clone()) {
        Ok(sandbox) => sandbox,
        Err(code) => return code,
    };
    let listener = match tokio::net::TcpListener::bind(&args.listen).await {
        Ok(listener) => listener,
        Err(error) => return fail(&format!("cannot listen on {}: {error}", args.listen)),
    };
    let address = listener
        .local_addr()
        .map(|a| a.to_string())
        .unwrap_or_default();
    let mut config = ServerConfig::default();
    config.token = token;
    config.tls = tls;
    config.max_sessions = args.max_sessions.max(1);
    config.session = session;
    config.idle_timeout =
        (args.idle_timeout > 0.0).then(|| Duration::from_secs_f64(args.idle_timeout));
    eprintln!("pushy: listening on {address}");
    match serve(listener, sandbox, config, shutdown_signal()).await {
        Ok(()) => {
            eprintln!("pushy: stopped");
            ExitCode::SUCCESS
        }
        Err(error) => fail(&error.to_string()),
    }
}

async fn test_command(args: TestArgs) -> ExitCode {
    use pushy::testing::{Summary, TestOptions, discover, junit_xml, run_suite};
    use std::io::IsTerminal;
    let session = match args.limits.session_config() {
        Ok(session) => session,
        Err(error) => return usage(error),
    };
    for target in &args.targets {
        if let Err(error) = target.parse::<pushy::Target>() {
            return usage(error);
        }
    }
    let files = match discover(&args.paths) {
        Ok(files) => files,
        Err(error) => return usage(format!("cannot read the test paths: {error}")),
    };
    if files.is_empty() {
        eprintln!("pushy: no test files (test_*.py, *_test.py) found");
        return ExitCode::from(5);
    }
    let mut options = TestOptions::default();
    if let Some(jobs) = args.jobs {
        options.jobs = jobs.max(1);
    }
    if !args.targets.is_empty() {
        options.targets = args.targets.clone();
    }
    options.pattern = args.pattern.clone();
    options.fail_fast = args.fail_fast;
    options.session = session;
    options.connection.token_file = args.token_file.clone();
    options.connection.tls_ca = args.tls_ca.clone();
    options.connection.host_args = args.limits.host_args();

    let total = files.len() as u64;
    let bar = std::io::stderr().is_terminal().then(|| {
        let bar = indicatif::ProgressBar::new(total);
        bar.set_style(
            indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} files  {msg}")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        bar
    });
    let result = run_suite(files, options, |report| {
        let failed = report
            .results
            .iter()
            .filter(|r| r.outcome.is_failure())
            .count();
        let status = if failed > 0 { "FAIL" } else { "ok  " };
        let mut line = format!(
            "{status} {} ({} tests",
            report.file.display(),
            report.results.len()
        );
        if failed > 0 {
            line.push_str(&format!(", {failed} failing"));
        }
        line.push(')');
        if !report.retried_after.is_empty() {
            line.push_str(&format!(
                " [retried after: {}]",
                report.retried_after.join("; ")
            ));
        }
        match &bar {
            Some(bar) => {
                if failed > 0 || !report.retried_after.is_empty() {
                    bar.println(line);
                }
                bar.inc(1);
            }
            None => println!("{line}"),
        }
    })
    .await;
    if let Some(bar) = &bar {
        bar.finish_and_clear();
    }
    let reports = match result {
        Ok(reports) => reports,
        Err(error) => return report(&error),
    };
    // Failures in full: the remote traceback and what the test printed.
    for result in reports
        .iter()
        .flat_map(|r| &r.results)
        .filter(|r| r.outcome.is_failure())
    {
        println!(
            "\n=== {} :: {} — {}",
            result.file.display(),
            result.name,
            result.outcome.word()
        );
        if !result.message.is_empty() {
            println!("{}", result.message);
        }
        if !result.traceback.is_empty() {
            print!("{}", result.traceback);
        }
        if !result.stdout.is_empty() {
            println!("--- captured stdout ---\n{}", result.stdout.trim_end());
        }
        if !result.stderr.is_empty() {
            println!("--- captured stderr ---\n{}", result.stderr.trim_end());
        }
    }
    if let Some(path) = &args.junit
        && let Err(error) = std::fs::write(path, junit_xml(&reports))
    {
        eprintln!("pushy: cannot write {}: {error}", path.display());
    }
    let summary = Summary::of(&reports);
    if summary.errors + summary.timed_out + summary.out_of_memory > 0 {
        println!(
            "({} assertion failures, {} errors, {} timed out, {} out of memory)",
            summary.failed, summary.errors, summary.timed_out, summary.out_of_memory
        );
    }
    println!("{}", summary.line());
    if summary.failing() > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let Ok(mut term) = signal(SignalKind::terminate()) else {
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => {},
        _ = tokio::signal::ctrl_c() => {},
    }
}

fn fail(message: &str) -> ExitCode {
    eprintln!("pushy: {message}");
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
        Error::UnsupportedTarget(_) => usage(error),
        other => fail(&other.to_string()),
    }
}
