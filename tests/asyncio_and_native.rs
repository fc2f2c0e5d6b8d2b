//! asyncio inside the sandbox (an event loop without a self-pipe) and the
//! ImportError of a compiled extension built for the host, over every target.

mod common;

use std::time::{Duration, Instant};

use common::matrix::{Matrix, assert_status, pushy, run_everywhere, script, text};

#[test]
fn asyncio_runs_coroutines_timers_and_cancellation_on_every_target() {
    let matrix = Matrix::new();
    let source = "\
import asyncio, signal, time

async def double(n, delay):
    await asyncio.sleep(delay)
    return n * 2

async def main():
    loop = asyncio.get_running_loop()
    print(type(loop).__name__, isinstance(loop, asyncio.SelectorEventLoop))
    started = time.monotonic()
    print(await asyncio.gather(double(1, 0.05), double(2, 0.02), double(3, 0)))
    print('gather slept', time.monotonic() - started >= 0.05)
    try:
        await asyncio.wait_for(asyncio.sleep(10), timeout=0.05)
    except TimeoutError:
        print('wait_for timed out')
    task = asyncio.create_task(asyncio.sleep(10))
    await asyncio.sleep(0)
    task.cancel()
    try:
        await task
    except asyncio.CancelledError:
        print('cancelled', task.cancelled())
    try:
        async with asyncio.timeout(0.05):
            await asyncio.sleep(10)
    except TimeoutError:
        print('timeout() expired')
    future = loop.create_future()
    loop.call_later(0.02, future.set_result, 'call_later')
    print(await future)
    print(await loop.run_in_executor(None, sum, [1, 2, 3]))
    print(await asyncio.to_thread(str.upper, 'to_thread'))
    try:
        await loop.run_in_executor(None, int, 'x')
    except ValueError:
        print('executor raised ValueError')
    try:
        loop.add_signal_handler(signal.SIGINT, print)
    except NotImplementedError as e:
        print('NotImplementedError', 'signal' in str(e))
    print('took', time.monotonic() - started < 5)
    return 'done'

print(asyncio.run(main()))
with asyncio.Runner() as runner:
    print('Runner', type(runner.get_loop()).__name__, runner.run(double(5, 0)))
loop = asyncio.new_event_loop()
print('new_event_loop', type(loop).__name__, loop.run_until_complete(double(6, 0.01)))
loop.close()
policy = asyncio.events._get_event_loop_policy()
loop = policy.new_event_loop()
print('policy', type(loop).__name__)
loop.close()
";
    run_everywhere(&matrix, &[], source, b"", |name, out| {
        assert_status(name, out, 0);
        assert_eq!(
            text(&out.stdout),
            "\
WasiEventLoop True
[2, 4, 6]
gather slept True
wait_for timed out
cancelled True
timeout() expired
call_later
6
TO_THREAD
executor raised ValueError
NotImplementedError True
took True
done
Runner WasiEventLoop 10
new_event_loop WasiEventLoop 12
policy WasiEventLoop
",
            "{name}: {}",
            text(&out.stderr)
        );
    });
}

#[test]
fn isolated_asyncio_test_case_runs_async_tests_on_every_target() {
    let matrix = Matrix::new();
    let source = "\
import asyncio, sys, unittest

class Case(unittest.IsolatedAsyncioTestCase):
    async def asyncSetUp(self):
        self.value = await asyncio.sleep(0.01, result=41)

    async def test_passes(self):
        await asyncio.sleep(0.01)
        self.assertEqual(self.value + 1, 42)

    async def test_fails(self):
        self.assertEqual(self.value, 0)

suite = unittest.defaultTestLoader.loadTestsFromTestCase(Case)
result = unittest.TextTestRunner(stream=sys.stdout, verbosity=0).run(suite)
print('ran', result.testsRun, 'failures', len(result.failures), 'errors', len(result.errors))
print('AssertionError: 41 != 0' in result.failures[0][1])
";
    run_everywhere(&matrix, &[], source, b"", |name, out| {
        assert_status(name, out, 0);
        let stdout = text(&out.stdout);
        assert!(
            stdout.ends_with("ran 2 failures 1 errors 0\nTrue\n"),
            "{name}: {stdout}\n{}",
            text(&out.stderr)
        );
    });
}

#[test]
fn an_asyncio_wait_ends_at_the_time_limit_on_every_target() {
    let matrix = Matrix::new();
    for blocking in [
        "asyncio.run(asyncio.sleep(3600))",
        // Nothing to wait for at all: an empty poll, which would trap.
        "asyncio.run(asyncio.Event().wait())",
        "selectors.DefaultSelector().select()",
    ] {
        let file = script(
            format!("import asyncio, selectors\nprint('start', flush=True)\n{blocking}\n")
                .as_bytes(),
        );
        for (name, target) in matrix.targets() {
            let started = Instant::now();
            let out = pushy(
                "run",
                &target,
                &["--timeout", "1", file.path().to_str().unwrap()],
                b"",
            );
            let took = started.elapsed();
            assert_status(name, &out, 3);
            assert_eq!(text(&out.stdout), "start\n", "{name}: {blocking}");
            assert!(
                text(&out.stderr).contains("time limit of 1.000 s exceeded"),
                "{name}: {blocking}: {}",
                text(&out.stderr)
            );
            assert!(
                took >= Duration::from_secs(1) && took < Duration::from_secs(5),
                "{name}: {blocking}: took {took:?}"
            );
        }
    }
}

/// A site directory with host-native extensions beside pure-Python modules.
fn site_with_native_extensions() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let mut elf = b"\x7fELF\x02\x01\x01\x00".to_vec();
    elf.resize(4096, 0);
    let write = |path: &str, bytes: &[u8]| {
        let path = dir.path().join(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, bytes).unwrap();
    };
    write("fast.cpython-311-x86_64-linux-gnu.so", &elf);
    write("pkg/__init__.py", b"");
    write("pkg/fast.abi3.so", &elf);
    write("pkg/pure.py", b"VALUE = 'pure in pkg'\n");
    write("plain.so", &elf);
    write("win.cp311-win_amd64.pyd", b"MZ\x90\x00");
    write("puremod.py", b"VALUE = 'pure'\n");
    write("not_a_dir.txt", b"text\n");
    dir
}

#[test]
fn a_host_native_extension_is_a_clear_import_error_on_every_target() {
    let site = site_with_native_extensions();
    let mount = format!("{}:/site:ro", site.path().display());
    // A daemon does not take the client's mounts: it has its own, the same.
    let matrix = Matrix::with_daemon(&["--dir", &mount]);
    let source = "\
import importlib, sys
# Entries that are no directory are passed over quietly.
sys.path[:0] = ['/site', '/site/not_a_dir.txt', '/nowhere', b'/site']
for name, file in [('fast', '/site/fast.cpython-311-x86_64-linux-gnu.so'),
                   ('pkg.fast', '/site/pkg/fast.abi3.so'),
                   ('plain', '/site/plain.so'),
                   ('win', '/site/win.cp311-win_amd64.pyd')]:
    try:
        importlib.import_module(name)
    except ImportError as e:
        message = str(e)
        print(name, type(e).__name__, e.name == name, e.path == file,
              repr(name) in message, file in message,
              'native extension built for the host' in message,
              'only pure-Python packages work' in message,
              name in sys.modules)
    else:
        print(name, 'imported')
import puremod, pkg.pure
print(puremod.VALUE, '|', pkg.pure.VALUE)
try:
    import exists_nowhere
except ImportError as e:
    print(type(e).__name__, e.name, str(e))
try:
    import pkg.exists_nowhere
except ImportError as e:
    print(type(e).__name__, e.name, str(e))
";
    let file = script(source.as_bytes());
    for (name, target) in matrix.targets() {
        let mut args = vec![];
        if name != "daemon" {
            args.extend(["--dir", &mount]);
        }
        args.push(file.path().to_str().unwrap());
        let out = pushy("run", &target, &args, b"");
        assert_status(name, &out, 0);
        assert_eq!(
            text(&out.stdout),
            "\
fast ImportError True True True True True True False
pkg.fast ImportError True True True True True True False
plain ImportError True True True True True True False
win ImportError True True True True True True False
pure | pure in pkg
ModuleNotFoundError exists_nowhere No module named 'exists_nowhere'
ModuleNotFoundError pkg.exists_nowhere No module named 'pkg.exists_nowhere'
",
            "{name}: {}",
            text(&out.stderr)
        );
    }
}

#[test]
fn an_uncaught_native_import_error_shows_only_its_own_message() {
    let site = site_with_native_extensions();
    let mount = format!("{}:/site:ro", site.path().display());
    let file = script(b"import sys\nsys.path.insert(0, '/site')\nimport pkg.fast\n");
    let target = vec!["--target".to_string(), "embedded:".to_string()];
    let out = pushy(
        "run",
        &target,
        &["--dir", &mount, file.path().to_str().unwrap()],
        b"",
    );
    assert_status("embedded", &out, 1);
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains(
            "ImportError: cannot import 'pkg.fast' from '/site/pkg/fast.abi3.so': it is a native \
             extension built for the host"
        ),
        "{stderr}"
    );
    // dlopen's reason would only head the traceback with noise.
    assert!(!stderr.contains("library not found"), "{stderr}");
}
