//! `pushy test` on a fixture suite with passing, failing, erroring, skipped,
//! looping and memory-hungry tests, scripts, JUnit XML, -k, --fail-fast,
//! several targets and a dead one.

mod common;

use std::process::{Command, Output};

use common::daemon::Daemon;

const SUITE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/fixtures/suite");

fn pushy_test(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_pushy"))
        .arg("test")
        .args(args)
        .output()
        .expect("run pushy test")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn last_line(out: &Output) -> String {
    text(&out.stdout)
        .trim_end()
        .lines()
        .last()
        .unwrap_or_default()
        .to_owned()
}

#[test]
fn the_fixture_suite_gives_exact_counts_junit_and_exit_status() {
    let dir = tempfile::tempdir().unwrap();
    let junit = dir.path().join("junit.xml");
    let out = pushy_test(&[
        SUITE,
        "--timeout",
        "1",
        "--memory",
        "128",
        "--junit",
        junit.to_str().unwrap(),
    ]);
    let stdout = text(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{stdout}\n{}",
        text(&out.stderr)
    );
    assert_eq!(last_line(&out), "8 passed, 6 failed, 1 skipped", "{stdout}");
    assert!(
        stdout.contains("(3 assertion failures, 1 errors, 1 timed out, 1 out of memory)"),
        "{stdout}"
    );
    // The bare assert shows the compared values; captured output only for failures.
    assert!(
        stdout.contains("AssertionError: assert helper() == 42\n  left:  41\n  right: 42"),
        "{stdout}"
    );
    assert!(
        stdout.contains("--- captured stdout ---\nabout to compare"),
        "{stdout}"
    );
    assert!(
        stdout.contains("AssertionError: Lists differ: [1, 2] != [1, 3]"),
        "{stdout}"
    );
    assert!(stdout.contains("KeyError: 'missing'"));
    // The test after the endless loop ran in a fresh session.
    assert!(
        !stdout.contains("test_after_the_loop_runs_in_a_fresh_session —"),
        "{stdout}"
    );
    let xml = std::fs::read_to_string(&junit).unwrap();
    assert!(xml.starts_with("<?xml version=\"1.0\" encoding=\"UTF-8\"?>"));
    assert!(xml.contains("<testsuites name=\"pushy test\" tests=\"15\" failures=\"3\" errors=\"3\" skipped=\"1\">"), "{xml}");
    assert!(xml.contains("name=\"test_loops_forever\""));
    assert!(xml.contains("<error type=\"timed out\""));
    assert!(xml.contains("<error type=\"out of memory\""));
    assert!(xml.contains("<skipped message=\"not today\"/>"));
    assert!(xml.contains("<failure message=\"AssertionError: assert helper() == 42"));
}

#[test]
fn pattern_and_fail_fast_select_and_stop() {
    let out = pushy_test(&[SUITE, "-k", "Arithmetic"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stdout));
    assert_eq!(last_line(&out), "2 passed, 0 failed");
    let out = pushy_test(&[SUITE, "--jobs", "1", "--fail-fast", "--timeout", "1"]);
    assert_eq!(out.status.code(), Some(1));
    let summary = last_line(&out);
    // Files run in order with one job; the first failing file stops the run.
    assert!(summary.ends_with("1 failed"), "{summary}");
    let out = pushy_test(&["/nonexistent/dir"]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn two_daemon_targets_give_identical_results_and_a_dead_target_is_retried() {
    let (a, b) = (Daemon::start(&[]), Daemon::start(&[]));
    let token = a.token_file.to_str().unwrap().to_owned();
    // Both daemons use the same token file contents.
    std::fs::copy(&a.token_file, &b.token_file).unwrap();
    let pass = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../tests/fixtures/suite/test_pass.py"
    );
    let skip = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../tests/fixtures/suite/test_skip.py"
    );
    let fail = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../tests/fixtures/suite/test_fail.py"
    );
    let local = pushy_test(&[pass, skip, fail]);
    let remote = pushy_test(&[
        pass,
        skip,
        fail,
        "--target",
        &a.url(),
        "--target",
        &b.url(),
        "--token-file",
        &token,
    ]);
    assert_eq!(last_line(&local), "5 passed, 2 failed, 1 skipped");
    assert_eq!(
        last_line(&remote),
        last_line(&local),
        "{}",
        text(&remote.stderr)
    );
    // A target that is gone: its files are retried on the other, and the report says so.
    let dead = "daemon:127.0.0.1:9";
    let out = pushy_test(&[
        pass,
        skip,
        "--jobs",
        "2",
        "--target",
        dead,
        "--target",
        &a.url(),
        "--token-file",
        &token,
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stdout));
    assert_eq!(last_line(&out), "4 passed, 0 failed, 1 skipped");
    assert!(
        text(&out.stdout).contains("retried after: daemon:127.0.0.1:9"),
        "{}",
        text(&out.stdout)
    );
}
