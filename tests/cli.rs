//! The `pushy` binary: exit statuses, streamed output, usage errors.

use std::io::Write;
use std::process::{Command, Output};

fn pushy(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_pushy"))
        .args(args)
        .output()
        .expect("run pushy")
}

fn script(source: &str) -> tempfile::NamedTempFile {
    let mut file = tempfile::Builder::new()
        .suffix(".py")
        .tempfile()
        .expect("temp file");
    file.write_all(source.as_bytes()).expect("write script");
    file
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn run_hello_prints_and_exits_zero() {
    let hello = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/hello.py");
    let out = pushy(&["run", hello, "--flag", "x"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("Hello from sandboxed Python 3.14"),
        "{stdout}"
    );
    assert!(stdout.contains("'--flag', 'x'"), "{stdout}");
    assert!(
        stdout.contains(r#"{"squares": [0, 1, 4, 9, 16]}"#),
        "{stdout}"
    );
}

#[test]
fn system_exit_sets_the_status() {
    let file = script("import sys\nprint('bye')\nsys.exit(7)\n");
    let out = pushy(&["run", file.path().to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(7));
    assert_eq!(text(&out.stdout), "bye\n");
    let file = script("raise SystemExit('fatal: message')\n");
    let out = pushy(&["run", file.path().to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("fatal: message"));
}

#[test]
fn uncaught_exception_exits_one_with_the_traceback() {
    let file = script("def inner():\n    return 1 / 0\n\ninner()\n");
    let out = pushy(&["run", file.path().to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("Traceback (most recent call last)"),
        "{stderr}"
    );
    assert!(stderr.contains("return 1 / 0"), "{stderr}");
    assert!(
        stderr.contains("ZeroDivisionError: division by zero"),
        "{stderr}"
    );
}

#[test]
fn time_limit_exits_three_naming_the_limit() {
    let file = script("print('start', flush=True)\nwhile True:\n    pass\n");
    let out = pushy(&["run", "--timeout", "0.5", file.path().to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(3));
    assert_eq!(text(&out.stdout), "start\n");
    assert!(
        text(&out.stderr).contains("time limit of 0.500 s exceeded"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn memory_limit_exits_three_naming_the_limit() {
    let file = script("data = bytearray(300 * 1024 * 1024)\n");
    let out = pushy(&["run", "--memory", "64", file.path().to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("memory limit"),
        "{}",
        text(&out.stderr)
    );
    // The same script fits a larger limit.
    let out = pushy(&["run", "--memory", "512", file.path().to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
}

#[test]
fn usage_errors_exit_two() {
    assert_eq!(pushy(&["run"]).status.code(), Some(2));
    assert_eq!(pushy(&["run", "/no/such/script.py"]).status.code(), Some(2));
    assert_eq!(pushy(&["frobnicate"]).status.code(), Some(2));
    assert_eq!(
        pushy(&["run", "--timeout", "-1", "x.py"]).status.code(),
        Some(2)
    );
    assert_eq!(
        pushy(&["run", "--dir", "nonsense", "x.py"]).status.code(),
        Some(2)
    );
}

#[test]
fn eval_prints_the_repr() {
    let out = pushy(&["eval", "[n * n for n in range(4)]"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "[0, 1, 4, 9]\n");
    let out = pushy(&["eval", "'a' + 'b'"]);
    assert_eq!(text(&out.stdout), "'ab'\n");
    let out = pushy(&["eval", "1/0"]);
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn help_shows_defaults() {
    let out = pushy(&["run", "--help"]);
    assert_eq!(out.status.code(), Some(0));
    let help = text(&out.stdout);
    assert!(help.contains("[default: 60]"), "{help}");
    assert!(help.contains("[default: 512]"), "{help}");
    assert!(pushy(&["eval", "--help"]).status.success());
    assert!(pushy(&["--help"]).status.success());
}

#[test]
fn mounted_directories_are_visible_to_scripts() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("in.txt"), "42").unwrap();
    let file = script("print(int(open('/in/in.txt').read()) + 1)\n");
    let mount = format!("{}:/in:ro", dir.path().display());
    let out = pushy(&["run", "--dir", &mount, file.path().to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "43\n");
}
