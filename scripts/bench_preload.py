"""Preloaded snapshots as a user meets them, side by side in one run.

  python3 scripts/bench_preload.py PUSHY VENV

- the snapshot's first build: `pushy run --venv VENV --preload pytest` with
  an empty cache directory (twice, each from empty);
- a whole `pushy run` of a script that imports pytest, with and without
  `--preload pytest`, alternating, ROUNDS times each: medians and ratio;
- memory of 100 live sessions of a daemon (`pushy serve`), with and
  without pytest preloaded: the daemon's PSS and RSS with all 100 sessions
  alive, each having imported pytest.

Prints Markdown; BENCH_ROUNDS (default 15) sets the alternating rounds.
"""

import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time

PUSHY, VENV = sys.argv[1], sys.argv[2]
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "15"))
SCRIPT = "import pytest\nassert pytest.main\n"


def run(args, cache, **kwargs):
    env = dict(os.environ, PUSHY_CACHE_DIR=cache)
    env.pop("VIRTUAL_ENV", None)
    started = time.perf_counter()
    subprocess.run([PUSHY, "run", *args], env=env, check=True,
                   stdout=subprocess.DEVNULL, **kwargs)
    return time.perf_counter() - started


def first_builds(script, trivial):
    times = []
    for _ in range(2):
        cache = tempfile.mkdtemp(prefix="pushy-bench-cache-")
        try:
            # The plain component is compiled into the empty cache first, so
            # the timed run measures the snapshot alone.
            run([trivial], cache)
            times.append(run(["--venv", VENV, "--preload", "pytest", script], cache))
        finally:
            shutil.rmtree(cache)
    return times


def alternate(script, cache):
    plain, preloaded = [], []
    with_preload = ["--venv", VENV, "--preload", "pytest", script]
    run(with_preload, cache)  # built outside the measurement
    run(["--venv", VENV, script], cache)
    for _ in range(ROUNDS):
        plain.append(run(["--venv", VENV, script], cache))
        preloaded.append(run(with_preload, cache))
    return statistics.median(plain), statistics.median(preloaded)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def memory(flags, cache, imports="import pytest, sys", sessions=100):
    """(PSS MiB, RSS MiB) of a daemon holding `sessions` live sessions,
    each of which ran `imports`."""
    token = tempfile.NamedTemporaryFile("w", delete=False)
    token.write("bench-token-0123456789abcdef\n")
    token.close()
    os.chmod(token.name, 0o600)
    port = free_port()
    env = dict(os.environ, PUSHY_CACHE_DIR=cache)
    env.pop("VIRTUAL_ENV", None)
    daemon = subprocess.Popen(
        [PUSHY, "serve", "--listen", f"127.0.0.1:{port}", "--token-file", token.name,
         "--max-sessions", str(sessions + 5), *flags],
        env=env, stderr=subprocess.PIPE, text=True)
    for line in daemon.stderr:
        if "listening on" in line:
            break
    # Keep draining it: a full pipe would stall the daemon.
    import threading
    threading.Thread(target=lambda: [None for _ in daemon.stderr], daemon=True).start()
    hold = f"{imports}\nprint('up', flush=True)\nsys.stdin.readline()\n"
    clients = []
    try:
        script_path = tempfile.NamedTemporaryFile("w", suffix=".py", delete=False)
        script_path.write(hold)
        script_path.close()
        # One at a time: a hundred imports from source at once on two cores
        # would each run past the session's time limit.
        for _ in range(sessions):
            client = subprocess.Popen(
                [PUSHY, "run", "--target", f"daemon:127.0.0.1:{port}",
                 "--token-file", token.name, script_path.name],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
            clients.append(client)
            assert client.stdout.readline().strip() == "up"
        with open(f"/proc/{daemon.pid}/smaps_rollup") as handle:
            fields = dict(line.split(":", 1) for line in handle if ":" in line)
        kib = lambda name: int(fields[name].split()[0])
        return kib("Pss") / 1024, kib("Rss") / 1024
    finally:
        for client in clients:
            client.kill()
        daemon.terminate()
        daemon.wait()
        os.unlink(token.name)


def main():
    script = tempfile.NamedTemporaryFile("w", suffix=".py", delete=False)
    script.write(SCRIPT)
    script.close()
    trivial = tempfile.NamedTemporaryFile("w", suffix=".py", delete=False)
    trivial.write("pass\n")
    trivial.close()
    cache = tempfile.mkdtemp(prefix="pushy-bench-cache-")
    try:
        builds = first_builds(script.name, trivial.name)
        plain, preloaded = alternate(script.name, cache)
        venv_flags = ["--venv", VENV]
        mem_bare = memory([], cache, imports="import sys")
        mem_plain = memory(venv_flags, cache)
        mem_preloaded = memory([*venv_flags, "--preload", "pytest"], cache)
    finally:
        shutil.rmtree(cache)
        os.unlink(script.name)
        os.unlink(trivial.name)
    print(f"Measured {time.strftime('%Y-%m-%d')} on {os.uname().nodename} "
          f"({os.cpu_count()} CPUs), {ROUNDS} alternating rounds.\n")
    print("| what | figure |\n|---|---|")
    print(f"| snapshot first build (`--preload pytest`, empty cache), two builds "
          f"| {builds[0]:.1f} s, {builds[1]:.1f} s |")
    print(f"| `pushy run` of `import pytest`, from source (median) | {plain * 1000:.0f} ms |")
    print(f"| the same with `--preload pytest` (median) | {preloaded * 1000:.0f} ms |")
    print(f"| ratio preloaded / from source | {preloaded / plain:.3f} (target <= 0.25) |")
    print(f"| daemon with 100 live plain sessions (nothing imported): PSS / RSS "
          f"| {mem_bare[0]:.0f} MiB / {mem_bare[1]:.0f} MiB |")
    print(f"| daemon with 100 live sessions that imported pytest: PSS / RSS, from source "
          f"| {mem_plain[0]:.0f} MiB / {mem_plain[1]:.0f} MiB |")
    print(f"| the same, pytest preloaded | {mem_preloaded[0]:.0f} MiB / {mem_preloaded[1]:.0f} MiB |")


if __name__ == "__main__":
    main()
