//! The `pushy` binary: usage errors, help, the REPL, serve; what scripts do on
//! every target is in `matrix.rs`.

use std::io::Write;
mod common;

use std::process::{Command, Output};

fn pushy(args: &[&str]) -> Output {
    let out = Command::new(env!("CARGO_BIN_EXE_pushy"))
        .args(args)
        .output()
        .expect("run pushy");
    common::matrix::no_panic(&out);
    out
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
fn run_and_eval_work_over_local_and_daemon_targets() {
    let file = script("import sys\nprint('args', sys.argv[1:])\nsys.exit(4)\n");
    let out = pushy(&[
        "run",
        "--target",
        "local:",
        file.path().to_str().unwrap(),
        "x",
    ]);
    assert_eq!(out.status.code(), Some(4), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "args ['x']\n");
    // Limits travel to the host that runs the session.
    let looping = script("while True:\n    pass\n");
    let out = pushy(&[
        "run",
        "--target",
        "local:",
        "--timeout",
        "0.5",
        looping.path().to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));

    let daemon = common::daemon::Daemon::start(&[]);
    let token = daemon.token_file.to_str().unwrap();
    let out = pushy(&[
        "eval",
        "--target",
        &daemon.url(),
        "--token-file",
        token,
        "sorted({3, 1, 2})",
    ]);
    assert_eq!(text(&out.stdout), "[1, 2, 3]\n", "{}", text(&out.stderr));
    let out = pushy(&["eval", "--target", &daemon.url(), "1"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("authentication failed"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(
        pushy(&["eval", "--target", "gopher:x", "1"]).status.code(),
        Some(2)
    );
}

#[test]
fn repl_keeps_state_echoes_values_and_shows_tracebacks() {
    for target in ["embedded:", "local:"] {
        let mut child = Command::new(env!("CARGO_BIN_EXE_pushy"))
            .args(["repl", "--target", target])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(
                b"x = 6\nx * 7\ndef f():\n    return 'multi'\n\nf()\n1/0\nprint('still', x)\n",
            )
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert_eq!(out.status.code(), Some(0));
        assert_eq!(text(&out.stdout), "42\n'multi'\nstill 6\n", "{target}");
        assert!(
            text(&out.stderr).contains("ZeroDivisionError: division by zero"),
            "{target}"
        );
    }
}

#[test]
fn serve_needs_a_token_unless_told_otherwise() {
    let out = pushy(&["serve", "--listen", "127.0.0.1:0"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("--token-file"));
}

#[test]
fn serve_shuts_down_on_sigterm_and_closes_idle_sessions() {
    let mut daemon = common::daemon::Daemon::start(&["--idle-timeout", "1"]);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let con = pushy::connect_with(&daemon.url(), daemon.config())
            .await
            .unwrap();
        assert_eq!(con.eval("1").await.unwrap().extract::<i64>().unwrap(), 1);
        tokio::time::sleep(std::time::Duration::from_millis(2000)).await;
        let err = con.eval("1").await.unwrap_err();
        assert!(matches!(err, pushy::Error::Closed(_)), "{err:?}");
        // A live session is closed by the shutdown.
        let live = pushy::connect_with(&daemon.url(), daemon.config())
            .await
            .unwrap();
        assert_eq!(live.eval("2").await.unwrap().extract::<i64>().unwrap(), 2);
        let status = Command::new("kill")
            .args(["-TERM", &daemon.pid().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        let started = std::time::Instant::now();
        let exit = loop {
            if let Some(status) = daemon.child.try_wait().unwrap() {
                break status;
            }
            assert!(
                started.elapsed() < std::time::Duration::from_secs(10),
                "no shutdown"
            );
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        };
        assert_eq!(exit.code(), Some(0));
        assert!(live.eval("3").await.is_err());
    });
}

#[test]
fn repl_ctrl_c_stops_a_running_call_and_says_the_state_is_lost() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_pushy"))
        .args(["repl"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(b"x = 1\nwhile True: pass\n\n").unwrap();
    stdin.flush().unwrap();
    std::thread::sleep(std::time::Duration::from_millis(1500));
    let status = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    stdin
        .write_all(b"print('after', 'x' in globals())\n")
        .unwrap();
    drop(stdin);
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let stderr = text(&out.stderr);
    assert!(stderr.contains("interrupted"), "{stderr}");
    assert!(stderr.contains("state did not survive"), "{stderr}");
    assert_eq!(text(&out.stdout), "after False\n");
}
