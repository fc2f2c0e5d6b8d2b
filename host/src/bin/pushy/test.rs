//! `pushy test`: checks the flags, shows progress, prints the failures in full
//! and the summary line; the harness (`crate::testing`) runs the files.

use std::io::IsTerminal;
use std::process::ExitCode;

use crate::cli::TestArgs;
use crate::testing::{
    BYTECODE_MOUNT, PytestRun, Summary, TestOptions, discover, junit_xml, run_suite,
};
use crate::{report, usage};

pub(crate) async fn test_command(mut args: TestArgs) -> ExitCode {
    for target in &args.targets {
        let checked = target
            .parse::<pushy::Target>()
            .map_err(anyhow::Error::from)
            .and_then(|target| args.limits.check_target(&target));
        if let Err(error) = checked {
            return usage(error);
        }
    }
    let session = match args.limits.session_config() {
        Ok(session) => session,
        Err(error) => return usage(error),
    };
    let requested = match args.limits.requested() {
        Ok(requested) => requested,
        Err(error) => return usage(error),
    };
    // pytest's node ids (`tests/test_a.py::test_x`): their file runs, and
    // pytest selects the nodes in it.
    let mut nodes: std::collections::HashMap<std::path::PathBuf, Vec<String>> =
        std::collections::HashMap::new();
    let paths: Vec<std::path::PathBuf> = args
        .paths
        .iter()
        .map(|given| {
            let text = given.to_string_lossy();
            match text.split_once("::") {
                Some((file, node)) => {
                    let file = std::path::PathBuf::from(file);
                    nodes.entry(file.clone()).or_default().push(node.to_owned());
                    file
                }
                None => given.clone(),
            }
        })
        .collect();
    let files = match discover(&paths) {
        Ok(files) => files,
        Err(error) => return usage(format!("cannot read the test paths: {error}")),
    };
    if files.is_empty() {
        errln!("pushy: no test files (test_*.py, *_test.py) found");
        return ExitCode::from(5);
    }
    let files = match args.shard {
        Some(shard) => shard.select(files),
        None => files,
    };
    let pytest = if has_pytest(&session) {
        // Each test is its own call: pytest's own stop-after-failures options
        // would only ever see one test (and run every other).
        if let Some(stop) = args.pytest_args.iter().find(|arg| {
            matches!(
                arg.as_str(),
                "-x" | "--exitfirst" | "--maxfail" | "--sw" | "--stepwise"
            ) || arg.starts_with("--maxfail=")
        }) {
            return usage(format!(
                "`{stop}` after `--` cannot work here (each test runs as its own call); \
                 use --fail-fast to stop at the first failure"
            ));
        }
        let rootdir = match project_root(&paths) {
            Ok(rootdir) => rootdir,
            Err(error) => return usage(format!("cannot find the project's root: {error}")),
        };
        let mut pytest_args = Vec::new();
        if let Some(pattern) = &args.pattern {
            pytest_args.extend(["-k".to_owned(), pattern.clone()]);
        }
        if args.fail_fast {
            pytest_args.push("-x".to_owned());
        }
        pytest_args.extend(args.pytest_args.iter().cloned());
        // The project, read-only at its own path, and pytest imported once
        // into the cached snapshot that every file's session starts from.
        let root_mounted = session.mounts.iter().any(|m| m.host == rootdir)
            || session.python_path.entries().any(|e| e == rootdir);
        if !root_mounted {
            args.limits.dirs.push(pushy::Mount {
                host: rootdir.clone(),
                guest: rootdir.display().to_string(),
                read_only: true,
            });
        }
        args.limits.preload.push(PYTEST_PRELOAD.to_owned());
        // Remote sessions (a daemon's, over ssh) cannot see this machine's
        // cache; local: children mount it as embedded sessions do.
        let local_only = args
            .targets
            .iter()
            .all(|t| t == "embedded:" || t == "local:");
        if args.bytecode_cache.is_some() && !local_only {
            return usage(
                "--bytecode-cache is for embedded: and local: targets: a daemon's or an ssh \
                 host's sessions cannot see this machine's directories",
            );
        }
        let bytecode = if args.no_bytecode_cache || !local_only {
            None
        } else {
            // What the sessions can read: the cache holds bytecode of those
            // sources only, so it shows them nothing they could not read.
            let mut seen: Vec<String> = args
                .limits
                .dirs
                .iter()
                .map(|m| format!("{}:{}:{}", m.host.display(), m.guest, m.read_only))
                .chain(
                    session
                        .python_path
                        .entries()
                        .map(|e| e.display().to_string()),
                )
                .collect();
            seen.sort();
            match bytecode_cache(args.bytecode_cache.clone(), &seen) {
                Ok(dir) => dir,
                Err(error) => return usage(error),
            }
        };
        if let Some(cache) = &bytecode {
            args.limits.dirs.push(pushy::Mount {
                host: cache.clone(),
                guest: BYTECODE_MOUNT.to_owned(),
                read_only: true,
            });
        }
        Some(PytestRun {
            rootdir,
            args: pytest_args,
            bytecode,
            nodes,
        })
    } else if !nodes.is_empty() {
        return usage(
            "node ids (FILE::TEST) are pytest's, which this environment does not have: \
             activate a virtualenv that has pytest, or give --venv or --path; or use -k",
        );
    } else if args.bytecode_cache.is_some() {
        return usage(
            "--bytecode-cache is for runs under pytest, which this environment does not have: \
             activate a virtualenv that has pytest, or give --venv or --path",
        );
    } else if !args.pytest_args.is_empty() {
        return usage(
            "arguments after `--` go to pytest, which this environment does not have: \
             activate a virtualenv that has pytest, or give --venv or --path",
        );
    } else {
        None
    };
    let session = match args.limits.session_config() {
        Ok(session) => session,
        Err(error) => return usage(error),
    };
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
    let over_ssh = args.targets.iter().any(|t| t.starts_with("ssh:"));
    options.connection.host_args = args.limits.host_args(over_ssh);
    options.preload = args.limits.preload.clone();
    options.connection.limits = requested;
    options.pytest = pytest;

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
            outln!("{}", result.traceback.trim_end_matches('\n'));
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

/// The module preloaded for pytest sessions: pytest and every plugin it
/// would import in each session (`guest/pushy_guest/testing/pytest_preload.py`).
const PYTEST_PRELOAD: &str = "pushy_guest.testing.pytest_preload";

/// Whether pytest can be imported from the session's python path (a venv's
/// site-packages, a `--path` directory).
fn has_pytest(session: &pushy::SessionConfig) -> bool {
    session
        .python_path
        .entries()
        .any(|entry| entry.join("pytest").join("__init__.py").is_file())
}

/// The directory the project is mounted from and run in: the working
/// directory when it holds every test path (as `python -m pytest` run
/// there sees it, the working directory on `sys.path`), else [`rootdir`].
fn project_root(paths: &[std::path::PathBuf]) -> std::io::Result<std::path::PathBuf> {
    let cwd = std::fs::canonicalize(std::env::current_dir()?)?;
    let mut inside = true;
    for path in paths {
        inside &= std::fs::canonicalize(path)?.starts_with(&cwd);
    }
    if inside && cwd.parent().is_some() {
        return Ok(cwd);
    }
    rootdir(paths)
}

/// pytest's rootdir for the test paths given, by its rules: the first
/// directory, from their common ancestor up, with a pytest configuration (`pytest.ini`,
/// `.pytest.ini`, or a `pyproject.toml`, `tox.ini` or `setup.cfg` with a
/// pytest section) or a `setup.py`; else the common ancestor. Never `/`: the whole host
/// would be mounted.
fn rootdir(paths: &[std::path::PathBuf]) -> std::io::Result<std::path::PathBuf> {
    let mut common: Option<std::path::PathBuf> = None;
    for given in paths {
        let path = std::fs::canonicalize(given)?;
        let dir = if path.is_dir() {
            path
        } else {
            path.parent()
                .map(std::path::Path::to_path_buf)
                .unwrap_or_default()
        };
        common = Some(match common {
            None => dir,
            Some(so_far) => so_far
                .ancestors()
                .find(|a| dir.starts_with(a))
                .map(std::path::Path::to_path_buf)
                .unwrap_or_default(),
        });
    }
    let common = match common {
        Some(common) => common,
        None => std::env::current_dir()?,
    };
    let configures = |dir: &std::path::Path| {
        let has = |name: &str, section: &str| {
            std::fs::read_to_string(dir.join(name)).is_ok_and(|text| text.contains(section))
        };
        dir.join("pytest.ini").is_file()
            || dir.join(".pytest.ini").is_file()
            || has("pyproject.toml", "[tool.pytest")
            || has("tox.ini", "[pytest]")
            || has("setup.cfg", "[tool:pytest]")
            || dir.join("setup.py").is_file()
    };
    let found = common
        .ancestors()
        .find(|dir| configures(dir))
        .unwrap_or(&common)
        .to_path_buf();
    if found.parent().is_none() {
        return Err(std::io::Error::other(
            "it would be / (the whole filesystem): run from the project or give its test paths",
        ));
    }
    Ok(found)
}

/// The bytecode cache's directory, created if missing: the one given (an
/// error if unusable), else one in `bytecode/` of the cache directory for
/// what the sessions `see` (their mounts and python path: a cache shared
/// with other projects would show them those projects' compiled code);
/// `None`, with a note in the log, if it cannot be made.
fn bytecode_cache(
    given: Option<std::path::PathBuf>,
    see: &[String],
) -> Result<Option<std::path::PathBuf>, String> {
    use sha2::Digest;
    let made = |dir: &std::path::Path| {
        std::fs::create_dir_all(dir).and_then(|()| std::fs::canonicalize(dir))
    };
    if let Some(dir) = given {
        return made(&dir).map(Some).map_err(|error| {
            format!(
                "cannot use {} as the bytecode cache: {error}",
                dir.display()
            )
        });
    }
    let key = sha2::Sha256::digest(see.join("\n").as_bytes());
    let Some(dir) =
        pushy::sandbox::cache_dir().map(|dir| dir.join("bytecode").join(hex::encode(&key[..8])))
    else {
        return Ok(None);
    };
    match made(&dir) {
        Ok(dir) => Ok(Some(dir)),
        Err(error) => {
            tracing::warn!(%error, dir = %dir.display(), "no bytecode cache");
            Ok(None)
        }
    }
}
