//! What a script does, run by the `pushy` binary over every target:
//! `embedded:`, `local:` and an authenticated `daemon:` (`common::matrix`).
//!
//! Over 500 lines on purpose: one short test per command-line case, each
//! run over every target, so that a case never exists for one target only.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::matrix::{Matrix, assert_status, no_panic, pushy, run_everywhere, script, text};

#[test]
fn blocking_calls_work_on_every_target() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("data.txt"), "mounted text\n").unwrap();
    let ro = format!("{}:/ro:ro", dir.path().display());
    let rw_dir = tempfile::tempdir().unwrap();
    let rw = format!("{}:/rw", rw_dir.path().display());
    // A daemon does not take the client's mounts: it has its own, the same.
    let matrix = Matrix::with_daemon(&["--dir", &ro, "--dir", &rw]);
    let source = "\
import time, select, selectors, os
started = time.monotonic()
time.sleep(0.01)
print('slept', time.monotonic() - started >= 0.01)
print('select', select.select([], [], [], 0.01))
print('selector', selectors.DefaultSelector().select(0.01))
print(open('/ro/data.txt').read().strip())
with open('/rw/out.txt', 'w') as f:
    f.write('written')
print(open('/rw/out.txt').read())
os.remove('/rw/out.txt')
";
    let file = script(source.as_bytes());
    for (name, target) in matrix.targets() {
        let mut args = vec![];
        if name != "daemon" {
            args.extend(["--dir", &ro, "--dir", &rw]);
        }
        args.push(file.path().to_str().unwrap());
        let out = pushy("run", &target, &args, b"");
        assert_status(name, &out, 0);
        assert_eq!(
            text(&out.stdout),
            "slept True\nselect ([], [], [])\nselector []\nmounted text\nwritten\n",
            "{name}"
        );
    }
}

#[test]
fn the_time_limit_ends_blocking_calls_on_every_target() {
    let matrix = Matrix::new();
    for blocking in [
        "time.sleep(3600)",
        "select.select([], [], [], 3600)",
        "selectors.DefaultSelector().select(3600)",
        "threading.Event().wait()",
    ] {
        let source = format!(
            "import time, select, selectors, threading\nprint('start', flush=True)\n{blocking}\n"
        );
        run_everywhere(&matrix, &["--timeout", "1"], &source, b"", |name, out| {
            assert_status(name, out, 3);
            assert_eq!(text(&out.stdout), "start\n", "{name}: {blocking}");
            assert!(
                text(&out.stderr).contains("time limit of 1.000 s exceeded"),
                "{name}: {blocking}: {}",
                text(&out.stderr)
            );
        });
    }
}

#[test]
fn a_blocked_call_ends_at_its_deadline_not_later() {
    let matrix = Matrix::new();
    for (name, target) in matrix.targets() {
        let file = script(b"import time\ntime.sleep(3600)\n");
        let started = Instant::now();
        let out = pushy(
            "run",
            &target,
            &["--timeout", "1.5", file.path().to_str().unwrap()],
            b"",
        );
        let took = started.elapsed();
        assert_status(name, &out, 3);
        assert!(
            took >= Duration::from_millis(1500) && took < Duration::from_secs(10),
            "{name}: took {took:?}"
        );
    }
}

#[test]
fn timed_waits_on_locks_and_events_wait_their_timeout() {
    let matrix = Matrix::new();
    let source = "\
import threading, time
started = time.monotonic()
print(threading.Event().wait(0.3))
lock = threading.Lock()
lock.acquire()
print(lock.acquire(timeout=0.3))
print(time.monotonic() - started >= 0.6)
";
    run_everywhere(&matrix, &[], source, b"", |name, out| {
        assert_status(name, out, 0);
        assert_eq!(text(&out.stdout), "False\nFalse\nTrue\n", "{name}");
    });
}

#[test]
fn strings_utf8_cannot_carry_cross_escaped() {
    let matrix = Matrix::new();
    run_everywhere(
        &matrix,
        &[],
        "print('before', flush=True)\nraise ValueError('a\\ud800b')\n",
        b"",
        |name, out| {
            assert_status(name, out, 1);
            assert_eq!(text(&out.stdout), "before\n", "{name}");
            let stderr = text(&out.stderr);
            assert!(stderr.contains("ValueError: a\\ud800b"), "{name}: {stderr}");
        },
    );
}

#[test]
fn fd_writes_reach_the_same_streams_as_print() {
    let matrix = Matrix::new();
    let source = "\
import os, sys
print('one')
os.write(1, b'two\\n')
print('three')
n = os.write(2, b'err\\n')
print(n)
";
    run_everywhere(&matrix, &[], source, b"", |name, out| {
        assert_status(name, out, 0);
        assert_eq!(text(&out.stdout), "one\ntwo\nthree\n4\n", "{name}");
        assert_eq!(text(&out.stderr), "err\n", "{name}");
    });
}

#[test]
fn stdin_is_streamed_to_the_script() {
    let matrix = Matrix::new();
    let source = "\
import sys
name = input('name? ')
print('hello', name)
print(sys.stdin.read().upper(), end='')
try:
    input()
except EOFError:
    print('EOF')
";
    run_everywhere(
        &matrix,
        &[],
        source,
        b"world\nmore\nlines\n",
        |name, out| {
            assert_status(name, out, 0);
            assert_eq!(
                text(&out.stdout),
                "name? hello world\nMORE\nLINES\nEOF\n",
                "{name}"
            );
        },
    );
}

#[test]
fn scripts_are_decoded_as_python_decodes_them() {
    let matrix = Matrix::new();
    let mut latin1 = b"# -*- coding: latin-1 -*-\nprint(len('".to_vec();
    latin1.push(0xe9);
    latin1.extend_from_slice(b"'), ascii('");
    latin1.push(0xe9);
    latin1.extend_from_slice(b"'))\n");
    let mut bom = vec![0xef, 0xbb, 0xbf];
    bom.extend_from_slice("print('bom', 'é')\n".as_bytes());
    for (source, expected) in [(latin1, "1 '\\xe9'\n"), (bom, "bom é\n")] {
        let file = script(&source);
        for (name, target) in matrix.targets() {
            let out = pushy("run", &target, &[file.path().to_str().unwrap()], b"");
            assert_status(name, &out, 0);
            assert_eq!(text(&out.stdout), expected, "{name}");
        }
    }
}

#[test]
fn arguments_after_the_script_belong_to_it() {
    let matrix = Matrix::new();
    let file = script(b"import sys\nprint(sys.argv[1:])\n");
    for (name, target) in matrix.targets() {
        let out = pushy(
            "run",
            &target,
            &[file.path().to_str().unwrap(), "--memory", "64", "-x"],
            b"",
        );
        assert_status(name, &out, 0);
        assert_eq!(text(&out.stdout), "['--memory', '64', '-x']\n", "{name}");
    }
}

#[test]
fn exit_statuses_match_python3() {
    let matrix = Matrix::new();
    for (source, status) in [
        ("import os\nprint('x', flush=True)\nos._exit(5)\n", 5),
        ("raise MemoryError('not really')\n", 1),
        ("import sys\nsys.exit(300)\n", 44),
        ("import sys\nsys.exit(-1)\n", 255),
    ] {
        run_everywhere(&matrix, &[], source, b"", |name, out| {
            assert_status(name, out, status);
        });
    }
    for (name, target) in matrix.targets() {
        let out = pushy("eval", &target, &["exit(3)"], b"");
        assert_status(name, &out, 3);
        let out = pushy("eval", &target, &["exit()"], b"");
        assert_status(name, &out, 0);
    }
}

#[test]
fn atexit_handlers_run_at_the_end_of_a_script() {
    let matrix = Matrix::new();
    let source = "\
import atexit, sys
atexit.register(print, 'goodbye')
print('main')
sys.exit(4)
";
    run_everywhere(&matrix, &[], source, b"", |name, out| {
        assert_status(name, out, 4);
        assert_eq!(text(&out.stdout), "main\ngoodbye\n", "{name}");
    });
}

#[test]
fn the_output_limit_holds_for_every_kind_of_output() {
    let matrix = Matrix::new();
    let notice = "output limit of 1048576 bytes reached";
    // A huge exception message and traceback count against the limit.
    run_everywhere(
        &matrix,
        &["--output-limit", "1"],
        "raise ValueError('x' * 50_000_000)\n",
        b"",
        |name, out| {
            assert_status(name, out, 1);
            assert!(
                out.stderr.len() < 3 << 20,
                "{name}: {} bytes",
                out.stderr.len()
            );
            assert!(
                text(&out.stderr).contains("cut at the output limit"),
                "{name}"
            );
        },
    );
    // Output ending exactly at the limit, then more: the notice still comes.
    run_everywhere(
        &matrix,
        &["--output-limit", "1"],
        "import sys\nsys.stdout.write('x' * (1 << 20))\nsys.stdout.flush()\nprint('more')\n",
        b"",
        |name, out| {
            assert_status(name, out, 0);
            assert_eq!(out.stdout.len(), 1 << 20, "{name}");
            assert!(text(&out.stderr).contains(notice), "{name}");
        },
    );
    // A limit of zero says so instead of discarding silently.
    run_everywhere(
        &matrix,
        &["--output-limit", "0"],
        "print('hi')\n",
        b"",
        |name, out| {
            assert_status(name, out, 0);
            assert!(out.stdout.is_empty(), "{name}");
            assert!(
                text(&out.stderr).contains("output limit of 0 bytes reached"),
                "{name}: {}",
                text(&out.stderr)
            );
        },
    );
    // One write larger than the limit: the limit's worth, then the notice.
    run_everywhere(
        &matrix,
        &[],
        "import sys\nsys.stdout.write('y' * (130 << 20))\n",
        b"",
        |name, out| {
            assert_status(name, out, 0);
            assert_eq!(out.stdout.len(), 64 << 20, "{name}");
            assert!(
                text(&out.stderr).contains("output limit of 67108864 bytes reached"),
                "{name}"
            );
        },
    );
}

#[test]
fn duration_flags_out_of_range_are_usage_errors() {
    for flag in ["1e20", "inf", "nan", "-1"] {
        let out = pushy("eval", &[], &[&format!("--timeout={flag}"), "1"], b"");
        assert_eq!(out.status.code(), Some(2), "--timeout {flag}");
        assert!(text(&out.stderr).contains("--timeout"), "{flag}");
    }
    let out = Command::new(env!("CARGO_BIN_EXE_pushy"))
        .args(["serve", "--no-auth", "--idle-timeout", "1e300"])
        .output()
        .unwrap();
    no_panic(&out);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn closed_or_full_output_never_panics() {
    let matrix = Matrix::new();
    for (name, target) in matrix.targets() {
        let target = target.join(" ");
        // stdout closed after one byte, then a lot more output.
        let out = Command::new("sh")
            .arg("-c")
            .arg(format!(
                "'{}' eval {target} \"print('x' * 100000) or 'y' * 100000\" | head -c1 >/dev/null",
                env!("CARGO_BIN_EXE_pushy")
            ))
            .stderr(Stdio::piped())
            .output()
            .unwrap();
        no_panic(&out);
        for device in ["stdout", "stderr"] {
            let full = std::fs::OpenOptions::new()
                .write(true)
                .open("/dev/full")
                .unwrap();
            let mut command = Command::new(env!("CARGO_BIN_EXE_pushy"));
            command
                .arg("eval")
                .args(target.split(' '))
                .arg("print('hello') or 1/0");
            let out = if device == "stdout" {
                command
                    .stdout(full)
                    .stderr(Stdio::piped())
                    .output()
                    .unwrap()
            } else {
                command
                    .stderr(full)
                    .stdout(Stdio::piped())
                    .output()
                    .unwrap()
            };
            assert_eq!(out.status.code(), Some(1), "{name} {device}");
            no_panic(&out);
        }
    }
}

#[test]
fn a_memory_limit_too_small_to_start_says_the_minimum() {
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, "test-token-0123456789abcdef\n").unwrap();
    // The daemon refuses such a limit when it starts.
    let out = Command::new(env!("CARGO_BIN_EXE_pushy"))
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--memory",
            "16",
            "--token-file",
        ])
        .arg(&token)
        .output()
        .unwrap();
    no_panic(&out);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("needs at least"),
        "{}",
        text(&out.stderr)
    );
    let matrix = Matrix::new();
    for (name, target) in matrix.targets() {
        let out = pushy("eval", &target, &["--memory", "16", "1"], b"");
        assert_eq!(out.status.code(), Some(1), "{name}");
        let stderr = text(&out.stderr);
        assert!(
            stderr.contains("too small to start the sandbox (it needs at least"),
            "{name}: {stderr}"
        );
    }
}

#[test]
fn the_example_prints_and_exits_zero() {
    let hello = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/hello.py");
    let matrix = Matrix::new();
    for (name, target) in matrix.targets() {
        let out = pushy("run", &target, &[hello, "--flag", "x"], b"");
        assert_status(name, &out, 0);
        let stdout = text(&out.stdout);
        assert!(
            stdout.contains("Hello from sandboxed Python 3.14"),
            "{name}: {stdout}"
        );
        assert!(stdout.contains("'--flag', 'x'"), "{name}: {stdout}");
        assert!(
            stdout.contains(r#"{"squares": [0, 1, 4, 9, 16]}"#),
            "{name}: {stdout}"
        );
    }
}

#[test]
fn system_exit_sets_the_status() {
    let matrix = Matrix::new();
    run_everywhere(
        &matrix,
        &[],
        "import sys\nprint('bye')\nsys.exit(7)\n",
        b"",
        |name, out| {
            assert_status(name, out, 7);
            assert_eq!(text(&out.stdout), "bye\n", "{name}");
        },
    );
    run_everywhere(
        &matrix,
        &[],
        "raise SystemExit('fatal: message')\n",
        b"",
        |name, out| {
            assert_status(name, out, 1);
            assert!(text(&out.stderr).contains("fatal: message"), "{name}");
        },
    );
}

#[test]
fn an_uncaught_exception_exits_one_with_the_traceback() {
    let matrix = Matrix::new();
    run_everywhere(
        &matrix,
        &[],
        "def inner():\n    return 1 / 0\n\ninner()\n",
        b"",
        |name, out| {
            assert_status(name, out, 1);
            let stderr = text(&out.stderr);
            assert!(
                stderr.contains("Traceback (most recent call last)"),
                "{name}: {stderr}"
            );
            assert!(stderr.contains("return 1 / 0"), "{name}: {stderr}");
            assert!(
                stderr.contains("ZeroDivisionError: division by zero"),
                "{name}: {stderr}"
            );
        },
    );
}

#[test]
fn the_time_limit_exits_three_naming_the_limit() {
    let matrix = Matrix::new();
    run_everywhere(
        &matrix,
        &["--timeout", "0.5"],
        "print('start', flush=True)\nwhile True:\n    pass\n",
        b"",
        |name, out| {
            assert_status(name, out, 3);
            assert_eq!(text(&out.stdout), "start\n", "{name}");
            assert!(
                text(&out.stderr).contains("time limit of 0.500 s exceeded"),
                "{name}"
            );
        },
    );
}

#[test]
fn the_memory_limit_exits_three_naming_the_limit() {
    let matrix = Matrix::new();
    let source = "data = bytearray(300 * 1024 * 1024)\n";
    run_everywhere(&matrix, &["--memory", "64"], source, b"", |name, out| {
        assert_status(name, out, 3);
        assert!(text(&out.stderr).contains("memory limit"), "{name}");
    });
    // The same script fits a larger limit.
    run_everywhere(&matrix, &["--memory", "512"], source, b"", |name, out| {
        assert_status(name, out, 0);
    });
}

#[test]
fn eval_prints_the_repr() {
    let matrix = Matrix::new();
    for (name, target) in matrix.targets() {
        let out = pushy("eval", &target, &["[n * n for n in range(4)]"], b"");
        assert_status(name, &out, 0);
        assert_eq!(text(&out.stdout), "[0, 1, 4, 9]\n", "{name}");
        let out = pushy("eval", &target, &["'a' + 'b'"], b"");
        assert_eq!(text(&out.stdout), "'ab'\n", "{name}");
        let out = pushy("eval", &target, &["1/0"], b"");
        assert_status(name, &out, 1);
    }
}

#[test]
fn files_left_open_keep_what_was_written() {
    let dir = tempfile::tempdir().unwrap();
    let mount = format!("{}:/m", dir.path().display());
    let matrix = Matrix::with_daemon(&["--dir", &mount]);
    let file = script(
        b"f = open('/m/a.txt', 'w')\nf.write('A')\ng = open('/m/b.bin', 'wb')\ng.write(b'B')\nraise SystemExit(0)\n",
    );
    for (name, target) in matrix.targets() {
        let mut args = vec![];
        if name != "daemon" {
            args.extend(["--dir", &mount]);
        }
        args.push(file.path().to_str().unwrap());
        let out = pushy("run", &target, &args, b"");
        assert_status(name, &out, 0);
        assert_eq!(
            std::fs::read(dir.path().join("a.txt")).unwrap(),
            b"A",
            "{name}"
        );
        assert_eq!(
            std::fs::read(dir.path().join("b.bin")).unwrap(),
            b"B",
            "{name}"
        );
        std::fs::remove_file(dir.path().join("a.txt")).unwrap();
        std::fs::remove_file(dir.path().join("b.bin")).unwrap();
    }
}

#[test]
fn output_that_cannot_be_written_fails_the_run() {
    let matrix = Matrix::new();
    let file = script(b"print('x' * 100)\n");
    let endless = script(b"while True:\n    print('y' * 1000)\n");
    for (name, target) in matrix.targets() {
        let full = std::fs::OpenOptions::new()
            .write(true)
            .open("/dev/full")
            .unwrap();
        let out = Command::new(env!("CARGO_BIN_EXE_pushy"))
            .arg("run")
            .args(&target)
            .arg(file.path())
            .stdout(full)
            .stderr(Stdio::piped())
            .output()
            .unwrap();
        no_panic(&out);
        assert_eq!(out.status.code(), Some(1), "{name}");
        assert!(
            text(&out.stderr).contains("cannot write the session's output"),
            "{name}"
        );
        // A closed pipe stops an endless printer at once, not at its time limit.
        let started = Instant::now();
        let out = Command::new("sh")
            .arg("-c")
            .arg(format!(
                "'{}' run --timeout 60 {} '{}' | head -c1 >/dev/null",
                env!("CARGO_BIN_EXE_pushy"),
                target.join(" "),
                endless.path().display()
            ))
            .stderr(Stdio::piped())
            .output()
            .unwrap();
        no_panic(&out);
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "{name}: {:?}",
            started.elapsed()
        );
    }
}

#[test]
fn more_exit_statuses_match_python3() {
    let matrix = Matrix::new();
    for (source, status) in [
        ("import sys\nsys.exit(2 ** 70)\n", 255),
        ("raise KeyboardInterrupt\n", 130),
        ("import os\nos.abort()\n", 134),
        (
            "try:\n    bytearray(600 << 20)\nexcept MemoryError:\n    pass\nraise MemoryError('mine')\n",
            1,
        ),
        ("print('\\ud800')\n", 1),
    ] {
        run_everywhere(&matrix, &[], source, b"", |name, out| {
            assert_status(name, out, status);
        });
    }
}

#[test]
fn eval_prints_any_repr_within_the_output_limit() {
    let matrix = Matrix::new();
    for (name, target) in matrix.targets() {
        let out = pushy(
            "eval",
            &target,
            &["[type('X', (), {'__repr__': lambda s: '<\\ud800>'})()]"],
            b"",
        );
        assert_status(name, &out, 0);
        assert_eq!(text(&out.stdout), "[<\\ud800>]\n", "{name}");
        let out = pushy(
            "eval",
            &target,
            &["--output-limit", "1", "'x' * (3 << 20)"],
            b"",
        );
        assert_status(name, &out, 0);
        assert_eq!(out.stdout.len(), 1 << 20, "{name}");
        assert!(
            text(&out.stderr).contains("output limit of 1048576 bytes"),
            "{name}"
        );
        let out = pushy("eval", &target, &["-1"], b"");
        assert_eq!(text(&out.stdout), "-1\n", "{name}");
    }
}

#[test]
fn stdin_and_queues_behave_as_under_python3() {
    let matrix = Matrix::new();
    let source = "\
import queue, sys, time
print(repr(input()), sys.stdin.fileno(), sys.stdout.fileno(), sys.stderr.fileno())
started = time.monotonic()
try:
    queue.SimpleQueue().get(timeout=0.3)
except queue.Empty:
    print('empty', time.monotonic() - started >= 0.3)
";
    run_everywhere(&matrix, &[], source, b"a\r\n", |name, out| {
        assert_status(name, out, 0);
        assert_eq!(text(&out.stdout), "'a\\r' 0 1 2\nempty True\n", "{name}");
    });
}

#[test]
fn the_repl_exits_with_the_status_the_code_asks_for() {
    let matrix = Matrix::new();
    for (name, target) in matrix.targets() {
        for (input, status) in [
            (&b"exit(3)\n"[..], 3),
            (b"import os\nos._exit(7)\n", 7),
            (b"raise SystemExit('bye')\n", 1),
            (b"x = 20\nx * 2 + 2\n", 0),
        ] {
            let out = pushy("repl", &target, &[], input);
            assert_status(name, &out, status);
            if status == 0 {
                assert_eq!(text(&out.stdout), "42\n", "{name}");
            }
        }
    }
}

#[test]
fn a_scripts_excepthook_and_closed_stdout_act_as_under_python3() {
    let matrix = Matrix::new();
    let hooked = "\
import sys
def hook(kind, value, tb):
    print('hooked', kind.__name__, value)
sys.excepthook = hook
1 / 0
";
    run_everywhere(&matrix, &[], hooked, b"", |name, out| {
        assert_status(name, out, 1);
        assert_eq!(
            text(&out.stdout),
            "hooked ZeroDivisionError division by zero\n",
            "{name}"
        );
        assert!(!text(&out.stderr).contains("Traceback"), "{name}");
    });
    run_everywhere(
        &matrix,
        &[],
        "import sys\nsys.stdout.close()\nprint('x')\n",
        b"",
        |name, out| {
            assert_status(name, out, 1);
            assert!(out.stdout.is_empty(), "{name}");
            assert!(
                text(&out.stderr).contains("ValueError: I/O operation on closed file"),
                "{name}"
            );
        },
    );
}

#[test]
fn tracebacks_show_the_users_frames_only() {
    let matrix = Matrix::new();
    let source = "\
import sys
def f():
    print('\\ud800')
try:
    f()
except Exception as error:
    raise RuntimeError('wrapped') from error
";
    run_everywhere(&matrix, &[], source, b"", |name, out| {
        assert_status(name, out, 1);
        let stderr = text(&out.stderr);
        assert!(stderr.contains("line 3, in f"), "{name}: {stderr}");
        assert!(stderr.contains("RuntimeError: wrapped"), "{name}: {stderr}");
        assert!(!stderr.contains("pushy_guest"), "{name}: {stderr}");
        assert!(!stderr.contains("wit_world"), "{name}: {stderr}");
    });
}
