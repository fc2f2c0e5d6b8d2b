//! One test file in one session: loaded, its selected tests run one call
//! each (a fresh session after a test ends its own), then the teardown of
//! what is still set up; the guest's answers become `TestResult`s.

use std::path::Path;
use std::sync::atomic::Ordering;

use pushy::{Connection, Error, RemoteObject, Value};

use super::run::{Shared, TargetDied};
use super::{FileReport, Outcome, TestResult};

/// A result the host writes where the guest's runner gave none: a file that
/// cannot be read or imported, a script's status, a call that ended its
/// session, no target left.
pub(super) fn file_error(file: &Path, name: &str, outcome: Outcome, message: String) -> TestResult {
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
            Connection::embedded_with(
                sandbox,
                shared.options.session.clone(),
                shared.options.connection.clone(),
            )
            .await?
        }
        _ => pushy::connect_with(target, shared.options.connection.clone()).await?,
    };
    let runner = match shared.options.pytest {
        Some(_) => con.import("pushy_guest.testing.pytest_mode").await?,
        None => con.import("pushy_guest.testing").await?,
    };
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

/// Loads the file into `session`: its source run by the built-in collector,
/// or its path collected by pytest.
async fn load(
    shared: &Shared,
    session: &Session,
    source: &str,
    file: &Path,
    module: &str,
) -> Result<Value, Error> {
    match &shared.options.pytest {
        Some(pytest) => {
            let path = std::path::absolute(file).unwrap_or_else(|_| file.to_owned());
            let path = path.display().to_string();
            let targets: Vec<String> = match pytest.nodes.get(file) {
                Some(nodes) => nodes.iter().map(|node| format!("{path}::{node}")).collect(),
                None => vec![path],
            };
            let args = (
                targets,
                pytest.rootdir.display().to_string(),
                pytest.args.clone(),
                pytest.bytecode.as_ref().map(|_| super::BYTECODE_MOUNT),
            );
            session.runner.call_method("load", &args).await
        }
        None => {
            let filename = file.display().to_string();
            session
                .runner
                .call_method("load", &(source, filename, module))
                .await
        }
    }
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
    load(shared, &fresh, source, file, module).await?;
    Ok(fresh)
}

/// Runs one file into `report`: its selected tests one call each, then the
/// teardown of what is still set up.
pub(super) async fn run_file(
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
    // Under pytest the sandbox reads the file itself (a coding cookie, a
    // syntax error are pytest's to report); the built-in runner is sent it.
    let read = match shared.options.pytest {
        Some(_) => std::fs::File::open(file).map(|_| String::new()),
        None => std::fs::read_to_string(file),
    };
    let source = match read {
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
    let loaded = match load(shared, &session, &source, file, &module).await {
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
    // Under pytest, `-k` went to pytest itself.
    let matches = |name: &str| {
        shared.options.pytest.is_some()
            || shared
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
        let fresh_needed = match session.runner.call_method("run", &(name.as_str(),)).await {
            Ok(value) => {
                let results = guest_results(file, name, &value, 1);
                // A test that ran out of memory leaves it taken: the next
                // test gets a fresh session, as after a limit.
                let spent = results
                    .iter()
                    .any(|r| matches!(r.outcome, Outcome::OutOfMemory));
                report.results.extend(results);
                spent
            }
            Err(e) if target_gone(&e) => return Err(died(e)),
            Err(e) => {
                report
                    .results
                    .push(file_error(file, name, fatal_outcome(&e), e.to_string()));
                !e.session_survives()
            }
        };
        if fresh_needed {
            // The session is gone with the test (or spent): the next test
            // gets a fresh one with the file loaded again (its fixtures are
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
        finish(&session, file, report).await?;
    }
    report_uncached(shared, &session).await;
    Ok(())
}

/// Tells the bytecode cache's writer what the session compiled from source.
async fn report_uncached(shared: &Shared, session: &Session) {
    let Some(writer) = shared.bytecode.lock().expect("bytecode").clone() else {
        return;
    };
    match session.runner.call_method("uncached", &()).await {
        Ok(value) => {
            let _ = writer.send(super::bytecode::parse(&value));
        }
        Err(error) => tracing::debug!(%error, "no report of uncached modules"),
    }
}

/// Ends the file's pytest session (or the built-in runner's teardown).
async fn finish(session: &Session, file: &Path, report: &mut FileReport) -> Result<(), TargetDied> {
    match session.runner.call_method("finish", &()).await {
        Ok(value) => report
            .results
            .extend(guest_results(file, "<teardown>", &value, 0)),
        Err(e) if target_gone(&e) => return Err(TargetDied(e.with_causes())),
        Err(e) => report.results.push(file_error(
            file,
            "<teardown>",
            fatal_outcome(&e),
            e.to_string(),
        )),
    }
    Ok(())
}
