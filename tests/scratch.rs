//! The session's private, size-bounded `/tmp` (and `/dev/null`, and the
//! working directory), run by the `pushy` binary over every target.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use common::matrix::{Matrix, assert_status, no_panic, run_everywhere, text};

/// Prints what happened to a write, one line per attempt.
const HELPERS: &str = "\
import os, errno
def attempt(label, action):
    try:
        action()
        print(label, 'ok')
    except OSError as e:
        names = {errno.ENOSPC: 'ENOSPC', errno.EIO: 'EIO', errno.EXDEV: 'EXDEV'}
        print(label, names.get(e.errno, e.errno))
def write(path, size):
    with open(path, 'wb') as f:
        f.write(b'x' * size)
";

fn run_lines(matrix: &Matrix, flags: &[&str], body: &str, check: impl Fn(&str, &[&str])) {
    let source = format!("{HELPERS}{body}");
    run_everywhere(matrix, flags, &source, b"", |name, out| {
        assert_status(name, out, 0);
        let stdout = text(&out.stdout);
        let lines: Vec<&str> = stdout.lines().collect();
        check(name, &lines);
    });
}

#[test]
fn writes_under_the_limit_succeed_and_past_it_fail_with_no_space() {
    let matrix = Matrix::new();
    let body = "\
write('/tmp/a', 1 << 20)
print('read back', os.path.getsize('/tmp/a'), open('/tmp/a', 'rb').read() == b'x' * (1 << 20))
attempt('past the limit', lambda: write('/tmp/b', 2 << 20))
print('size on disk at most the limit', sum(os.path.getsize('/tmp/' + n) for n in os.listdir('/tmp')) <= 2 << 20)
fd = os.open('/tmp/p', os.O_RDWR | os.O_CREAT)
attempt('pwrite past the limit', lambda: os.pwrite(fd, b'x' * (2 << 20), 0))
attempt('ftruncate past the limit', lambda: os.ftruncate(fd, 4 << 20))
os.close(fd)
print('after')
";
    run_lines(&matrix, &["--scratch", "2"], body, |name, lines| {
        assert_eq!(lines[0], "read back 1048576 True", "{name}");
        // The preview-1 adapter inside the guest reports every failed stream
        // write as EIO; the host refused it with ENOSPC (see SECURITY.md).
        assert!(
            ["past the limit ENOSPC", "past the limit EIO"].contains(&lines[1]),
            "{name}: {lines:?}"
        );
        assert_eq!(lines[2], "size on disk at most the limit True", "{name}");
        assert_eq!(lines[3], "pwrite past the limit ENOSPC", "{name}");
        assert_eq!(lines[4], "ftruncate past the limit ENOSPC", "{name}");
        assert_eq!(lines[5], "after", "{name}");
    });
}

#[test]
fn deleted_space_is_usable_again_and_sparse_writes_are_refused() {
    let matrix = Matrix::new();
    let body = "\
write('/tmp/a', 1536 << 10)
attempt('second', lambda: write('/tmp/b', 1 << 20))
os.remove('/tmp/a')
os.remove('/tmp/b')
attempt('after delete', lambda: write('/tmp/c', 1536 << 10))
fd = os.open('/tmp/sparse', os.O_RDWR | os.O_CREAT)
attempt('sparse', lambda: os.pwrite(fd, b'x', 1 << 40))
attempt('empty write far away', lambda: os.pwrite(fd, b'', 1 << 62))
attempt('sparse truncate', lambda: os.ftruncate(fd, 1 << 40))
print('size', os.fstat(fd).st_size)
";
    run_lines(&matrix, &["--scratch", "2"], body, |name, lines| {
        assert!(
            ["second ENOSPC", "second EIO"].contains(&lines[0]),
            "{name}: {lines:?}"
        );
        assert_eq!(lines[1], "after delete ok", "{name}");
        assert_eq!(lines[2], "sparse ENOSPC", "{name}");
        assert_eq!(lines[3], "empty write far away ok", "{name}");
        assert_eq!(lines[4], "sparse truncate ENOSPC", "{name}");
        assert_eq!(lines[5], "size 0", "{name}");
    });
}

#[test]
fn a_file_unlinked_while_open_holds_its_space_until_closed() {
    let matrix = Matrix::new();
    let body = "\
fd = os.open('/tmp/held', os.O_RDWR | os.O_CREAT)
os.write(fd, b'x' * (1536 << 10))
os.unlink('/tmp/held')
print('gone', os.listdir('/tmp'))
attempt('beside the unlinked file', lambda: write('/tmp/b', 1 << 20))
attempt('growing the unlinked file', lambda: os.pwrite(fd, b'x' * (1 << 20), 1536 << 10))
os.close(fd)
attempt('after close', lambda: write('/tmp/c', 1536 << 10))
";
    run_lines(&matrix, &["--scratch", "2"], body, |name, lines| {
        assert_eq!(lines[0], "gone []", "{name}");
        assert!(
            [
                "beside the unlinked file ENOSPC",
                "beside the unlinked file EIO"
            ]
            .contains(&lines[1]),
            "{name}: {lines:?}"
        );
        assert_eq!(lines[2], "growing the unlinked file ENOSPC", "{name}");
        assert_eq!(lines[3], "after close ok", "{name}");
    });
}

#[test]
fn many_empty_files_stop_at_the_limit() {
    let matrix = Matrix::new();
    let body = "\
n = 0
try:
    while n < 100000:
        open(f'/tmp/e{n}', 'w').close()
        n += 1
    print('made all')
except OSError as e:
    print('stopped', e.errno == errno.ENOSPC, 200 <= n <= 256)
attempt('mkdir', lambda: os.mkdir('/tmp/more'))
for i in range(n):
    os.remove(f'/tmp/e{i}')
attempt('mkdir after removing', lambda: os.mkdir('/tmp/more'))
";
    run_lines(&matrix, &["--scratch", "1"], body, |name, lines| {
        assert_eq!(
            lines,
            [
                "stopped True True",
                "mkdir ENOSPC",
                "mkdir after removing ok"
            ],
            "{name}"
        );
    });
}

#[test]
fn tempfile_devnull_and_the_working_directory_work() {
    let matrix = Matrix::new();
    let body = "\
import tempfile
print(os.getcwd())
os.chdir(os.getcwd())
os.chdir('/tmp')
open('relative.txt', 'w').write('rel')
print(open('/tmp/relative.txt').read())
print(tempfile.gettempdir())
fd, path = tempfile.mkstemp()
os.write(fd, b'mk')
os.close(fd)
print(path.startswith('/tmp/'), open(path).read())
with tempfile.TemporaryDirectory() as d:
    open(os.path.join(d, 'f'), 'w').write('x')
    print(os.listdir(d))
print(os.path.exists(d))
with tempfile.NamedTemporaryFile() as f:
    f.write(b'named')
    f.flush()
    print(open(f.name, 'rb').read())
with open(os.devnull, 'w') as f:
    print(f.write('x' * (8 << 20)))
print(repr(open(os.devnull).read()))
print(os.path.getsize(os.devnull))
";
    // A limit of 1 MiB: /dev/null's writes are not counted (nor kept).
    run_lines(&matrix, &["--scratch", "1"], body, |name, lines| {
        assert_eq!(
            lines,
            [
                "/tmp", "rel", "/tmp", "True mk", "['f']", "False", "b'named'", "8388608", "''",
                "0"
            ],
            "{name}"
        );
    });
}

#[test]
fn renames_and_links_across_the_boundary_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let rw = format!("{}:/rw", dir.path().display());
    let matrix = Matrix::with_daemon(&["--dir", &rw]);
    let body = "\
write('/rw/outside', 10)
write('/tmp/inside', 10)
attempt('rename in', lambda: os.rename('/rw/outside', '/tmp/moved'))
attempt('rename out', lambda: os.rename('/tmp/inside', '/rw/moved'))
attempt('link in', lambda: os.link('/rw/outside', '/tmp/linked'))
attempt('link devnull', lambda: os.link('/dev/null', '/tmp/null'))
attempt('rename inside', lambda: os.rename('/tmp/inside', '/tmp/renamed'))
attempt('link inside', lambda: os.link('/tmp/renamed', '/tmp/linked'))
os.remove('/rw/outside')
";
    let file = common::matrix::script(format!("{HELPERS}{body}").as_bytes());
    for (name, target) in matrix.targets() {
        let mut args = vec![];
        if name != "daemon" {
            args.extend(["--dir", &rw]);
        }
        args.push(file.path().to_str().unwrap());
        let out = common::matrix::pushy("run", &target, &args, b"");
        assert_status(name, &out, 0);
        let stdout = text(&out.stdout);
        let lines: Vec<&str> = stdout.lines().collect();
        assert_eq!(
            lines,
            [
                "rename in EXDEV",
                "rename out EXDEV",
                "link in EXDEV",
                "link devnull EXDEV",
                "rename inside ok",
                "link inside ok"
            ],
            "{name}"
        );
    }
}

#[test]
fn sessions_do_not_see_each_others_files() {
    let matrix = Matrix::new();
    let body = "\
print(sorted(os.listdir('/tmp')))
open('/tmp/mine', 'w').write('secret')
";
    // The daemon serves both runs: each session gets its own /tmp.
    for _ in 0..2 {
        run_lines(&matrix, &[], body, |name, lines| {
            assert_eq!(lines, ["[]"], "{name}");
        });
    }
}

#[test]
fn a_daemon_client_can_tighten_the_scratch_limit_but_not_loosen_it() {
    let matrix = Matrix::with_daemon(&["--scratch", "4"]);
    let daemon = &matrix.targets()[2].1;
    let body = "attempt('3 MiB', lambda: write('/tmp/a', 3 << 20))\n";
    let file = common::matrix::script(format!("{HELPERS}{body}").as_bytes());
    let path = file.path().to_str().unwrap();
    let run = |flags: &[&str]| {
        let mut args = flags.to_vec();
        args.push(path);
        let out = common::matrix::pushy("run", daemon, &args, b"");
        assert_status("daemon", &out, 0);
        text(&out.stdout)
    };
    assert_eq!(run(&[]), "3 MiB ok\n");
    assert_eq!(run(&["--scratch", "100"]), "3 MiB ok\n");
    let tightened = run(&["--scratch", "1"]);
    assert!(
        ["3 MiB ENOSPC\n", "3 MiB EIO\n"].contains(&tightened.as_str()),
        "{tightened}"
    );
    let loosened = common::matrix::script(
        format!("{HELPERS}attempt('5 MiB', lambda: write('/tmp/a', 5 << 20))\n").as_bytes(),
    );
    let out = common::matrix::pushy(
        "run",
        daemon,
        &["--scratch", "100", loosened.path().to_str().unwrap()],
        b"",
    );
    let loosened = text(&out.stdout);
    assert!(
        ["5 MiB ENOSPC\n", "5 MiB EIO\n"].contains(&loosened.as_str()),
        "{loosened}"
    );
}

/// Where this user's scratch directories are (as the sandbox picks it).
fn scratch_root() -> PathBuf {
    pushy::sandbox::scratch_root().expect("scratch root")
}

/// Directories under the scratch root holding a file called `marker`.
fn holding(root: &Path, marker: &str) -> Vec<PathBuf> {
    std::fs::read_dir(root)
        .unwrap()
        .flatten()
        .map(|entry| entry.path())
        .filter(|dir| dir.join("tmp").join(marker).exists())
        .collect()
}

#[test]
fn the_host_directory_is_gone_when_the_session_ends() {
    let root = scratch_root();
    for target in ["embedded:", "local:"] {
        let marker = format!(
            "marker-{}-{}",
            std::process::id(),
            target.trim_end_matches(':')
        );
        let source = format!(
            "open('/tmp/{marker}', 'w').write('x')\nprint('ready', flush=True)\ninput()\nprint('done')\n"
        );
        let file = common::matrix::script(source.as_bytes());
        let mut child = Command::new(env!("CARGO_BIN_EXE_pushy"))
            .args(["run", "--target", target])
            .arg(file.path())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        stdout.read_line(&mut line).unwrap();
        assert_eq!(line, "ready\n", "{target}");
        let live = holding(&root, &marker);
        assert_eq!(live.len(), 1, "{target}: the session's file is on the host");
        child.stdin.take().unwrap().write_all(b"go\n").unwrap();
        let mut rest = String::new();
        std::io::Read::read_to_string(&mut stdout, &mut rest).unwrap();
        let out = child.wait_with_output().unwrap();
        no_panic(&out);
        assert!(out.status.success(), "{target}: {}", text(&out.stderr));
        assert_eq!(rest, "done\n", "{target}");
        assert!(
            !live[0].exists(),
            "{target}: {} left behind when the run ended",
            live[0].display()
        );
    }
}

#[test]
fn a_dead_processs_directory_is_removed_by_the_next_session() {
    let root = scratch_root();
    // A pid that is not alive: beyond the kernel's largest.
    let stale = root.join("99999999-0");
    std::fs::create_dir_all(stale.join("tmp")).unwrap();
    let matrix = Matrix::new();
    let out = common::matrix::pushy("eval", &matrix.targets()[0].1, &["1"], b"");
    assert!(out.status.success());
    assert!(!stale.exists());
}

#[test]
fn a_daemon_removes_each_sessions_directory_when_it_ends() {
    // The daemon lives on, so no stale-directory sweep can be what removes it.
    let root = scratch_root();
    let matrix = Matrix::new();
    let daemon = &matrix.targets()[2].1;
    let marker = format!("marker-{}-daemon", std::process::id());
    let source =
        format!("open('/tmp/{marker}', 'w').write('x')\nprint('ready', flush=True)\ninput()\n");
    let file = common::matrix::script(source.as_bytes());
    let mut child = Command::new(env!("CARGO_BIN_EXE_pushy"))
        .arg("run")
        .args(daemon)
        .arg(file.path())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    assert_eq!(line, "ready\n");
    let live = holding(&root, &marker);
    assert_eq!(live.len(), 1);
    let daemon_pid = matrix.daemon.pid();
    assert!(
        live[0]
            .file_name()
            .unwrap()
            .to_str()
            .unwrap()
            .starts_with(&format!("{daemon_pid}-"))
    );
    child.stdin.take().unwrap().write_all(b"\n").unwrap();
    let out = child.wait_with_output().unwrap();
    no_panic(&out);
    assert!(out.status.success());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while live[0].exists() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert!(!live[0].exists(), "{} left behind", live[0].display());
}
