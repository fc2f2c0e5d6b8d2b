//! Running test files: each in a fresh session, `jobs` at once, spread over
//! the targets; a target that dies has its unfinished files retried on the
//! others.

use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::mpsc;

use super::{Outcome, TestResult};
use pushy::{
    Connection, ConnectionConfig, Error, OutputMode, RemoteObject, Sandbox, SandboxConfig,
    SessionConfig, Value,
};

/// What `pushy test` was asked to do.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct TestOptions {
    /// Sessions at once. Default: the number of cores.
    pub jobs: usize,
    /// Where sessions run (`embedded:` when empty).
    pub targets: Vec<String>,
    /// Only tests whose `file::name` contains this.
    pub pattern: Option<String>,
    /// Stop at the first failure.
    pub fail_fast: bool,
    /// Limits of every session.
    pub session: SessionConfig,
    /// Settings for remote targets (token, TLS, host arguments).
    pub connection: ConnectionConfig,
}

impl Default for TestOptions {
    fn default() -> Self {
        TestOptions {
            jobs: std::thread::available_parallelism().map_or(2, |n| n.get()),
            targets: vec!["embedded:".to_owned()],
            pattern: None,
            fail_fast: false,
            session: SessionConfig::default(),
            connection: ConnectionConfig::default(),
        }
    }
}

/// The results of one file.
#[derive(Clone, Debug)]
pub struct FileReport {
    /// The test file.
    pub file: PathBuf,
    /// The target it finally ran on.
    pub target: String,
    /// Targets that died while running it (it was retried elsewhere).
    pub retried_after: Vec<String>,
    /// Its tests' results (and those of fixtures that failed to tear down).
    pub results: Vec<TestResult>,
    /// Whether it ran at all: false when `--fail-fast` stopped the run first.
    pub ran: bool,
    /// Its selected tests that did not run because `--fail-fast` stopped the run.
    pub not_run: usize,
    /// Tests it has before `-k` selects (1 for a script).
    pub collected: usize,
}

impl FileReport {
    fn new(file: PathBuf, retried_after: Vec<String>) -> FileReport {
        FileReport {
            file,
            target: String::new(),
            retried_after,
            results: Vec::new(),
            ran: true,
            not_run: 0,
            collected: 0,
        }
    }
}

/// A target that stopped answering: the file goes back in the queue.
struct TargetDied(String);

struct Shared {
    queue: Mutex<VecDeque<(PathBuf, Vec<String>)>>,
    /// Targets that died, with the last error seen on each.
    dead: Mutex<HashMap<String, String>>,
    stop: AtomicBool,
    options: TestOptions,
    sandbox: Option<Sandbox>,
}

/// Runs `files`; `on_file` sees each file's report as it finishes.
pub async fn run_suite(
    files: Vec<PathBuf>,
    mut options: TestOptions,
    mut on_file: impl FnMut(&FileReport),
) -> Result<Vec<FileReport>, Error> {
    if options.targets.is_empty() {
        options.targets.push("embedded:".to_owned());
    }
    options.connection.output = OutputMode::Discard;
    let sandbox = if options.targets.iter().any(|t| t == "embedded:") {
        let mut config = SandboxConfig::default();
        config.session = options.session.clone();
        Some(
            tokio::task::spawn_blocking(move || Sandbox::new(config))
                .await
                .map_err(|e| Error::Closed(e.to_string()))??,
        )
    } else {
        None
    };
    let shared = Arc::new(Shared {
        queue: Mutex::new(files.into_iter().map(|f| (f, Vec::new())).collect()),
        dead: Mutex::new(HashMap::new()),
        stop: AtomicBool::new(false),
        options,
        sandbox,
    });
    let (tx, mut rx) = mpsc::unbounded_channel();
    let jobs = shared.options.jobs.max(1);
    for worker in 0..jobs {
        tokio::spawn(work(shared.clone(), worker, tx.clone()));
    }
    drop(tx);
    let mut reports = Vec::new();
    while let Some(report) = rx.recv().await {
        on_file(&report);
        reports.push(report);
    }
    // What `--fail-fast` left in the queue never ran.
    let left: Vec<_> = shared.queue.lock().expect("queue").drain(..).collect();
    for (file, retried_after) in left {
        let mut report = FileReport::new(file, retried_after);
        report.ran = false;
        on_file(&report);
        reports.push(report);
    }
    reports.sort_by(|a, b| a.file.cmp(&b.file));
    Ok(reports)
}

async fn work(shared: Arc<Shared>, worker: usize, reports: mpsc::UnboundedSender<FileReport>) {
    let targets = shared.options.targets.clone();
    loop {
        if shared.stop.load(Ordering::Relaxed) {
            return;
        }
        let Some((file, retried_after)) = shared.queue.lock().expect("queue").pop_front() else {
            return;
        };
        let alive: Vec<&String> = {
            let dead = shared.dead.lock().expect("dead");
            targets.iter().filter(|t| !dead.contains_key(*t)).collect()
        };
        let Some(target) = alive
            .get(worker % alive.len().max(1))
            .map(|t| t.to_string())
        else {
            let mut report = FileReport::new(file, retried_after);
            report.results = vec![file_error(
                &report.file,
                "<targets>",
                Outcome::Error,
                every_target_died(&targets, &shared.dead.lock().expect("dead")),
            )];
            let _ = reports.send(report);
            continue;
        };
        let mut report = FileReport::new(file, retried_after);
        match run_file(&shared, &mut report, &target).await {
            Ok(()) => {
                if shared.options.fail_fast && report.results.iter().any(|r| r.outcome.is_failure())
                {
                    shared.stop.store(true, Ordering::Relaxed);
                }
                report.target = target;
                let _ = reports.send(report);
            }
            Err(TargetDied(reason)) => {
                tracing::warn!(%target, %reason, "target died; retrying its files on the others");
                let mut retried_after = report.retried_after;
                retried_after.push(format!("{target} ({reason})"));
                shared
                    .dead
                    .lock()
                    .expect("dead")
                    .insert(target.clone(), reason);
                shared
                    .queue
                    .lock()
                    .expect("queue")
                    .push_front((report.file, retried_after));
            }
        }
    }
}

/// `every target died: T1: why; T2: why`, each with the last error seen.
fn every_target_died(targets: &[String], dead: &HashMap<String, String>) -> String {
    let mut seen = std::collections::HashSet::new();
    let reasons: Vec<String> = targets
        .iter()
        .filter(|t| seen.insert(t.as_str()))
        .map(|t| match dead.get(t) {
            Some(reason) => format!("{t}: {reason}"),
            None => format!("{t}: unknown"),
        })
        .collect();
    format!("every target died: {}", reasons.join("; "))
}

fn file_error(file: &Path, name: &str, outcome: Outcome, message: String) -> TestResult {
    TestResult {
        file: file.to_owned(),
        name: name.to_owned(),
        outcome,
        message,
        traceback: String::new(),
        stdout: String::new(),
        stderr: String::new(),
        seconds: 0.0,
    }
}

/// Errors that mean the target, not the test, is gone.
fn target_gone(error: &Error) -> bool {
    matches!(
        error,
        Error::Transport(_) | Error::Closed(_) | Error::Sandbox(_) | Error::UnsupportedTarget(_)
    )
}

/// A session with the test runner loaded.
struct Session {
    _con: Connection,
    runner: RemoteObject,
}

async fn open(shared: &Shared, target: &str) -> Result<Session, Error> {
    let con = match (&shared.sandbox, target) {
        (Some(sandbox), "embedded:") => {
            sandbox
                .connect_with(
                    shared.options.session.clone(),
                    shared.options.connection.clone(),
                )
                .await?
        }
        _ => pushy::connect_with(target, shared.options.connection.clone()).await?,
    };
    let runner = con.import("pushy_guest.testing").await?;
    Ok(Session { _con: con, runner })
}

fn text(value: Option<&Value>) -> String {
    match value {
        Some(Value::Str(s)) => s.clone(),
        _ => String::new(),
    }
}

/// Outcome of a call that ended its session.
fn fatal_outcome(error: &Error) -> Outcome {
    match error {
        Error::TimeLimit { .. } => Outcome::TimedOut,
        Error::MemoryLimit { .. } => Outcome::OutOfMemory,
        Error::Python(e) if e.is_instance("MemoryError") => Outcome::OutOfMemory,
        _ => Outcome::Error,
    }
}

async fn load(session: &Session, source: &str, file: &Path, module: &str) -> Result<Value, Error> {
    let filename = file.display().to_string();
    session
        .runner
        .call_method("load", &(source, filename, module))
        .await
}

/// One `(name, outcome, message, traceback, stdout, stderr, seconds)` from the guest.
fn guest_result(file: &Path, value: &Value) -> TestResult {
    let Value::Tuple(parts) = value else {
        return file_error(
            file,
            "<runner>",
            Outcome::Error,
            format!("unexpected {value:?}"),
        );
    };
    let outcome = match text(parts.get(1)).as_str() {
        "passed" => Outcome::Passed,
        "failed" => Outcome::Failed,
        "skipped" => Outcome::Skipped,
        "memory" => Outcome::OutOfMemory,
        _ => Outcome::Error,
    };
    TestResult {
        file: file.to_owned(),
        name: text(parts.first()),
        outcome,
        message: text(parts.get(2)),
        traceback: text(parts.get(3)),
        stdout: text(parts.get(4)),
        stderr: text(parts.get(5)),
        seconds: parts
            .get(6)
            .and_then(|v| v.extract::<f64>().ok())
            .unwrap_or(0.0),
    }
}

/// The results a `run` call (at least one) or a `finish` call (maybe none)
/// gave: a tuple of results.
fn guest_results(file: &Path, name: &str, value: &Value, at_least: usize) -> Vec<TestResult> {
    match value {
        Value::Tuple(results) if results.len() >= at_least => {
            results.iter().map(|r| guest_result(file, r)).collect()
        }
        other => vec![file_error(
            file,
            name,
            Outcome::Error,
            format!("unexpected {other:?}"),
        )],
    }
}

/// A fresh session with the file loaded again, after a test ended the last one.
async fn reload(
    shared: &Shared,
    target: &str,
    source: &str,
    file: &Path,
    module: &str,
) -> Result<Session, Error> {
    let fresh = open(shared, target).await?;
    load(&fresh, source, file, module).await?;
    Ok(fresh)
}

/// Runs one file into `report`: its selected tests one call each, then the
/// teardown of what is still set up.
async fn run_file(
    shared: &Shared,
    report: &mut FileReport,
    target: &str,
) -> Result<(), TargetDied> {
    let died = |e: Error| TargetDied(e.with_causes());
    let file = report.file.clone();
    let file = file.as_path();
    let stopped = || shared.stop.load(Ordering::Relaxed);
    if stopped() {
        report.ran = false;
        return Ok(());
    }
    let source = match std::fs::read_to_string(file) {
        Ok(source) => source,
        Err(e) => {
            report.results.push(file_error(
                file,
                "<file>",
                Outcome::Error,
                format!("cannot read: {e}"),
            ));
            return Ok(());
        }
    };
    let module = file
        .file_stem()
        .map_or("test".into(), |s| s.to_string_lossy().into_owned());
    let mut session = open(shared, target).await.map_err(died)?;
    let loaded = match load(&session, &source, file, &module).await {
        Ok(Value::Tuple(parts)) => parts,
        Ok(other) => {
            report.results.push(file_error(
                file,
                "<module>",
                Outcome::Error,
                format!("unexpected {other:?}"),
            ));
            return Ok(());
        }
        Err(e) if target_gone(&e) => return Err(died(e)),
        Err(e) => {
            report.results.push(file_error(
                file,
                "<module>",
                fatal_outcome(&e),
                e.to_string(),
            ));
            return Ok(());
        }
    };
    let kind = text(loaded.first());
    let (out, err) = (text(loaded.get(2)), text(loaded.get(3)));
    let matches = |name: &str| {
        shared
            .options
            .pattern
            .as_ref()
            .is_none_or(|p| format!("{module}::{name}").contains(p.as_str()))
    };
    match kind.as_str() {
        "script" => {
            report.collected = 1;
            if !matches("<script>") {
                return Ok(());
            }
            let status = match loaded.get(1) {
                Some(Value::Int(status)) => *status,
                _ => 1,
            };
            let mut result = file_error(
                file,
                "<script>",
                if status == 0 {
                    Outcome::Passed
                } else {
                    Outcome::Failed
                },
                if status == 0 {
                    String::new()
                } else {
                    format!("exit status {status}")
                },
            );
            result.stdout = out;
            result.stderr = err;
            report.results.push(result);
            return Ok(());
        }
        "error" => {
            let mut result = file_error(
                file,
                "<module>",
                Outcome::Error,
                "the module failed to import".into(),
            );
            result.traceback = text(loaded.get(1));
            result.message = result
                .traceback
                .trim()
                .lines()
                .last()
                .unwrap_or_default()
                .to_owned();
            result.stdout = out;
            result.stderr = err;
            report.results.push(result);
            return Ok(());
        }
        _ => {}
    }
    let all: Vec<String> = match loaded.get(1) {
        Some(Value::Tuple(names)) => names.iter().map(|n| text(Some(n))).collect(),
        _ => Vec::new(),
    };
    report.collected = all.len();
    let names: Vec<String> = all.into_iter().filter(|n| matches(n)).collect();
    // Whether `session` has run tests whose fixtures may still be set up.
    let mut started = false;
    for (index, name) in names.iter().enumerate() {
        if stopped() {
            report.not_run = names.len() - index;
            if index == 0 {
                report.ran = false;
            }
            break;
        }
        started = true;
        let before = report.results.len();
        match session.runner.call_method("run", &(name.as_str(),)).await {
            Ok(value) => report.results.extend(guest_results(file, name, &value, 1)),
            Err(e) if target_gone(&e) => return Err(died(e)),
            Err(e) => {
                report
                    .results
                    .push(file_error(file, name, fatal_outcome(&e), e.to_string()));
                if !e.session_survives() {
                    // The session is gone with the test: the next test gets a
                    // fresh one with the file loaded again (its fixtures are
                    // set up again before it runs).
                    started = false;
                    if index + 1 == names.len() {
                        break;
                    }
                    match reload(shared, target, &source, file, &module).await {
                        Ok(fresh) => session = fresh,
                        Err(e) if target_gone(&e) => return Err(died(e)),
                        Err(e) => {
                            // The file's remaining tests cannot run; say why.
                            report.results.push(file_error(
                                file,
                                "<module>",
                                Outcome::Error,
                                format!(
                                    "cannot reload: {e}; {} tests did not run",
                                    names.len() - index - 1
                                ),
                            ));
                            break;
                        }
                    }
                }
            }
        }
        if shared.options.fail_fast
            && report.results[before..]
                .iter()
                .any(|r| r.outcome.is_failure())
        {
            shared.stop.store(true, Ordering::Relaxed);
        }
    }
    if started {
        // tearDownClass / tearDownModule of what is still set up.
        match session.runner.call_method("finish", &()).await {
            Ok(value) => report
                .results
                .extend(guest_results(file, "<teardown>", &value, 0)),
            Err(e) if target_gone(&e) => return Err(died(e)),
            Err(e) => report.results.push(file_error(
                file,
                "<teardown>",
                fatal_outcome(&e),
                e.to_string(),
            )),
        }
    }
    Ok(())
}
