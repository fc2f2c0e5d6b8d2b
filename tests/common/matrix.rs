//! Running the `pushy` binary over every target: `embedded:`, `local:` and an
//! authenticated `daemon:`. One matrix, so that a transport-specific failure
//! cannot hide behind the embedded path; every run fails if its stderr shows
//! a Rust panic.
#![allow(dead_code)]

use std::io::Write;
use std::process::{Command, Output, Stdio};

use super::daemon::Daemon;

/// The targets, with the flags each needs. The daemon lives as long as this.
pub struct Matrix {
    pub daemon: Daemon,
}

impl Matrix {
    pub fn new() -> Matrix {
        Matrix::with_daemon(&[])
    }

    /// A daemon started with `flags` (its own limits and mounts).
    pub fn with_daemon(flags: &[&str]) -> Matrix {
        Matrix {
            daemon: Daemon::start(flags),
        }
    }

    /// (name, flags selecting the target).
    pub fn targets(&self) -> Vec<(&'static str, Vec<String>)> {
        vec![
            ("embedded", vec!["--target".into(), "embedded:".into()]),
            ("local", vec!["--target".into(), "local:".into()]),
            (
                "daemon",
                vec![
                    "--target".into(),
                    self.daemon.url(),
                    "--token-file".into(),
                    self.daemon.token_file.display().to_string(),
                ],
            ),
        ]
    }
}

/// `pushy COMMAND [target flags] ARGS...` with `stdin` as its input.
pub fn pushy(command: &str, target: &[String], args: &[&str], stdin: &[u8]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_pushy"))
        .arg(command)
        .args(target)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start pushy");
    let mut input = child.stdin.take().unwrap();
    let stdin = stdin.to_vec();
    let writer = std::thread::spawn(move || {
        let _ = input.write_all(&stdin);
    });
    let out = child.wait_with_output().expect("wait for pushy");
    writer.join().unwrap();
    no_panic(&out);
    out
}

pub fn no_panic(out: &Output) {
    let stderr = text(&out.stderr);
    assert!(!stderr.contains("panicked at"), "a Rust panic:\n{stderr}");
}

pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The last line of what a command printed on stdout (the summary line).
pub fn last_line(out: &Output) -> String {
    text(&out.stdout)
        .trim_end()
        .lines()
        .last()
        .unwrap_or_default()
        .to_owned()
}

pub fn script(source: &[u8]) -> tempfile::NamedTempFile {
    let mut file = tempfile::Builder::new()
        .suffix(".py")
        .tempfile()
        .expect("temp file");
    file.write_all(source).expect("write script");
    file
}

/// Runs `source` as a script on every target; `check` gets each outcome.
pub fn run_everywhere(
    matrix: &Matrix,
    flags: &[&str],
    source: &str,
    stdin: &[u8],
    check: impl Fn(&str, &Output),
) {
    let file = script(source.as_bytes());
    for (name, target) in matrix.targets() {
        let mut args = flags.to_vec();
        args.push(file.path().to_str().unwrap());
        let out = pushy("run", &target, &args, stdin);
        check(name, &out);
    }
}

pub fn assert_status(name: &str, out: &Output, status: i32) {
    assert_eq!(
        out.status.code(),
        Some(status),
        "{name}: stdout {:?}\nstderr {}",
        text(&out.stdout),
        text(&out.stderr)
    );
}
