"""Runs the peer benchmarks of `scripts/bench`: this project (over `local:`
and `daemon:`), RPyC classic (pipes, TCP with TCP_NODELAY), execnet (popen,
and its socket server where it has the operation), and the raw baselines,
alternating, several rounds, unpinned and pinned to one CPU. Prints one table with p50, p99 and throughput, the ratios the
targets name, and writes it to BENCHMARKS.md between markers.

    python scripts/bench_peers.py PEER_BENCH_BINARY [--rounds N] [--modes unpinned,pinned]

Every benchmark process runs with a time limit in its own process group; a
process that overruns (RPyC over pipes deadlocks on `drop10k_held`) is
killed with its children and reported as such.
"""

import argparse
import json
import os
import platform
import re
import signal
import statistics
import subprocess
import sys
from datetime import datetime, timezone

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
PEERS = os.path.join(HERE, "peers.py")

OPS = [
    ("setup", "setup: spawn until the first remote call returns"),
    ("method", "method call on a held handle"),
    ("getpid", "`modules.os.getpid()` from nothing"),
    ("append10k", "10,000 `list.append(i)` through a handle"),
    ("bytes16m", "16 MiB `bytes` there and back"),
    ("create_drop10k", "create-and-drop 10,000 objects, table back at baseline"),
    ("drop10k_held", "drop 10,000 held handles at once"),
]
OURS = ["local", "daemon"]
PEER_SYSTEMS = ["rpyc-pipes", "rpyc-tcp", "execnet-popen", "execnet-socket"]
# execnet has no handles: the operations each execnet system has. Setup is
# popen's only (a socket gateway needs its server started first, by hand).
EXECNET_OPS = {
    "execnet-popen": {"setup", "method", "bytes16m"},
    "execnet-socket": {"method", "bytes16m"},
}
# This project's Python package (`import pushy`), with `--python`.
PYTHON_API = ["pushy-python-local", "pushy-python-embedded"]
PYTHON_API_OPS = {"setup", "method", "getpid", "append10k"}
RAW = ["raw-pipe", "raw-pipe-poll", "raw-tcp", "raw-tcp-poll"]
LABELS = {
    "local": "pushy local:",
    "daemon": "pushy daemon:",
    "pushy-python-local": "`import pushy`, local:",
    "pushy-python-embedded": "`import pushy`, embedded:",
    "rpyc-pipes": "RPyC pipes",
    "rpyc-tcp": "RPyC TCP+NODELAY",
    "execnet-popen": "execnet popen",
    "execnet-socket": "execnet socket (NODELAY)",
    "raw-pipe": "raw pipe (8 B ping-pong)",
    "raw-pipe-poll": "raw pipe, both ends polling ≤100 µs before blocking",
    "raw-tcp": "raw TCP (NODELAY)",
    "raw-tcp-poll": "raw TCP, both ends polling ≤100 µs before blocking",
}
# What each op moves, for throughput: (count, unit).
THROUGHPUT = {
    "method": (1, "calls/s"),
    "getpid": (1, "calls/s"),
    "append10k": (10_000, "calls/s"),
    "bytes16m": (32, "MiB/s"),
    "create_drop10k": (10_000, "objects/s"),
    "drop10k_held": (10_000, "releases/s"),
}
TIMEOUT_S = 30
# The per-call operations run as several shorter runs per round (calls per
# run), the systems alternating between them: this VM's speed changes by up
# to 2x from one fraction of a second to the next, and one long run per
# system per round would let a slow stretch land on one system only.
SPLIT = {"method": (5, 1000), "getpid": (5, 600)}


def run_one(command, pinned, calls=None):
    if pinned:
        command = ["taskset", "-c", "0"] + command
    env = dict(os.environ)
    if calls:
        env["BENCH_CALLS"] = str(calls)
    proc = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        start_new_session=True, env=env)
    try:
        out, err = proc.communicate(timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        return None, f"did not finish in {TIMEOUT_S} s (killed)"
    finally:
        # Whatever the benchmark left behind in its group goes too.
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    if proc.returncode != 0:
        last = (err.strip().splitlines() or ["?"])[-1]
        return None, f"failed (exit {proc.returncode}): {last[:200]}"
    for line in reversed(out.splitlines()):
        if line.startswith("{"):
            return json.loads(line)["samples"], None
    return None, "printed no samples"


def command_for(system, op, peer_bench, python):
    if system in OURS or system in RAW:
        return [peer_bench, system, op]
    return [python, PEERS, system, op]


def percentile(values, q):
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


def fmt_time(us):
    if us is None:
        return "—"
    if us >= 1000:
        return f"{us / 1000:.2f} ms"
    return f"{us:.1f} µs"


def fmt_rate(op, p50):
    if p50 is None or op not in THROUGHPUT:
        return ""
    count, unit = THROUGHPUT[op]
    rate = count / (p50 / 1e6)
    if unit == "MiB/s":
        return f"{rate:,.0f} MiB/s"
    return f"{rate / 1000:,.1f}k {unit}" if rate >= 1000 else f"{rate:,.0f} {unit}"


PYTHON_MODE = False


def systems_for(op):
    if PYTHON_MODE:
        # Python to Python: the package against RPyC classic over a
        # subprocess's pipes, with the Rust client over local: beside.
        systems = ["local", "rpyc-pipes"]
        if op in PYTHON_API_OPS:
            systems = PYTHON_API + systems
        return systems
    systems = [s for s in OURS + PEER_SYSTEMS if op in EXECNET_OPS.get(s, {op})]
    if op == "method":
        systems += RAW
    if op == "bytes16m":
        systems += ["raw-tcp"]
    return systems


def measure(args, python):
    results = {}  # (mode, op, system) -> {"samples": [...], "run_p50": [...], "errors": [...]}
    for mode in args.modes:
        for round_index in range(args.rounds):
            for op, _ in OPS:
                runs, calls = SPLIT.get(op, (1, None))
                for run_index in range(runs):
                    systems = systems_for(op)
                    # Alternate who goes first from run to run.
                    if (round_index * runs + run_index) % 2:
                        systems = list(reversed(systems))
                    for system in systems:
                        samples, error = run_one(
                            command_for(system, op, args.peer_bench, python),
                            mode == "pinned", calls)
                        entry = results.setdefault(
                            (mode, op, system), {"samples": [], "run_p50": [], "errors": []})
                        if error:
                            entry["errors"].append(error)
                        elif samples:
                            entry["samples"].extend(samples)
                            entry["run_p50"].append(statistics.median(samples))
                        part = f" {run_index + 1}/{runs}" if runs > 1 else ""
                        print(f"[{mode} round {round_index + 1}/{args.rounds}{part}] {op:15} "
                              f"{system:14} "
                              + (error or (f"p50 {fmt_time(statistics.median(samples))}"
                                           if samples else "n/a")),
                              file=sys.stderr, flush=True)
    return results


def summary(entry):
    if not entry or not entry["samples"]:
        return None, None
    # p50: median of the runs' medians; p99 over every sample.
    return statistics.median(entry["run_p50"]), percentile(entry["samples"], 0.99)


def versions(python):
    def out(cmd):
        try:
            return subprocess.run(cmd, capture_output=True, text=True, timeout=30).stdout.strip()
        except OSError:
            return "?"
    peers = out([python, "-c", "import rpyc, execnet, sys; print(rpyc.__version__, "
                 "execnet.__version__, sys.version.split()[0])"]).split()
    while len(peers) < 3:
        peers.append("?")
    model = "?"
    try:
        with open("/proc/cpuinfo") as handle:
            match = re.search(r"model name\s*:\s*(.*)", handle.read())
            model = match.group(1).strip() if match else "?"
    except OSError:
        pass
    mem = "?"
    try:
        with open("/proc/meminfo") as handle:
            kib = int(handle.readline().split()[1])
            mem = f"{kib / 1024 / 1024:.0f} GiB"
    except (OSError, ValueError, IndexError):
        pass
    return {
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": f"{platform.node()}: {os.cpu_count()} vCPU {model}, {mem}, "
                   f"Linux {platform.release()}",
        "rustc": out(["rustc", "--version"]),
        "commit": out(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"]),
        "rpyc": peers[0], "execnet": peers[1], "python": peers[2],
    }


def render(results, args, info):
    lines = []
    split = ", ".join(f"{op} {runs}×{calls:,} calls" for op, (runs, calls) in SPLIT.items())
    lines.append(f"Measured {info['date']} by `scripts/bench` ({args.rounds} rounds per mode, "
                 f"systems alternating; the per-call operations as several shorter runs per "
                 f"round: {split}) on {info['machine']}.")
    lines.append(f"This project at {info['commit']} ({info['rustc']}, wasmtime 46.0.3, CPython 3.14 "
                 f"in the sandbox); peers: rpyc {info['rpyc']}, execnet {info['execnet']} on "
                 f"CPython {info['python']}. p50: median of the runs' medians; p99: over every "
                 "sample; throughput from p50. Setup over `daemon:` connects to a running "
                 "`pushy serve` (nothing is spawned), RPyC TCP's includes starting its server.")
    lines.append("")
    for mode in args.modes:
        title = "Pinned: every process on CPU 0 (`taskset -c 0`; this project does not poll)" \
            if mode == "pinned" else \
            "Unpinned: the scheduler spreads the processes over the vCPUs"
        lines.append(f"### {title}")
        lines.append("")
        lines.append("| operation | system | p50 | p99 | throughput |")
        lines.append("|---|---|---|---|---|")
        for op, label in OPS:
            for system in systems_for(op):
                entry = results.get((mode, op, system))
                p50, p99 = summary(entry)
                if p50 is None:
                    if entry and entry["errors"]:
                        lines.append(f"| {label} | {LABELS[system]} | **{entry['errors'][0]}** | | |")
                    continue
                note = f" ({len(entry['errors'])} failed runs)" if entry["errors"] else ""
                lines.append(f"| {label} | {LABELS[system]} | {fmt_time(p50)}{note} | "
                             f"{fmt_time(p99)} | {fmt_rate(op, p50)} |")
        lines.append("")
        lines.extend(targets(results, mode))
        lines.append("")
    return "\n".join(lines)


def targets(results, mode):
    def p50(op, system):
        return summary(results.get((mode, op, system)))[0]

    rows = ["| target | measured | met? |", "|---|---|---|"]

    def row(name, text, ok):
        rows.append(f"| {name} | {text} | {'yes' if ok else '**no**'} |")

    if PYTHON_MODE:
        for op in ("method", "getpid"):
            name = f"`import pushy` over local: ≤ 0.25× RPyC pipes: {op}"
            mine, theirs = p50(op, "pushy-python-local"), p50(op, "rpyc-pipes")
            if None in (mine, theirs):
                row(name, "missing data", False)
                continue
            rust = p50(op, "local")
            text = f"{fmt_time(mine)} vs {fmt_time(theirs)}: {mine / theirs:.2f}×"
            if rust is not None:
                text += f" (the Rust client: {fmt_time(rust)}, {rust / theirs:.2f}×)"
            row(name, text, mine <= theirs / 4)
        return rows

    for ours, peer, raw in (("local", "rpyc-pipes", "raw-pipe"), ("daemon", "rpyc-tcp", "raw-tcp")):
        mine, theirs, base = p50("method", ours), p50("method", peer), p50("method", raw)
        # This project polls before it sleeps (with more than one CPU), RPyC
        # does not: its floor is the blocking ping-pong, ours the polling one
        # when that is lower. Both comparisons must hold.
        floor = p50("method", raw + "-poll")
        name = f"(2) {LABELS[ours]} adds ≤ ⅓ of what {LABELS[peer]} adds above {raw}"
        if None in (mine, theirs, base):
            row(name, "missing data", False)
            continue
        peer_added = theirs - base
        checks = [(raw, mine - base)]
        if floor is not None and floor < base:
            checks.append((raw + "-poll", mine - floor))
        texts, ok = [], True
        for label, added in checks:
            ratio = added / peer_added if peer_added > 0 else float("inf")
            ok = ok and ratio <= 1 / 3
            texts.append(f"above {label}: {added:+.1f} µs vs +{peer_added:.1f} µs = {ratio:.2f}×")
        row(name, "; ".join(texts), ok)
    for ours, peer in (("local", "rpyc-pipes"), ("daemon", "rpyc-tcp")):
        mine, theirs = p50("getpid", ours), p50("getpid", peer)
        if None in (mine, theirs):
            row(f"(3) getpid {LABELS[ours]} ≤ ½ {LABELS[peer]}", "missing data", False)
            continue
        row(f"(3) getpid {LABELS[ours]} ≤ ½ {LABELS[peer]}",
            f"{fmt_time(mine)} vs {fmt_time(theirs)}: {mine / theirs:.2f}×", mine <= theirs / 2)
    for ours in ["local"]:  # daemon: connects to a running server, spawns nothing
        mine, theirs = p50("setup", ours), p50("setup", "execnet-popen")
        if None in (mine, theirs):
            row(f"(1) setup {LABELS[ours]} ≤ ½ execnet popen", "missing data", False)
            continue
        row(f"(1) setup {LABELS[ours]} ≤ ½ execnet popen",
            f"{fmt_time(mine)} vs {fmt_time(theirs)}: {mine / theirs:.2f}×", mine <= theirs / 2)
    # Like with like: over pipes against execnet popen, over TCP against
    # execnet's socket gateway; the cross-transport ratio is shown as well.
    for ours, peer in (("local", "execnet-popen"), ("daemon", "execnet-socket")):
        name = f"(5) 16 MiB throughput {LABELS[ours]} ≥ 2× {LABELS[peer]}"
        mine, theirs = p50("bytes16m", ours), p50("bytes16m", peer)
        if None in (mine, theirs):
            row(name, "missing data", False)
            continue
        text = (f"{fmt_rate('bytes16m', mine)} vs {fmt_rate('bytes16m', theirs)}: "
                f"{theirs / mine:.2f}×")
        popen = p50("bytes16m", "execnet-popen")
        if peer != "execnet-popen" and popen is not None:
            text += f" (against execnet popen, over pipes: {popen / mine:.2f}×)"
        row(name, text, theirs / mine >= 2)
    for ours, peer in (("local", "rpyc-pipes"), ("daemon", "rpyc-tcp")):
        mine, theirs = p50("create_drop10k", ours), p50("create_drop10k", peer)
        if None in (mine, theirs):
            row(f"(6) create-and-drop {LABELS[ours]} ≥ 3× {LABELS[peer]}", "missing data", False)
            continue
        row(f"(6) create-and-drop rate {LABELS[ours]} ≥ 3× {LABELS[peer]}",
            f"{fmt_rate('create_drop10k', mine)} vs {fmt_rate('create_drop10k', theirs)}: "
            f"{theirs / mine:.2f}×", theirs / mine >= 3)
    entry = results.get((mode, "drop10k_held", "local"))
    done = entry is not None and entry["samples"] and not entry["errors"]
    row("(7) drop 10,000 held handles at once over pipes completes",
        f"{fmt_time(summary(entry)[0])}" if done else "did not complete", done)
    return rows


START = "<!-- peer-bench:start -->"
END = "<!-- peer-bench:end -->"
SECTION = "## Against the peers (issue 4)"


def write_benchmarks(text):
    global START, END, SECTION
    if PYTHON_MODE:
        START, END = "<!-- python-bench:start -->", "<!-- python-bench:end -->"
        SECTION = "## Python to Python: `import pushy` against RPyC (issue 15)"
    path = os.path.join(ROOT, "BENCHMARKS.md")
    with open(path) as handle:
        current = handle.read()
    block = f"{START}\n{text}\n{END}"
    if START in current and END in current:
        before, rest = current.split(START, 1)
        after = rest.split(END, 1)[1]
        updated = before + block + after
    else:
        updated = current.rstrip("\n") + f"\n\n{SECTION}\n\n" + block + "\n"
    with open(path, "w") as handle:
        handle.write(updated)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("peer_bench")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--modes", default="unpinned,pinned")
    parser.add_argument("--ops", default=None)
    parser.add_argument("--no-write", action="store_true")
    parser.add_argument("--python", action="store_true",
                        help="the Python package against RPyC (scripts/bench python)")
    args = parser.parse_args()
    global PYTHON_MODE
    PYTHON_MODE = args.python
    args.modes = [m for m in args.modes.split(",") if m]
    if args.ops:
        wanted = set(args.ops.split(","))
        OPS[:] = [(op, label) for op, label in OPS if op in wanted]
    python = sys.executable
    results = measure(args, python)
    text = render(results, args, versions(python))
    print(text)
    if not args.no_write:
        write_benchmarks(text)
        print("\nwritten to BENCHMARKS.md", file=sys.stderr)


if __name__ == "__main__":
    main()
