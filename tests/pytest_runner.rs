//! `pushy test` under real pytest (the environment has it): a fixture
//! project with conftest.py at every level, parametrize, marks, fixtures
//! (`tmp_path`, `capsys`, `monkeypatch`), assertion rewriting, a test that
//! loops and one that starts a thread; -k and pytest arguments after `--`,
//! --shard, --junit; over `embedded:`, `local:` and an authenticated
//! `daemon:` serving the same project. Without pytest, `--` is refused.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use common::daemon::Daemon;
use common::matrix::{last_line, text};

const PROJECT: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../tests/fixtures/pytest_project"
);

/// A virtualenv with pytest, made once under target/ (pip from PyPI).
fn venv() -> &'static Path {
    static VENV: OnceLock<PathBuf> = OnceLock::new();
    VENV.get_or_init(|| {
        let venv = PathBuf::from(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../target/test-pytest-venv"
        ));
        let python = venv.join("bin/python");
        let has_pytest = |python: &Path| {
            Command::new(python)
                .args(["-c", "import pytest"])
                .status()
                .is_ok_and(|s| s.success())
        };
        if !has_pytest(&python) {
            let made = Command::new("python3")
                .args(["-m", "venv"])
                .arg(&venv)
                .status()
                .expect("python3 -m venv");
            assert!(made.success());
            let installed = Command::new(&python)
                .args([
                    "-m",
                    "pip",
                    "install",
                    "-q",
                    "--disable-pip-version-check",
                    "pytest==9.2.0",
                ])
                .status()
                .expect("pip install pytest");
            assert!(installed.success(), "pip install pytest failed");
        }
        venv
    })
}

/// `pushy test ARGS` from the project's root with its venv active; it must
/// not panic.
fn pushy_test(venv: Option<&Path>, args: &[&str]) -> Output {
    pushy_test_in(Path::new(PROJECT), venv, args)
}

/// `pushy test ARGS` from `root` with the venv active; it must not panic.
fn pushy_test_in(root: &Path, venv: Option<&Path>, args: &[&str]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_pushy"));
    command.arg("test").args(args).current_dir(root);
    match venv {
        Some(venv) => command.env("VIRTUAL_ENV", venv),
        None => command.env_remove("VIRTUAL_ENV"),
    };
    let out = command.output().expect("run pushy test");
    let stderr = text(&out.stderr);
    assert!(!stderr.contains("panicked at"), "{stderr}");
    out
}

fn targets(daemon: &Daemon) -> Vec<Vec<String>> {
    vec![
        vec!["--target".into(), "embedded:".into()],
        vec!["--target".into(), "local:".into()],
        vec![
            "--target".into(),
            daemon.url(),
            "--token-file".into(),
            daemon.token_file.display().to_string(),
        ],
    ]
}

/// The daemon serves the project as `pushy test` would mount it: read-only
/// at its own path, with the venv's pytest preloaded.
fn daemon() -> Daemon {
    let root = std::fs::canonicalize(PROJECT).unwrap();
    let venv = venv().display().to_string();
    let mount = format!("{}:{}:ro", root.display(), root.display());
    Daemon::start(&[
        "--venv",
        &venv,
        "--dir",
        &mount,
        "--preload",
        "pytest",
        "--timeout",
        "5",
    ])
}

#[test]
fn a_project_suite_runs_under_pytest_with_exact_counts_on_every_target() {
    let venv = venv();
    let daemon = daemon();
    for target in targets(&daemon) {
        let dir = tempfile::tempdir().unwrap();
        let junit = dir.path().join("junit.xml");
        let mut args: Vec<&str> = target.iter().map(String::as_str).collect();
        args.extend(["--timeout", "5", "--junit", junit.to_str().unwrap()]);
        let out = pushy_test(Some(venv), &args);
        let stdout = text(&out.stdout);
        let context = format!("{target:?}\n{stdout}\n{}", text(&out.stderr));
        assert_eq!(out.status.code(), Some(1), "{context}");
        assert_eq!(
            last_line(&out),
            "12 passed, 3 failed, 2 skipped",
            "{context}"
        );
        // pytest's own failure text: assertion rewriting shows the values.
        assert!(stdout.contains("assert 42 == 43"), "{context}");
        // The loop ended only itself; the thread failed with Python's error.
        assert!(
            stdout.contains("tests/test_limits.py::test_loops_forever — timed out"),
            "{context}"
        );
        assert!(stdout.contains("can't start new thread"), "{context}");
        let xml = std::fs::read_to_string(&junit).unwrap();
        assert!(
            xml.contains("tests/test_basics.py::test_parametrized[2]"),
            "{xml}"
        );
        assert!(
            xml.contains("tests/sub/test_more.py::test_nested_conftest"),
            "{xml}"
        );
    }
}

#[test]
fn k_and_pytest_arguments_after_the_double_dash_select_tests() {
    let venv = venv();
    let basics = "tests/test_basics.py";
    let out = pushy_test(Some(venv), &[basics, "-k", "parametrized"]);
    assert_eq!(
        last_line(&out),
        "3 passed, 0 failed",
        "{}",
        text(&out.stdout)
    );
    assert_eq!(out.status.code(), Some(0));
    let out = pushy_test(Some(venv), &[basics, "--", "-m", "slow"]);
    assert_eq!(
        last_line(&out),
        "1 passed, 0 failed",
        "{}",
        text(&out.stdout)
    );
    // pytest's node ids: the file runs, pytest selects in it; one
    // parametrized case, or the whole function's cases, beside a file.
    let out = pushy_test(Some(venv), &["tests/test_basics.py::test_parametrized[2]"]);
    assert_eq!(
        last_line(&out),
        "1 passed, 0 failed",
        "{}",
        text(&out.stdout)
    );
    let out = pushy_test(
        Some(venv),
        &[
            "tests/test_basics.py::test_parametrized",
            "tests/sub/test_more.py",
        ],
    );
    assert_eq!(
        last_line(&out),
        "5 passed, 0 failed",
        "{}",
        text(&out.stdout)
    );
    let out = pushy_test(None, &["tests/test_basics.py::test_parametrized"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("node ids"),
        "{}",
        text(&out.stderr)
    );
    // An argument pytest refuses is its usage error, as the file's error.
    let out = pushy_test(Some(venv), &[basics, "--", "--no-such-option"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stdout));
    assert!(
        text(&out.stdout).contains("--no-such-option"),
        "{}",
        text(&out.stdout)
    );
}

#[test]
fn shards_together_run_every_file_once() {
    let venv = venv();
    let mut seen: Vec<String> = Vec::new();
    for shard in ["1/2", "2/2"] {
        let dir = tempfile::tempdir().unwrap();
        let junit = dir.path().join("junit.xml");
        let out = pushy_test(
            Some(venv),
            &[
                "--shard",
                shard,
                "--timeout",
                "5",
                "--junit",
                junit.to_str().unwrap(),
            ],
        );
        assert!(
            !text(&out.stdout).is_empty(),
            "shard {shard}: {}",
            text(&out.stderr)
        );
        let xml = std::fs::read_to_string(&junit).unwrap();
        for file in [
            "tests/test_basics.py",
            "tests/test_limits.py",
            "tests/sub/test_more.py",
        ] {
            if xml.contains(&format!("{file}::")) {
                seen.push(file.to_owned());
            }
        }
    }
    seen.sort();
    assert_eq!(
        seen,
        [
            "tests/sub/test_more.py",
            "tests/test_basics.py",
            "tests/test_limits.py"
        ]
    );
    for bad in ["0/2", "3/2", "1", "a/b"] {
        let out = pushy_test(Some(venv), &["--shard", bad]);
        assert_eq!(out.status.code(), Some(2), "--shard {bad}");
    }
}

#[test]
fn without_pytest_arguments_for_it_are_refused() {
    let out = pushy_test(None, &["tests/test_basics.py", "--", "-x"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("go to pytest"),
        "{}",
        text(&out.stderr)
    );
}

/// A copy of the fixture project (to edit) in `into`.
fn copy_project(from: &Path, into: &Path) {
    std::fs::create_dir_all(into).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = into.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            if entry.file_name() != "__pycache__" {
                copy_project(&entry.path(), &target);
            }
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

fn pycs(dir: &Path) -> Vec<String> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            found.extend(pycs(&path));
        } else if path.extension().is_some_and(|e| e == "pyc") {
            found.push(path.display().to_string());
        }
    }
    found
}

#[test]
fn compiled_modules_are_cached_read_only_and_recompiled_when_edited() {
    let venv = venv();
    let work = tempfile::tempdir().unwrap();
    let root = work.path().join("project");
    copy_project(Path::new(PROJECT), &root);
    // The sessions see the cache read-only and set it as their prefix.
    std::fs::write(
        root.join("tests/test_cache.py"),
        "import os, sys\n\
         def test_the_cache_is_read_only():\n\
         \x20   assert sys.pycache_prefix == '/pushy-pycache'\n\
         \x20   try:\n\
         \x20       open('/pushy-pycache/planted.pyc', 'wb')\n\
         \x20   except OSError:\n\
         \x20       return\n\
         \x20   raise AssertionError('a test session could write the cache')\n",
    )
    .unwrap();
    let cache = work.path().join("cache");
    let cache_arg = cache.display().to_string();
    let run = |extra: &[&str]| {
        let mut args = vec!["--timeout", "5"];
        args.extend(extra);
        let out = pushy_test_in(&root, Some(venv), &args);
        (
            last_line(&out),
            format!("{}\n{}", text(&out.stdout), text(&out.stderr)),
        )
    };
    for round in ["cold", "warm"] {
        let (summary, context) = run(&["--bytecode-cache", &cache_arg]);
        assert_eq!(
            summary, "13 passed, 3 failed, 2 skipped",
            "{round}: {context}"
        );
        assert!(context.contains("assert 42 == 43"), "{round}: {context}");
    }
    let cached = pycs(&cache);
    // The project's package and its test modules as pytest rewrote them.
    assert!(
        cached.iter().any(|p| p.contains("mini/__init__.cpython-")),
        "{cached:?}"
    );
    assert!(
        cached
            .iter()
            .any(|p| p.contains("tests/test_basics.cpython-") && p.contains("-pytest-")),
        "{cached:?}"
    );
    assert!(!cached.iter().any(|p| p.contains("planted")), "{cached:?}");
    // An edited module (another size) is compiled again, not taken stale
    // from the cache: the failing test now passes.
    let source = root.join("mini/__init__.py");
    let edited = std::fs::read_to_string(&source)
        .unwrap()
        .replace("return 42", "return 43  # edited");
    std::fs::write(&source, edited).unwrap();
    let original = std::fs::metadata(&source).unwrap();
    let (summary, context) = run(&["--bytecode-cache", &cache_arg]);
    assert_eq!(summary, "14 passed, 2 failed, 2 skipped", "{context}");
    // Back to the first version's size and mtime with other content: the
    // cache must not serve the first version's bytecode (nor the second's).
    let first = std::fs::read_to_string(Path::new(PROJECT).join("mini/__init__.py")).unwrap();
    std::fs::write(&source, first.replace("return 42", "return 41")).unwrap();
    std::fs::File::options()
        .write(true)
        .open(&source)
        .unwrap()
        .set_modified(original.modified().unwrap())
        .unwrap();
    let (summary, context) = run(&["--bytecode-cache", &cache_arg]);
    assert_eq!(summary, "13 passed, 3 failed, 2 skipped", "{context}");
    assert!(context.contains("assert 41 == 43"), "{context}");
    // Without the cache, nothing is mounted: the cache test fails.
    let (summary, context) = run(&["--no-bytecode-cache", "tests/test_cache.py"]);
    assert_eq!(summary, "0 passed, 1 failed", "{context}");
}

#[test]
fn a_bytecode_cache_a_target_cannot_see_is_refused() {
    let venv = venv();
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().display().to_string();
    let out = pushy_test(
        Some(venv),
        &["--target", "daemon:127.0.0.1:9", "--bytecode-cache", &cache],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("--bytecode-cache is for"),
        "{}",
        text(&out.stderr)
    );
    let out = pushy_test(None, &["--bytecode-cache", &cache, "tests/test_basics.py"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("--bytecode-cache is for"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn a_test_out_of_memory_ends_only_itself_and_files_decode_as_python_does() {
    let venv = venv();
    let work = tempfile::tempdir().unwrap();
    let root = work.path();
    std::fs::write(root.join("pyproject.toml"), "[tool.pytest.ini_options]\n").unwrap();
    std::fs::create_dir(root.join("tests")).unwrap();
    std::fs::write(
        root.join("tests/test_memory.py"),
        "def test_exhausts():\n    x = []\n    while True:\n        x.append(bytearray(10**7))\n\n\
         def test_after_it():\n    assert len(bytearray(50 * 10**6)) == 50 * 10**6\n",
    )
    .unwrap();
    std::fs::write(
        root.join("tests/test_latin1.py"),
        b"# -*- coding: latin-1 -*-\ns = '\xff\xfe'\ndef test_decoded():\n    assert s == '\\xff\\xfe'\n",
    )
    .unwrap();
    let out = pushy_test_in(root, Some(venv), &["--memory", "256", "--timeout", "10"]);
    let context = format!("{}\n{}", text(&out.stdout), text(&out.stderr));
    assert_eq!(last_line(&out), "2 passed, 1 failed", "{context}");
    assert!(context.contains("1 out of memory"), "{context}");
    // pytest's own stop options would see one test per call: refused.
    let out = pushy_test_in(root, Some(venv), &["--", "--maxfail=1"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("--fail-fast"),
        "{}",
        text(&out.stderr)
    );
}
