#!/usr/bin/env python3
"""Fresh sessions side by side, alternating in one run: ours from the
instance pool and allocated on demand, plain and with pytest preloaded, a
call on a live session; and, when its benchmark binary is given (built by
../shared/eryx-bench.md's recipe, outside this repository), eryx's fresh
sandbox and live execute.

    bench_fresh.py OURS VENV [--eryx BIN] [--rounds R] [--n N] [--write FILE]

OURS is target/release/examples/fresh_sessions, VENV a virtualenv with
pytest. Each round runs every case once (a process each, N timed
iterations after a warm-up); a case's figure is the median over rounds of
each round's p50. With --write, the table replaces the part of FILE between
<!-- fresh-bench:start --> and <!-- fresh-bench:end -->.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from bench_section import replace_section
from typing import Dict, List, Tuple



def cases(ours: str, venv: str, eryx: str | None, n: int) -> List[Tuple[str, List[str]]]:
    live_n = str(n * 5)
    found = [
        ("ours: fresh session, plain, pool", [ours, "fresh", str(n), "--alloc", "pool"]),
        ("ours: fresh session, plain, on demand", [ours, "fresh", str(n), "--alloc", "demand"]),
        ("ours: fresh session, pytest preloaded, pool",
         [ours, "fresh", str(n), "--alloc", "pool", "--venv", venv, "--preload", "pytest"]),
        ("ours: fresh session, pytest preloaded, on demand",
         [ours, "fresh", str(n), "--alloc", "demand", "--venv", venv, "--preload", "pytest"]),
        ("ours: live execute(\"x = 1\")", [ours, "live", live_n]),
    ]
    if eryx:
        found += [
            ("eryx: Sandbox::embedded().build() + execute(\"x = 1\")", [eryx, "fresh", str(n)]),
            ("eryx: live InProcessSession::execute(\"x = 1\")", [eryx, "live", live_n]),
        ]
    return found


def run(argv: List[str]) -> Dict[str, object]:
    env = dict(os.environ, RUST_LOG="error")
    out = subprocess.run(argv, check=True, capture_output=True, text=True, env=env).stdout
    lines = [line for line in out.splitlines() if line.startswith("{")]
    if not lines:
        raise RuntimeError(f"{argv[0]} printed no figures:\n{out}")
    return json.loads(lines[-1])


def load() -> float:
    return os.getloadavg()[0]


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("ours")
    parser.add_argument("venv")
    parser.add_argument("--eryx")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--n", type=int, default=30)
    parser.add_argument("--write")
    args = parser.parse_args()
    chosen = cases(args.ours, args.venv, args.eryx, args.n)
    # Builds the preloaded snapshot (and compiles the component) before timing.
    for _, argv in chosen:
        run(argv[:2] + ["1"] + argv[3:])
    p50s: Dict[str, List[float]] = {name: [] for name, _ in chosen}
    load_before = load()
    for round_ in range(args.rounds):
        order = chosen if round_ % 2 == 0 else list(reversed(chosen))
        for name, argv in order:
            p50s[name].append(float(run(argv)["p50_ms"]))
    load_after = load()
    median = {name: statistics.median(values) for name, values in p50s.items()}
    lines = [
        f"{time.strftime('%Y-%m-%d')}, {platform.machine()}, {os.cpu_count()} CPUs, "
        f"`scripts/bench fresh` ({args.rounds} alternating rounds of {args.n} iterations, "
        f"live: {args.n * 5}; load {load_before:.2f} → {load_after:.2f}). Median over rounds "
        "of each round's p50, ms; a fresh session is a new session to the result of "
        "`eval(\"1\")` and its close.",
        "",
        "| case | median p50 (ms) | rounds' p50 (ms) |",
        "|---|---|---|",
    ]
    for name, _ in chosen:
        rounds = ", ".join(f"{v:.3f}" for v in p50s[name])
        lines.append(f"| {name} | {median[name]:.3f} | {rounds} |")
    lines.append("")
    ratio = lambda a, b: median[a] / median[b]  # noqa: E731
    pool, demand = "ours: fresh session, plain, pool", "ours: fresh session, plain, on demand"
    ppool = "ours: fresh session, pytest preloaded, pool"
    pdemand = "ours: fresh session, pytest preloaded, on demand"
    lines.append(f"- pool / on demand: plain {ratio(pool, demand):.2f}×, "
                 f"pytest preloaded {ratio(ppool, pdemand):.2f}×")
    lines.append(f"- pytest preloaded / plain (pool): {ratio(ppool, pool):.2f}× (target ≤ 1.5×)")
    if args.eryx:
        efresh = "eryx: Sandbox::embedded().build() + execute(\"x = 1\")"
        elive = "eryx: live InProcessSession::execute(\"x = 1\")"
        lines.append(f"- **pytest preloaded (pool) / eryx fresh: {ratio(ppool, efresh):.3f}×** "
                     f"(target ≤ 0.2×); plain (pool) / eryx fresh: {ratio(pool, efresh):.3f}×")
        live = 'ours: live execute("x = 1")'
        lines.append(f"- live execute / eryx live execute: {ratio(live, elive):.4f}×")
    table = "\n".join(lines)
    print(table)
    if args.write:
        replace_section(args.write, "fresh-bench", table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
