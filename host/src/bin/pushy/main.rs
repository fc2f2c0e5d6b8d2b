//! The `pushy` command line.

// `print!` and friends panic when stdout or stderr is a closed pipe or a full
// device (`pushy eval ... | head -c1`, `>/dev/full`); these drop the write.
macro_rules! outln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($arg)*);
    }};
}
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = write!(std::io::stdout(), $($arg)*);
    }};
}
macro_rules! errln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), $($arg)*);
    }};
}
macro_rules! err {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = write!(std::io::stderr(), $($arg)*);
    }};
}

mod repl;
mod testing;

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
    /// Time limit per call, in seconds (0: none) [default: 60].
    #[arg(long, value_name = "S")]
    timeout: Option<f64>,
    /// Memory limit of the sandbox, in MiB [default: 512].
    #[arg(long, value_name = "MIB")]
    memory: Option<usize>,
    /// Output limit per call, in MiB (the rest is cut with a notice) [default: 64].
    #[arg(long, value_name = "MIB")]
    output_limit: Option<usize>,
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
    /// The script to run, then its arguments (its sys.argv[1:]): everything
    /// after SCRIPT belongs to the script, as with python3.
    #[arg(
        value_name = "SCRIPT [ARGS]",
        required = true,
        num_args = 1..,
        trailing_var_arg = true,
        allow_hyphen_values = true
    )]
    command: Vec<String>,
}

#[derive(Args)]
struct EvalArgs {
    #[command(flatten)]
    target: TargetArgs,
    #[command(flatten)]
    limits: LimitArgs,
    /// A Python expression.
    #[arg(allow_hyphen_values = true)]
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
        pushy::sandbox::check_mounts(&self.dirs)?;
        config.mounts = self.dirs.clone();
        Ok(config)
    }

    /// The limits given on the command line, for a host elsewhere to apply
    /// (each only tightens that host's own).
    fn requested(&self) -> anyhow::Result<pushy::protocol::RequestedLimits> {
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
        Ok(asked)
    }

    /// Whether these flags can be honoured over `target`.
    fn check_target(&self, target: &pushy::Target) -> anyhow::Result<()> {
        if matches!(target, pushy::Target::Daemon(_)) && !self.dirs.is_empty() {
            anyhow::bail!(
                "--dir cannot be used with a daemon: target: the daemon runs on its own \
                 host, where this machine's directories do not exist; start the daemon \
                 with `pushy serve --dir` instead"
            );
        }
        Ok(())
    }

    /// The same limits as flags for a `pushy host` started elsewhere.
    fn host_args(&self) -> Vec<String> {
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
        // Colour codes only where a person reads them, not in log files.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let command = match Cli::parse().command {
        // One blocking session; no async runtime (see `serve_stdio`).
        Command::Host(args) => return host(args),
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
            Command::Run(args) => run(args).await,
            Command::Eval(args) => eval(args).await,
            Command::Repl(args) => repl::repl(args.target, args.limits).await,
            Command::Host(args) => host(args),
            Command::Serve(args) => serve_command(args).await,
            Command::Test(args) => test_command(args).await,
        }
    });
    // A read of stdin for a session that has ended must not keep us here.
    runtime.shutdown_background();
    code
}

/// A size flag in MiB, in bytes.
fn mib(flag: &str, value: usize) -> anyhow::Result<usize> {
    value
        .checked_mul(1 << 20)
        .with_context(|| format!("{flag} {value} is too large"))
}

/// A duration flag in seconds; 0 means none.
fn seconds(flag: &str, value: f64) -> anyhow::Result<Option<Duration>> {
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

fn usage(error: impl std::fmt::Display) -> ExitCode {
    errln!("pushy: {error}");
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
    connect_with_input(target, limits, pushy::InputMode::Closed).await
}

/// [`connect`], with the session's stdin.
async fn connect_with_input(
    target: &TargetArgs,
    limits: &LimitArgs,
    input: pushy::InputMode,
) -> Result<Connection, ExitCode> {
    let session = limits.session_config().map_err(usage)?;
    let parsed: pushy::Target = target.target.parse().map_err(usage)?;
    limits.check_target(&parsed).map_err(usage)?;
    let mut config = ConnectionConfig::default();
    config.input = input;
    config.stop_on_output_error = true;
    if parsed == pushy::Target::Embedded {
        let sandbox = sandbox_with(session.clone())?;
        return sandbox
            .connect_with(session, config)
            .await
            .map_err(|e| report(&e));
    }
    config.token_file = target.token_file.clone();
    config.tls_ca = target.tls_ca.clone();
    config.host_args = limits.host_args();
    config.limits = limits.requested().map_err(usage)?;
    pushy::connect_with(&target.target, config)
        .await
        .map_err(|e| report(&e))
}

async fn run(args: RunArgs) -> ExitCode {
    let (script, script_args) = match args.command.split_first() {
        Some(split) => split,
        None => return usage("run needs a SCRIPT"),
    };
    let source = match std::fs::read(script) {
        Ok(source) => source,
        Err(error) => {
            errln!("pushy: can't open file '{script}': {error}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    let con = match connect_with_input(&args.target, &args.limits, pushy::InputMode::Inherit).await
    {
        Ok(con) => con,
        Err(code) => return code,
    };
    let filename = script.clone();
    let mut argv = vec![filename.clone()];
    argv.extend(script_args.iter().cloned());
    if let Err(error) = con.set_argv(&argv).await {
        return report(&error);
    }
    let result = con.run_script(&source, &filename).await;
    if let Some(error) = output_failed(&con) {
        return error;
    }
    match result {
        Ok(status) => ExitCode::from(status.clamp(0, 255) as u8),
        Err(error) => report(&error),
    }
}

async fn eval(args: EvalArgs) -> ExitCode {
    let con = match connect(&args.target, &args.limits).await {
        Ok(con) => con,
        Err(code) => return code,
    };
    // The repr as text UTF-8 can carry, whatever the object's __repr__ returns.
    const REPR: &str = "def __pushy_repr(v):\n    \
        return repr(v).encode('utf-8', 'backslashreplace').decode('utf-8')";
    let result = match con.define(REPR).await {
        Ok(repr) => match con.eval(&args.expression).await {
            Ok(value) => repr
                .call(&(value,))
                .await
                .and_then(|v| v.extract::<String>()),
            Err(e) => Err(e),
        },
        Err(e) => Err(e),
    };
    match result {
        Ok(mut text) => {
            // The value is printed here, so the output limit is applied here.
            let limit = args
                .limits
                .output_limit
                .unwrap_or(64)
                .saturating_mul(1 << 20);
            let cut = text.len() > limit;
            if cut {
                text.truncate(text.floor_char_boundary(limit));
            }
            use std::io::Write as _;
            if !cut {
                text.push('\n');
            }
            let mut stdout = std::io::stdout().lock();
            let written = stdout
                .write_all(text.as_bytes())
                .and_then(|()| stdout.flush());
            drop(stdout);
            if cut {
                errln!(
                    "\n[pushy: output limit of {limit} bytes reached; the rest of the value was not printed]"
                );
            }
            if let Err(error) = written {
                errln!("pushy: cannot write the value: {error}");
                return ExitCode::FAILURE;
            }
            output_failed(&con).unwrap_or(ExitCode::SUCCESS)
        }
        Err(Error::Python(exception)) if exception.is_instance("SystemExit") => {
            exit_status(&con, &exception).await
        }
        Err(error) => report(&error),
    }
}

/// Output that could not be written is a failure, as for python3 (whose
/// print raises, and whose final flush makes it exit 1 or 120).
fn output_failed(con: &Connection) -> Option<ExitCode> {
    let kind = con.output_error()?;
    errln!(
        "pushy: cannot write the session's output: {}",
        std::io::Error::from(kind)
    );
    Some(ExitCode::FAILURE)
}

/// The exit status a `SystemExit` asks for, as python3 computes it: its
/// `code` if an int, 0 for None, else 1 after printing the code.
/// The guest computes it, as for `pushy run` (`pushy_guest.dispatch.exit_status`).
async fn exit_status(con: &Connection, exception: &pushy::PythonError) -> ExitCode {
    const STATUS: &str = "def __pushy_exit_status(request):\n    \
        from pushy_guest.dispatch import exit_status\n    \
        return exit_status(request.code)";
    let Some(request) = &exception.exception else {
        return ExitCode::FAILURE;
    };
    let status = match con.define(STATUS).await {
        Ok(helper) => helper
            .call(&(request,))
            .await
            .and_then(|v| v.extract::<u8>()),
        Err(error) => Err(error),
    };
    match status {
        Ok(status) => ExitCode::from(status),
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
        Err(error) => return usage(format!("{:#}", anyhow::Error::from(error))),
    };
    if token.is_none() && !args.no_auth {
        return usage(
            "serve needs --token-file FILE (or PUSHY_TOKEN_FILE); --no-auth to accept anyone",
        );
    }
    let idle_timeout = match seconds("--idle-timeout", args.idle_timeout) {
        Ok(idle_timeout) => idle_timeout,
        Err(error) => return usage(error),
    };
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
    // A limit no session can start with is a mistake to report now, not
    // to every client.
    if let Err(error) = sandbox.check_session(&session) {
        return usage(error);
    }
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
    config.idle_timeout = idle_timeout;
    errln!("pushy: listening on {address}");
    match serve(listener, sandbox, config, shutdown_signal()).await {
        Ok(()) => {
            errln!("pushy: stopped");
            ExitCode::SUCCESS
        }
        Err(error) => fail(&error.to_string()),
    }
}

async fn test_command(args: TestArgs) -> ExitCode {
    use testing::{Summary, TestOptions, discover, junit_xml, run_suite};
    use std::io::IsTerminal;
    let session = match args.limits.session_config() {
        Ok(session) => session,
        Err(error) => return usage(error),
    };
    for target in &args.targets {
        let checked = target
            .parse::<pushy::Target>()
            .map_err(anyhow::Error::from)
            .and_then(|target| args.limits.check_target(&target));
        if let Err(error) = checked {
            return usage(error);
        }
    }
    let requested = match args.limits.requested() {
        Ok(requested) => requested,
        Err(error) => return usage(error),
    };
    let files = match discover(&args.paths) {
        Ok(files) => files,
        Err(error) => return usage(format!("cannot read the test paths: {error}")),
    };
    if files.is_empty() {
        errln!("pushy: no test files (test_*.py, *_test.py) found");
        return ExitCode::from(5);
    }
    // A report that cannot be written is found out before the run, not after.
    if let Some(path) = &args.junit
        && let Err(error) = std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(path)
    {
        return usage(format!(
            "cannot write the JUnit report to {}: {error}",
            path.display()
        ));
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
    options.connection.limits = requested;

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
        // A file that ran but had nothing selected by -k is not listed.
        let selected_nothing = report.ran && report.results.is_empty() && report.not_run == 0;
        let mut line = if !report.ran {
            format!(
                "--   {} (not run: --fail-fast stopped the run)",
                report.file.display()
            )
        } else {
            let status = if failed > 0 { "FAIL" } else { "ok  " };
            let mut line = format!(
                "{status} {} ({} tests",
                report.file.display(),
                report.results.len()
            );
            if failed > 0 {
                line.push_str(&format!(", {failed} failing"));
            }
            if report.not_run > 0 {
                line.push_str(&format!(", {} not run", report.not_run));
            }
            line.push(')');
            line
        };
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
            None if selected_nothing => {}
            None => outln!("{line}"),
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
        outln!(
            "\n=== {} :: {} — {}",
            result.file.display(),
            result.name,
            result.outcome.word()
        );
        if !result.message.is_empty() {
            outln!("{}", result.message);
        }
        if !result.traceback.is_empty() {
            out!("{}", result.traceback);
        }
        if !result.stdout.is_empty() {
            outln!("--- captured stdout ---\n{}", result.stdout.trim_end());
        }
        if !result.stderr.is_empty() {
            outln!("--- captured stderr ---\n{}", result.stderr.trim_end());
        }
    }
    let mut status = ExitCode::SUCCESS;
    if let Some(path) = &args.junit
        && let Err(error) = std::fs::write(path, junit_xml(&reports))
    {
        errln!(
            "pushy: cannot write the JUnit report to {}: {error}",
            path.display()
        );
        status = ExitCode::FAILURE;
    }
    // Files whose targets all died: why, once, where errors go.
    if let Some(died) = reports
        .iter()
        .flat_map(|r| &r.results)
        .find(|r| r.name == "<targets>")
    {
        errln!("pushy: {}", died.message);
    }
    let summary = Summary::of(&reports);
    if summary.errors + summary.timed_out + summary.out_of_memory > 0 {
        outln!(
            "({} assertion failures, {} errors, {} timed out, {} out of memory)",
            summary.failed,
            summary.errors,
            summary.timed_out,
            summary.out_of_memory
        );
    }
    if let Some(not_run) = summary.not_run_line() {
        outln!("(--fail-fast stopped the run: {not_run})");
    }
    outln!("{}", summary.line());
    if summary.failing() > 0 {
        return ExitCode::FAILURE;
    }
    if summary.selected == 0 {
        // pytest's status 5: nothing collected, nothing selected.
        match &args.pattern {
            Some(pattern) => errln!(
                "pushy: no tests selected: -k {pattern:?} matches none of the {} tests collected",
                summary.collected
            ),
            None => errln!("pushy: no tests collected"),
        }
        return ExitCode::from(5);
    }
    status
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
