//! Real code in the sandbox: `--path` directories and archives, `--venv`,
//! and `--preload` snapshots, run by the `pushy` binary over every target.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::matrix::{Matrix, assert_status, pushy, script, text};

/// A project directory, a wheel and a virtualenv (with a `.pth` naming a
/// source directory), all under one temporary directory.
struct Site {
    _root: tempfile::TempDir,
    project: PathBuf,
    wheel: PathBuf,
    venv: PathBuf,
    editable: PathBuf,
}

impl Site {
    fn new() -> Site {
        let root = tempfile::tempdir().unwrap();
        let base = std::fs::canonicalize(root.path()).unwrap();
        let project = base.join("project");
        std::fs::create_dir(&project).unwrap();
        std::fs::write(
            project.join("helper.py"),
            "import json\n\ndef double(x):\n    return 2 * x\n\ndef fail():\n    raise ValueError('failing in helper')\n",
        )
        .unwrap();
        std::fs::write(project.join("notes.txt"), "project notes\n").unwrap();
        let dist = base.join("dist");
        std::fs::create_dir(&dist).unwrap();
        std::fs::write(dist.join("secret.txt"), "not for the guest\n").unwrap();
        let wheel = dist.join("wheelpkg-1.0-py3-none-any.whl");
        make_zip(
            &wheel,
            &[("wheelpkg/__init__.py", "NAME = 'from the wheel'\n")],
        );
        let venv = base.join("venv");
        let site = venv.join("lib/python3.11/site-packages");
        std::fs::create_dir_all(&site).unwrap();
        std::fs::write(site.join("venvmod.py"), "WHERE = 'venv'\n").unwrap();
        let editable = venv.join("src");
        std::fs::create_dir(&editable).unwrap();
        std::fs::write(editable.join("editable.py"), "WHERE = 'editable'\n").unwrap();
        // Lines naming directories outside the venv (the host's root, its
        // /proc, the project's siblings) must not widen what the guest sees.
        std::fs::write(
            site.join("__editable__.pth"),
            format!(
                "{}\nimport sys; sys.exit('host code ran')\n/\n/proc/self\n{}\n",
                editable.display(),
                base.display()
            ),
        )
        .unwrap();
        Site {
            _root: root,
            project,
            wheel,
            venv,
            editable,
        }
    }

    fn flags(&self) -> Vec<String> {
        vec![
            format!("--path={}", self.project.display()),
            format!("--path={}", self.wheel.display()),
            format!("--venv={}", self.venv.display()),
        ]
    }
}

/// A zip file of `files` (name, text), written with Python's zipfile.
fn make_zip(path: &Path, files: &[(&str, &str)]) {
    let mut program = format!(
        "import zipfile\nwith zipfile.ZipFile({:?}, 'w') as z:\n",
        path.display().to_string()
    );
    for (name, content) in files {
        program.push_str(&format!("    z.writestr({name:?}, {content:?})\n"));
    }
    let status = Command::new("python3")
        .args(["-c", &program])
        .status()
        .unwrap();
    assert!(status.success());
}

fn refs(flags: &[String]) -> Vec<&str> {
    flags.iter().map(String::as_str).collect()
}

#[test]
fn imports_come_from_directories_wheels_and_venvs_at_their_host_paths() {
    let site = Site::new();
    let flags = site.flags();
    let matrix = Matrix::with_daemon(&refs(&flags));
    let source = "\
import sys, helper, wheelpkg, venvmod, editable
print(helper.__file__)
print(wheelpkg.__file__, wheelpkg.NAME)
print(venvmod.__file__, venvmod.WHERE, editable.WHERE)
print(helper.double(21))
print([p for p in sys.path if p in ('/', '/proc/self') or p.startswith('/proc')])
helper.fail()
";
    let file = script(source.as_bytes());
    for (name, target) in matrix.targets() {
        let mut args = if name == "daemon" {
            Vec::new()
        } else {
            refs(&flags)
        };
        args.push(file.path().to_str().unwrap());
        let out = pushy("run", &target, &args, b"");
        assert_status(name, &out, 1);
        let stdout = text(&out.stdout);
        let lines: Vec<&str> = stdout.lines().collect();
        let helper = site.project.join("helper.py");
        assert_eq!(lines[0], helper.to_str().unwrap(), "{name}");
        assert_eq!(
            lines[1],
            format!(
                "{}/wheelpkg/__init__.py from the wheel",
                site.wheel.display()
            ),
            "{name}"
        );
        assert!(
            lines[2].ends_with("site-packages/venvmod.py venv editable"),
            "{name}: {stdout}"
        );
        assert_eq!(lines[3], "42", "{name}");
        assert_eq!(lines[4], "[]", "{name}: {stdout}");
        assert!(
            !stdout.contains(&format!("'{}'", site.project.parent().unwrap().display())),
            "{name}"
        );
        // The traceback reads as it would natively: host file, line, source.
        let stderr = text(&out.stderr);
        assert!(
            stderr.contains(&format!("File \"{}\", line 7, in fail", helper.display())),
            "{name}: {stderr}"
        );
        assert!(
            stderr.contains("raise ValueError('failing in helper')"),
            "{name}: {stderr}"
        );
        // The .pth file's import line is host code: it was not run.
        assert!(!stderr.contains("host code ran"), "{name}: {stderr}");
    }
    let _ = &site.editable;
}

#[test]
fn the_paths_are_read_only_and_show_nothing_beside_them() {
    let site = Site::new();
    let flags = site.flags();
    let matrix = Matrix::with_daemon(&refs(&flags));
    let source = format!(
        "\
import os
print(sorted(os.listdir({project:?})))
print(os.listdir({dist:?}))
for path in [{project:?} + '/new.py', {project:?} + '/helper.py']:
    try:
        open(path, 'a').write('x')
        print('written', path)
    except OSError as e:
        print('refused', type(e).__name__)
for path in [{dist:?} + '/secret.txt', {base:?}]:
    try:
        os.listdir(path) if path.endswith('/') else open(path).read()
        print('read', path)
    except OSError as e:
        print('hidden', type(e).__name__)
",
        project = site.project.display().to_string(),
        dist = site.wheel.parent().unwrap().display().to_string(),
        base = format!("{}/", site.project.parent().unwrap().display()),
    );
    let wheel_name = site.wheel.file_name().unwrap().to_str().unwrap().to_owned();
    for_every_target(&matrix, &flags, &source, |name, out| {
        assert_status(name, out, 0);
        let stdout = text(&out.stdout);
        let lines: Vec<&str> = stdout.lines().collect();
        assert_eq!(lines[0], "['helper.py', 'notes.txt']", "{name}");
        assert_eq!(lines[1], format!("['{wheel_name}']"), "{name}");
        assert!(lines[2].starts_with("refused"), "{name}: {stdout}");
        assert!(lines[3].starts_with("refused"), "{name}: {stdout}");
        assert!(lines[4].starts_with("hidden"), "{name}: {stdout}");
        assert!(lines[5].starts_with("hidden"), "{name}: {stdout}");
    });
    // And the host's files are untouched.
    assert_eq!(
        std::fs::read_to_string(site.project.join("helper.py"))
            .unwrap()
            .lines()
            .count(),
        7
    );
    assert!(!site.project.join("new.py").exists());
}

/// Runs `source` with `flags` on embedded: and local:, and on the matrix's
/// daemon (started with the same flags) without them.
fn for_every_target(
    matrix: &Matrix,
    flags: &[String],
    source: &str,
    check: impl Fn(&str, &Output),
) {
    let file = script(source.as_bytes());
    for (name, target) in matrix.targets() {
        let mut args = if name == "daemon" {
            Vec::new()
        } else {
            refs(flags)
        };
        args.push(file.path().to_str().unwrap());
        check(name, &pushy("run", &target, &args, b""));
    }
}

#[test]
fn a_daemon_client_cannot_mount_anything_on_the_server() {
    let matrix = Matrix::new();
    let dir = tempfile::tempdir().unwrap();
    let dir_text = dir.path().display().to_string();
    let file = script(b"print('ran')\n");
    let (_, target) = matrix.targets().pop().unwrap();
    for (flag, value) in [
        ("--path", dir_text.clone()),
        ("--venv", dir_text.clone()),
        ("--dir", format!("{dir_text}:/data")),
        ("--preload", "json".to_owned()),
    ] {
        let out = pushy(
            "run",
            &target,
            &[flag, &value, file.path().to_str().unwrap()],
            b"",
        );
        assert_status(flag, &out, 2);
        let stderr = text(&out.stderr);
        assert!(
            stderr.contains(&format!("{flag} cannot be used with a daemon"))
                && stderr.contains(&format!("pushy serve {flag}")),
            "{flag}: {stderr}"
        );
        assert!(text(&out.stdout).is_empty(), "{flag}");
    }
    // An active virtualenv of the client's is not the daemon's business.
    let venv = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_pushy"))
        .arg("run")
        .args(&target)
        .arg(file.path())
        .env("VIRTUAL_ENV", venv.path())
        .output()
        .unwrap();
    assert_status("ambient venv", &out, 0);
    assert_eq!(text(&out.stdout), "ran\n");
}

#[test]
fn paths_that_cannot_be_used_are_usage_errors() {
    let dir = tempfile::tempdir().unwrap();
    let notes = dir.path().join("notes.txt");
    std::fs::write(&notes, "x").unwrap();
    let file = script(b"print('ran')\n");
    let missing = dir.path().join("missing");
    for (flag, value, says) in [
        ("--path", missing.clone(), "No such file"),
        ("--path", notes.clone(), "not a directory, a .whl or a .zip"),
        ("--venv", dir.path().to_path_buf(), "is it a virtualenv?"),
    ] {
        for target in ["embedded:", "local:"] {
            let out = pushy(
                "run",
                &["--target".into(), target.into()],
                &[flag, value.to_str().unwrap(), file.path().to_str().unwrap()],
                b"",
            );
            let stderr = text(&out.stderr);
            assert!(stderr.contains(says), "{target} {flag}: {stderr}");
            assert!(text(&out.stdout).is_empty(), "{target} {flag}");
            assert_ne!(out.status.code(), Some(0), "{target} {flag}");
        }
    }
}

/// The preload snapshots in `cache`.
fn snapshots(cache: &Path) -> Vec<(PathBuf, u64)> {
    use std::os::unix::fs::MetadataExt;
    let mut found: Vec<(PathBuf, u64)> = std::fs::read_dir(cache)
        .map(|entries| {
            entries
                .flatten()
                .map(|e| e.path())
                .filter(|p| {
                    p.file_name()
                        .unwrap()
                        .to_string_lossy()
                        .starts_with("preload-")
                        && p.extension().is_some_and(|e| e == "cwasm")
                })
                .map(|p| {
                    let inode = std::fs::metadata(&p).unwrap().ino();
                    (p, inode)
                })
                .collect()
        })
        .unwrap_or_default();
    found.sort();
    found
}

fn run_with_cache(cache: &Path, target: &str, args: &[&str]) -> Output {
    let out = Command::new(env!("CARGO_BIN_EXE_pushy"))
        .args(["run", "--target", target])
        .args(args)
        .env("PUSHY_CACHE_DIR", cache)
        .output()
        .unwrap();
    common::matrix::no_panic(&out);
    out
}

#[test]
fn preloaded_snapshots_are_built_once_reused_and_rebuilt_when_the_code_changes() {
    let site = Site::new();
    let cache = tempfile::tempdir().unwrap();
    let path = format!("--path={}", site.project.display());
    let check = script(
        b"import sys, random\nprint('helper' in sys.modules, 'wheelpkg' in sys.modules)\n\
import helper\nprint(helper.double(2))\nprint(random.random())\n",
    );
    let check = check.path().to_str().unwrap();
    // A miss builds the snapshot; the module is imported before the script runs.
    let first = run_with_cache(
        cache.path(),
        "embedded:",
        &[&path, "--preload", "helper", check],
    );
    assert_status("miss", &first, 0);
    let first_lines: Vec<String> = text(&first.stdout).lines().map(str::to_owned).collect();
    assert_eq!(first_lines[..2], ["True False", "4"]);
    let built = snapshots(cache.path());
    assert_eq!(built.len(), 1, "{built:?}");
    // A hit uses that file as it is, on embedded: and in a local: child; no
    // two sessions share the snapshot's random seed.
    let mut seeds = vec![first_lines[2].clone()];
    for target in ["embedded:", "local:"] {
        let out = run_with_cache(cache.path(), target, &[&path, "--preload", "helper", check]);
        assert_status(target, &out, 0);
        let lines: Vec<String> = text(&out.stdout).lines().map(str::to_owned).collect();
        assert_eq!(lines[..2], ["True False", "4"], "{target}");
        seeds.push(lines[2].clone());
        assert_eq!(snapshots(cache.path()), built, "{target}: rebuilt");
    }
    seeds.sort();
    seeds.dedup();
    assert_eq!(seeds.len(), 3, "sessions shared a seed: {seeds:?}");
    // Without --preload the module is imported by the script, as before.
    let plain = run_with_cache(cache.path(), "embedded:", &[&path, check]);
    assert_eq!(text(&plain.stdout).lines().next(), Some("False False"));
    // Changed code is a miss: a new snapshot, with the new code.
    std::fs::write(
        site.project.join("helper.py"),
        "def double(x):\n    return 3 * x\n",
    )
    .unwrap();
    let changed = run_with_cache(
        cache.path(),
        "embedded:",
        &[&path, "--preload", "helper", check],
    );
    assert_status("changed", &changed, 0);
    assert_eq!(text(&changed.stdout).lines().nth(1), Some("6"));
    assert_eq!(snapshots(cache.path()).len(), 2);
}

#[test]
fn a_preload_that_fails_names_the_module() {
    let site = Site::new();
    std::fs::write(
        site.project.join("broken.py"),
        "import json\nraise RuntimeError('broken at import')\n",
    )
    .unwrap();
    let cache = tempfile::tempdir().unwrap();
    let path = format!("--path={}", site.project.display());
    let check = script(b"print('ran')\n");
    let check = check.path().to_str().unwrap();
    for (modules, says) in [
        ("json,broken", "RuntimeError: broken at import"),
        ("no_such_module", "No module named 'no_such_module'"),
    ] {
        for target in ["embedded:", "local:"] {
            let out = run_with_cache(cache.path(), target, &[&path, "--preload", modules, check]);
            assert_status(target, &out, 1);
            let stderr = text(&out.stderr);
            let module = modules.rsplit(',').next().unwrap();
            assert!(
                stderr.contains(&format!("--preload {module}: importing it failed"))
                    && stderr.contains(says),
                "{target} {modules}: {stderr}"
            );
            assert!(text(&out.stdout).is_empty());
        }
    }
    assert!(snapshots(cache.path()).is_empty());
    // A name that is no module name is a usage error, before anything runs.
    let out = run_with_cache(cache.path(), "embedded:", &["--preload", "os;x", check]);
    assert_status("bad name", &out, 2);
    assert!(text(&out.stderr).contains("not a module name"));
}

#[test]
fn a_preload_may_print_and_is_bounded_by_the_time_limit() {
    let site = Site::new();
    std::fs::write(
        site.project.join("noisy.py"),
        "import warnings\nprint('banner at import')\nwarnings.warn('careful')\nVALUE = 7\n",
    )
    .unwrap();
    std::fs::write(site.project.join("spins.py"), "while True:\n    pass\n").unwrap();
    let cache = tempfile::tempdir().unwrap();
    let path = format!("--path={}", site.project.display());
    let check = script(b"import noisy\nprint('value', noisy.VALUE)\n");
    let check = check.path().to_str().unwrap();
    // What an import prints while the snapshot is made is not the script's
    // output, and does not stop the snapshot being made.
    for target in ["embedded:", "local:"] {
        let out = run_with_cache(cache.path(), target, &[&path, "--preload", "noisy", check]);
        assert_status(target, &out, 0);
        assert_eq!(text(&out.stdout), "value 7\n", "{target}");
    }
    assert_eq!(snapshots(cache.path()).len(), 1);
    // An import that never ends is stopped by --timeout, and nothing is kept.
    let started = std::time::Instant::now();
    let out = run_with_cache(
        cache.path(),
        "embedded:",
        &[&path, "--timeout", "2", "--preload", "spins", check],
    );
    assert_status("spins", &out, 1);
    let stderr = text(&out.stderr);
    assert!(stderr.contains("--preload spins"), "{stderr}");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(60),
        "took {:?}",
        started.elapsed()
    );
    assert_eq!(snapshots(cache.path()).len(), 1);
}

#[test]
fn a_daemon_serves_its_own_preloaded_path() {
    let site = Site::new();
    let path = format!("--path={}", site.project.display());
    let matrix = Matrix::with_daemon(&[&path, "--preload", "helper"]);
    let (_, target) = matrix.targets().pop().unwrap();
    let file = script(
        b"import sys\nprint('helper' in sys.modules)\nimport helper\nprint(helper.double(5))\n",
    );
    let out = pushy("run", &target, &[file.path().to_str().unwrap()], b"");
    assert_status("daemon", &out, 0);
    assert_eq!(text(&out.stdout), "True\n10\n");
}
