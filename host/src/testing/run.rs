//! Running test files: each in a fresh session, `jobs` at once, spread over
//! the targets; a target that dies has its unfinished files retried on the
//! others.

use std::collections::{HashSet, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::mpsc;

use super::{Outcome, TestResult};
use crate::{
    Connection, ConnectionConfig, Error, OutputMode, RemoteObject, Sandbox, SessionConfig, Value,
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
    /// Its tests' results.
    pub results: Vec<TestResult>,
}

/// A target that stopped answering: the file goes back in the queue.
struct TargetDied(String);

struct Shared {
    queue: Mutex<VecDeque<(PathBuf, Vec<String>)>>,
    dead: Mutex<HashSet<String>>,
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
        let config = crate::SandboxConfig {
            session: options.session.clone(),
            ..Default::default()
        };
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
        dead: Mutex::new(HashSet::new()),
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
            targets.iter().filter(|t| !dead.contains(*t)).collect()
        };
        let Some(target) = alive
            .get(worker % alive.len().max(1))
            .map(|t| t.to_string())
        else {
            let result = file_error(
                &file,
                "<targets>",
                Outcome::Error,
                "every target died".into(),
            );
            let _ = reports.send(FileReport {
                file,
                target: String::new(),
                retried_after,
                results: vec![result],
            });
            continue;
        };
        match run_file(&shared, &file, &target).await {
            Ok(results) => {
                if shared.options.fail_fast && results.iter().any(|r| r.outcome.is_failure()) {
                    shared.stop.store(true, Ordering::Relaxed);
                }
                let _ = reports.send(FileReport {
                    file,
                    target,
                    retried_after,
                    results,
                });
            }
            Err(TargetDied(reason)) => {
                tracing::warn!(%target, %reason, "target died; retrying its files on the others");
                shared.dead.lock().expect("dead").insert(target.clone());
                let mut retried_after = retried_after;
                retried_after.push(format!("{target} ({reason})"));
                shared
                    .queue
                    .lock()
                    .expect("queue")
                    .push_front((file, retried_after));
            }
        }
    }
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
        _ => crate::connect_with(target, shared.options.connection.clone()).await?,
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

async fn run_file(
    shared: &Shared,
    file: &Path,
    target: &str,
) -> Result<Vec<TestResult>, TargetDied> {
    let died = |e: Error| TargetDied(e.to_string());
    let source = match std::fs::read_to_string(file) {
        Ok(source) => source,
        Err(e) => {
            return Ok(vec![file_error(
                file,
                "<file>",
                Outcome::Error,
                format!("cannot read: {e}"),
            )]);
        }
    };
    let module = file
        .file_stem()
        .map_or("test".into(), |s| s.to_string_lossy().into_owned());
    let mut session = open(shared, target).await.map_err(died)?;
    let loaded = match load(&session, &source, file, &module).await {
        Ok(Value::Tuple(parts)) => parts,
        Ok(other) => {
            return Ok(vec![file_error(
                file,
                "<module>",
                Outcome::Error,
                format!("unexpected {other:?}"),
            )]);
        }
        Err(e) if target_gone(&e) => return Err(died(e)),
        Err(e) => {
            return Ok(vec![file_error(
                file,
                "<module>",
                fatal_outcome(&e),
                e.to_string(),
            )]);
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
            if !matches("<script>") {
                return Ok(Vec::new());
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
            return Ok(vec![result]);
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
            return Ok(vec![result]);
        }
        _ => {}
    }
    let names: Vec<String> = match loaded.get(1) {
        Some(Value::Tuple(names)) => names
            .iter()
            .map(|n| text(Some(n)))
            .filter(|n| matches(n))
            .collect(),
        _ => Vec::new(),
    };
    let mut results = Vec::with_capacity(names.len());
    for name in names {
        if shared.stop.load(Ordering::Relaxed) {
            break;
        }
        let result = match session.runner.call_method("run", &(name.as_str(),)).await {
            Ok(Value::Tuple(parts)) if parts.len() == 6 => {
                let outcome = match text(parts.first()).as_str() {
                    "passed" => Outcome::Passed,
                    "failed" => Outcome::Failed,
                    "skipped" => Outcome::Skipped,
                    "memory" => Outcome::OutOfMemory,
                    _ => Outcome::Error,
                };
                TestResult {
                    file: file.to_owned(),
                    name,
                    outcome,
                    message: text(parts.get(1)),
                    traceback: text(parts.get(2)),
                    stdout: text(parts.get(3)),
                    stderr: text(parts.get(4)),
                    seconds: parts
                        .get(5)
                        .and_then(|v| v.extract::<f64>().ok())
                        .unwrap_or(0.0),
                }
            }
            Ok(other) => file_error(file, &name, Outcome::Error, format!("unexpected {other:?}")),
            Err(e) if target_gone(&e) => return Err(died(e)),
            Err(e) => {
                let result = file_error(file, &name, fatal_outcome(&e), e.to_string());
                if !e.session_survives() {
                    // The session is gone with the test: the next test gets a
                    // fresh one with the file loaded again.
                    let reopened = match open(shared, target).await {
                        Ok(fresh) => load(&fresh, &source, file, &module).await.map(|_| fresh),
                        Err(e) => Err(e),
                    };
                    match reopened {
                        Ok(fresh) => session = fresh,
                        Err(e) if target_gone(&e) => return Err(died(e)),
                        Err(e) => {
                            // The file's remaining tests cannot run; say why.
                            results.push(result);
                            results.push(file_error(
                                file,
                                "<module>",
                                Outcome::Error,
                                format!("cannot reload: {e}"),
                            ));
                            break;
                        }
                    }
                }
                result
            }
        };
        let failed = result.outcome.is_failure();
        results.push(result);
        if failed && shared.options.fail_fast {
            shared.stop.store(true, Ordering::Relaxed);
        }
    }
    Ok(results)
}
