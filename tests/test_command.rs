//! `pushy test` on a fixture suite with passing, failing, erroring, skipped,
//! looping and memory-hungry tests, scripts, JUnit XML, -k, --fail-fast,
//! several targets and a dead one; and on fixtures of what must never be
//! reported as passed without running (async and generator tests, class and
//! module fixtures, pytest-style classes), -k that selects nothing, an
//! unwritable JUnit path, what --fail-fast left unrun, and targets that all die.
//!
//! Over 500 lines on purpose: one test per reporting rule of the runner.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Output};

use common::daemon::Daemon;
use common::matrix::{last_line, text};

const SUITE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/fixtures/suite");
const RUNNER: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/fixtures/runner");

/// `pushy test ARGS`; whatever it does, it must not panic.
fn pushy_test(args: &[&str]) -> Output {
    // The built-in collector: no virtualenv with pytest may switch it to
    // pytest (tests/pytest_runner.rs tests that).
    let out = Command::new(env!("CARGO_BIN_EXE_pushy"))
        .arg("test")
        .args(args)
        .env_remove("VIRTUAL_ENV")
        .output()
        .expect("run pushy test");
    let stderr = text(&out.stderr);
    assert!(!stderr.contains("panicked at"), "{stderr}");
    out
}

fn suite(file: &str) -> String {
    format!("{SUITE}/{file}")
}

fn runner(file: &str) -> String {
    format!("{RUNNER}/{file}")
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

/// The `=== FILE :: NAME — OUTCOME` block of a failure, followed by its message.
fn failure(file: &str, name: &str, outcome: &str, message: &str) -> String {
    format!("=== {file} :: {name} — {outcome}\n{message}")
}

#[test]
fn class_and_module_fixtures_run_once_and_a_failing_one_makes_its_tests_errors() {
    let file = runner("test_class_fixtures.py");
    let out = pushy_test(&[&file]);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    // Prepared's two tests and After's pass only if setUpModule / setUpClass ran
    // once each and Prepared.tearDownClass ran before After's test.
    assert_eq!(last_line(&out), "3 passed, 4 failed", "{stdout}");
    assert!(
        stdout.contains("(0 assertion failures, 4 errors, 0 timed out, 0 out of memory)"),
        "{stdout}"
    );
    for test in ["BrokenSetUp.test_one", "BrokenSetUp.test_two"] {
        let expected = failure(
            &file,
            test,
            "error",
            "setUpClass failed: RuntimeError: no database",
        );
        assert!(stdout.contains(&expected), "{stdout}");
    }
    let teardowns = [
        ("Prepared.tearDownClass", "ValueError: tearDownClass ran"),
        (
            "test_class_fixtures.tearDownModule",
            "RuntimeError: tearDownModule ran",
        ),
    ];
    for (name, message) in teardowns {
        let expected = failure(&file, name, "error", message);
        assert!(stdout.contains(&expected), "{stdout}");
    }
    assert_eq!(stdout.matches("\n=== ").count(), 4, "{stdout}");

    let file = runner("test_module_setup_fails.py");
    let out = pushy_test(&[&file]);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert_eq!(last_line(&out), "0 passed, 3 failed", "{stdout}");
    for test in [
        "test_function",
        "Case.test_method",
        "TestPytestStyle.test_method",
    ] {
        let expected = failure(
            &file,
            test,
            "error",
            "setUpModule failed: OSError: no fixture data",
        );
        assert!(stdout.contains(&expected), "{stdout}");
    }
    // As unittest: no tearDownModule after a failed setUpModule.
    assert!(!stdout.contains("tearDownModule must not run"), "{stdout}");
}

#[test]
fn fixtures_are_set_up_again_after_a_test_ends_its_session() {
    let file = runner("test_fixtures_after_reload.py");
    let out = pushy_test(&[&file, "--timeout", "1"]);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert_eq!(last_line(&out), "1 passed, 1 failed", "{stdout}");
    assert!(
        stdout.contains("(0 assertion failures, 0 errors, 1 timed out, 0 out of memory)"),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!(
            "=== {file} :: Reloaded.test_a_loops_forever — timed out"
        )),
        "{stdout}"
    );
}

#[test]
fn pytest_style_classes_are_collected_with_a_fresh_instance_per_test() {
    let file = runner("test_pytest_classes.py");
    let out = pushy_test(&[&file]);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert_eq!(last_line(&out), "3 passed, 3 failed", "{stdout}");
    assert!(
        stdout.contains(&format!("FAIL {file} (6 tests, 3 failing)")),
        "{stdout}"
    );
    assert!(
        stdout.contains(&failure(
            &file,
            "TestPlain.test_fails",
            "failed",
            "AssertionError: assert 2 * 2 == 5\n  left:  4\n  right: 5"
        )),
        "{stdout}"
    );
    assert!(
        stdout.contains(&failure(
            &file,
            "TestTeardownRaises.test_body_passes",
            "error",
            "teardown_method failed: RuntimeError: teardown_method ran"
        )),
        "{stdout}"
    );
    assert!(
        stdout.contains(&failure(
            &file,
            "TestHasInit",
            "error",
            "cannot collect test class 'TestHasInit' because it has a __init__"
        )),
        "{stdout}"
    );
    assert!(!stdout.contains("Helper"), "{stdout}");
}

#[test]
fn k_that_selects_nothing_exits_5_and_says_so() {
    let out = pushy_test(&[SUITE, "-k", "no_such_test"]);
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(5), "{stdout}\n{stderr}");
    assert!(
        stderr.contains(
            "pushy: no tests selected: -k \"no_such_test\" matches none of the 15 tests collected"
        ),
        "{stderr}"
    );
    // Files with nothing selected are not listed as "ok (0 tests)".
    assert!(!stdout.contains("(0 tests"), "{stdout}");
    // A pattern that selects something still runs it.
    let out = pushy_test(&[SUITE, "-k", "test_plain_function"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stdout));
    assert_eq!(last_line(&out), "1 passed, 0 failed");
}

#[test]
fn an_unwritable_junit_path_fails_the_command() {
    let pass = suite("test_pass.py");
    // Found out before anything runs.
    let out = pushy_test(&[&pass, "--junit", "/nonexistent-dir/junit.xml"]);
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(2), "{stdout}\n{stderr}");
    assert!(
        stderr.contains(
            "pushy: cannot write the JUnit report to /nonexistent-dir/junit.xml: No such file or directory"
        ),
        "{stderr}"
    );
    assert_eq!(stdout, "");
    // Found out when writing it: the tests passed, the command does not.
    let out = pushy_test(&[&pass, "--junit", "/dev/full"]);
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{stderr}");
    assert_eq!(last_line(&out), "3 passed, 0 failed", "{stdout}");
    assert!(
        stderr
            .contains("pushy: cannot write the JUnit report to /dev/full: No space left on device"),
        "{stderr}"
    );
}

#[test]
fn fail_fast_lists_what_it_left_unrun_as_not_run() {
    let (fail, pass, skip) = (
        suite("test_fail.py"),
        suite("test_pass.py"),
        suite("test_skip.py"),
    );
    let dir = tempfile::tempdir().unwrap();
    let junit = dir.path().join("junit.xml");
    let out = pushy_test(&[
        &fail,
        &pass,
        &skip,
        "--jobs",
        "1",
        "--fail-fast",
        "--junit",
        junit.to_str().unwrap(),
    ]);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert_eq!(last_line(&out), "0 passed, 1 failed", "{stdout}");
    // test_fail.py's first test fails; its other two and the two other files never run.
    assert!(
        stdout.contains(&format!("FAIL {fail} (1 tests, 1 failing, 2 not run)")),
        "{stdout}"
    );
    for file in [&pass, &skip] {
        assert!(
            stdout.contains(&format!(
                "--   {file} (not run: --fail-fast stopped the run)"
            )),
            "{stdout}"
        );
    }
    assert!(!stdout.contains("ok  "), "{stdout}");
    assert!(
        stdout.contains("(--fail-fast stopped the run: 2 files and 2 tests not run)\n0 passed"),
        "{stdout}"
    );
    let xml = std::fs::read_to_string(&junit).unwrap();
    assert_eq!(xml.matches("<testsuite ").count(), 1, "{xml}");
    assert!(
        xml.contains(
            "<testsuites name=\"pushy test\" tests=\"1\" failures=\"1\" errors=\"0\" skipped=\"0\">"
        ),
        "{xml}"
    );
}

#[test]
fn when_every_target_died_the_error_says_why_for_each() {
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, "test-token-0123456789abcdef\n").unwrap();
    std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o600)).unwrap();
    let pass = suite("test_pass.py");
    let out = pushy_test(&[
        &pass,
        "--target",
        "daemon:127.0.0.1:9",
        "--target",
        "daemon:127.0.0.1:1",
        "--token-file",
        token.to_str().unwrap(),
    ]);
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{stderr}");
    assert_eq!(last_line(&out), "0 passed, 1 failed", "{stdout}");
    // Each target with the last error seen on it, cause included.
    let why = "every target died: \
               daemon:127.0.0.1:9: cannot connect to 127.0.0.1:9: Connection refused (os error 111); \
               daemon:127.0.0.1:1: cannot connect to 127.0.0.1:1: Connection refused (os error 111)";
    assert!(stderr.contains(&format!("pushy: {why}\n")), "{stderr}");
    assert!(
        stdout.contains(&failure(&pass, "<targets>", "error", why)),
        "{stdout}"
    );
}

#[test]
fn async_tests_run_and_generator_tests_are_never_passed_without_running() {
    let file = runner("test_async_and_generators.py");
    let out = pushy_test(&[&file]);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    // Every async test runs on the sandbox's event loop (an
    // IsolatedAsyncioTestCase too); only the generator tests are refused.
    assert_eq!(last_line(&out), "4 passed, 5 failed", "{stdout}");
    assert!(
        stdout.contains("(3 assertion failures, 2 errors, 0 timed out, 0 out of memory)"),
        "{stdout}"
    );
    for (test, message) in [
        (
            "test_async_function_that_fails",
            "AssertionError: assert await one() == 2\n",
        ),
        (
            "AsyncMethods.test_async_method_that_fails",
            "AssertionError: 1 != 3\n",
        ),
        (
            "TestAsyncPytestClass.test_async_that_fails",
            "AssertionError: assert await one() == 4\n",
        ),
    ] {
        assert!(
            stdout.contains(&failure(&file, test, "failed", message)),
            "{stdout}"
        );
    }
    for test in [
        "test_async_function_that_passes",
        "AsyncMethods.test_async_method_that_passes",
        "Isolated.test_needs_the_event_loop",
    ] {
        assert!(!stdout.contains(&format!(":: {test} —")), "{stdout}");
    }
    for test in [
        "test_generator_function",
        "AsyncMethods.test_generator_method",
    ] {
        let expected = failure(
            &file,
            test,
            "error",
            &format!(
                "{test} is a generator function (a yield test): pushy test cannot run it \
                 (nor can pytest since 4.0); its body did not run\n"
            ),
        );
        assert!(stdout.contains(&expected), "{stdout}");
    }
    // Closing the coroutines it did not run leaves no "never awaited" warnings.
    assert!(!stdout.contains("never awaited"), "{stdout}");
    assert!(!stdout.contains("Exception ignored"), "{stdout}");
}

#[test]
fn the_runner_fixtures_give_the_same_results_over_every_target() {
    let daemon = Daemon::start(&[]);
    let token = daemon.token_file.to_str().unwrap().to_owned();
    let files = [
        runner("test_async_and_generators.py"),
        runner("test_class_fixtures.py"),
        runner("test_module_setup_fails.py"),
        runner("test_pytest_classes.py"),
    ];
    let outcome = |target: &str| {
        let mut args: Vec<&str> = files.iter().map(String::as_str).collect();
        args.extend(["--jobs", "1", "--target", target, "--token-file", &token]);
        let out = pushy_test(&args);
        let stdout = text(&out.stdout);
        // Everything but the lines that name the target.
        let lines: Vec<String> = stdout
            .lines()
            .filter(|l| !l.contains("retried after"))
            .map(str::to_owned)
            .collect();
        (out.status.code(), lines)
    };
    let embedded = outcome("embedded:");
    assert_eq!(embedded.0, Some(1));
    assert_eq!(
        embedded.1.last().map(String::as_str),
        Some("10 passed, 15 failed")
    );
    assert_eq!(outcome("local:"), embedded);
    assert_eq!(outcome(&daemon.url()), embedded);
}
