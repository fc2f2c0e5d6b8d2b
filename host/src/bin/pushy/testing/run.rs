//! Scheduling test files: each in a fresh session (`file`), `jobs` at once,
//! spread over the targets; a target that dies has its unfinished files
//! retried on the others.

use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use pushy::{ConnectionConfig, Error, OutputMode, Sandbox, SandboxConfig, SessionConfig};
use tokio::sync::mpsc;

use super::bytecode::{Uncached, spawn_writer};
use super::file::{file_error, run_file};
use super::{Outcome, TestResult};

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
    /// Modules preloaded into the embedded sandbox's snapshot.
    pub preload: Vec<String>,
    /// Settings for remote targets (token, TLS, host arguments).
    pub connection: ConnectionConfig,
    /// Run each file under real pytest in the sandbox instead of the
    /// built-in collector.
    pub pytest: Option<PytestRun>,
}

/// How files run under pytest: the project's root (mounted read-only at its
/// host path, the working directory, on `sys.path`) and pytest's arguments
/// (`-k` among them). pytest finds its rootdir and configuration in there.
#[derive(Clone, Debug)]
pub struct PytestRun {
    /// The project's root.
    pub rootdir: PathBuf,
    /// Arguments before the file's path.
    pub args: Vec<String>,
    /// The bytecode cache: a host directory, mounted read-only at
    /// [`BYTECODE_MOUNT`] in every test session (a mount of
    /// [`TestOptions::session`]) and written by a session of its own.
    pub bytecode: Option<PathBuf>,
    /// The nodes selected in a file (`FILE::NODE` given), by the file as
    /// given; a file not here runs whole.
    pub nodes: HashMap<PathBuf, Vec<String>>,
}

/// Where test sessions see the bytecode cache (`sys.pycache_prefix`).
pub const BYTECODE_MOUNT: &str = "/pushy-pycache";

impl Default for TestOptions {
    fn default() -> Self {
        TestOptions {
            jobs: std::thread::available_parallelism().map_or(2, |n| n.get()),
            targets: vec!["embedded:".to_owned()],
            pattern: None,
            fail_fast: false,
            session: SessionConfig::default(),
            preload: Vec::new(),
            connection: ConnectionConfig::default(),
            pytest: None,
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
pub(super) struct TargetDied(pub(super) String);

/// What the workers share.
pub(super) struct Shared {
    queue: Mutex<VecDeque<(PathBuf, Vec<String>)>>,
    /// Targets that died, with the last error seen on each.
    dead: Mutex<HashMap<String, String>>,
    /// Set by `--fail-fast` at the first failure.
    pub(super) stop: AtomicBool,
    pub(super) options: TestOptions,
    /// The sandbox of `embedded:` sessions, when a target is `embedded:`.
    pub(super) sandbox: Option<Sandbox>,
    /// Where sessions report what they compiled from source, while the
    /// bytecode cache's writer runs.
    pub(super) bytecode: Mutex<Option<mpsc::UnboundedSender<Uncached>>>,
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
        config.preload = options.preload.clone();
        Some(
            tokio::task::spawn_blocking(move || Sandbox::new(config))
                .await
                .map_err(|_| pushy::SandboxError::SetupPanicked)??,
        )
    } else {
        None
    };
    // The writer needs an in-process sandbox: with remote targets only, the
    // sessions read the cache and nothing writes it.
    let writer = match (&sandbox, &options.pytest) {
        (
            Some(sandbox),
            Some(PytestRun {
                bytecode: Some(cache),
                rootdir,
                ..
            }),
        ) => Some(spawn_writer(
            sandbox.clone(),
            &options.session,
            cache.clone(),
            rootdir.clone(),
        )),
        _ => None,
    };
    let (bytecode, writing) = writer.unzip();
    let shared = Arc::new(Shared {
        queue: Mutex::new(files.into_iter().map(|f| (f, Vec::new())).collect()),
        dead: Mutex::new(HashMap::new()),
        stop: AtomicBool::new(false),
        options,
        sandbox,
        bytecode: Mutex::new(bytecode),
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
    // What the last files reported is written for the next run.
    shared.bytecode.lock().expect("bytecode").take();
    if let Some(writing) = writing {
        let _ = writing.await;
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
