#!/usr/bin/env python3
"""Real projects' test suites: `pushy test --jobs 2` (a fresh sandbox per
file, real pytest inside) against `python -m pytest` (one process, no
isolation) and `pytest -n 2` (pytest-xdist), in the same virtualenv,
alternating, side by side in one run.

    bench_suites.py PUSHY WORKDIR [--rounds R] [--write FILE]

The projects' sdists come from PyPI (pinned below) into WORKDIR, with a
virtualenv holding pytest and pytest-xdist; nothing of them is committed.
Each round runs every command once per project; a figure is the median
wall time over rounds. With --write, the table replaces the part of FILE
between <!-- suites-bench:start --> and <!-- suites-bench:end -->.
"""

from __future__ import annotations

import argparse
import os
import pathlib
import platform
import re
import statistics
import subprocess
import sys
import tarfile
import time
from bench_section import replace_section
from typing import Dict, List, Tuple

PROJECTS = ["idna==3.10", "toolz==1.0.0", "more-itertools==10.5.0"]


def prepare(work: pathlib.Path) -> Tuple[pathlib.Path, Dict[str, pathlib.Path]]:
    work.mkdir(parents=True, exist_ok=True)
    venv = work / "venv"
    python = venv / "bin" / "python"
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check",
                        "pytest==9.2.0", "pytest-xdist==3.8.0"], check=True)
    roots = {}
    for spec in PROJECTS:
        name, version = spec.split("==")
        root = work / f"{name}-{version}"
        if not root.exists():
            subprocess.run([str(python), "-m", "pip", "download", "-q", "--disable-pip-version-check",
                            "--no-binary", ":all:", "--no-deps", spec, "-d", str(work)], check=True)
            archive = next(work.glob(f"{name.replace('-', '[-_]')}-{version}.tar.gz"))
            with tarfile.open(archive) as tar:
                tar.extractall(work)  # noqa: S202 - PyPI sdists we pinned
        roots[spec] = root
    return venv, roots


def counts(text: str) -> str:
    """`N passed, N failed, N skipped` from pytest's or pushy's last line."""
    found = {}
    for number, word in re.findall(r"(\d+) (passed|failed|skipped|errors?)\b", text):
        word = "error" if word.startswith("error") else word
        found[word] = found.get(word, 0) + int(number)
    return ", ".join(f"{found[w]} {w}" for w in ("passed", "failed", "error", "skipped") if found.get(w))


def timed(argv: List[str], cwd: pathlib.Path, venv: pathlib.Path) -> Tuple[float, str]:
    env = dict(os.environ, VIRTUAL_ENV=str(venv), PYTHONDONTWRITEBYTECODE="1")
    started = time.monotonic()
    out = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True)
    elapsed = time.monotonic() - started
    tail = [line for line in out.stdout.strip().splitlines() if line.strip()]
    return elapsed, counts(tail[-1] if tail else "")


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("pushy")
    parser.add_argument("work")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--write")
    args = parser.parse_args()
    pushy = str(pathlib.Path(args.pushy).resolve())
    venv, roots = prepare(pathlib.Path(args.work).resolve())
    python = str(venv / "bin" / "python")
    commands = {
        "python -m pytest": [python, "-m", "pytest", "-q", "-p", "no:cacheprovider"],
        "pytest -n 2 (xdist)": [python, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-n", "2"],
        "pushy test --jobs 2": [pushy, "test", "--jobs", "2"],
    }
    # The preloaded snapshot (pytest from this venv) is built once, untimed.
    for root in roots.values():
        timed(commands["pushy test --jobs 2"], root, venv)
    times: Dict[Tuple[str, str], List[float]] = {}
    seen: Dict[Tuple[str, str], str] = {}
    load_before = os.getloadavg()[0]
    for round_ in range(args.rounds):
        for spec, root in roots.items():
            order = list(commands.items())
            if round_ % 2:
                order.reverse()
            for name, argv in order:
                elapsed, result = timed(argv, root, venv)
                times.setdefault((spec, name), []).append(elapsed)
                seen[(spec, name)] = result
    load_after = os.getloadavg()[0]
    lines = [
        f"{time.strftime('%Y-%m-%d')}, {platform.machine()}, {os.cpu_count()} CPUs, "
        f"`scripts/bench suites` ({args.rounds} alternating rounds; load {load_before:.2f} → "
        f"{load_after:.2f}). Wall time of the whole command, median over rounds; counts as "
        "each tool reports them (pushy's failed include errors).",
        "",
        "| project | command | counts | wall (s) | ÷ python -m pytest |",
        "|---|---|---|---|---|",
    ]
    for spec in roots:
        base = statistics.median(times[(spec, "python -m pytest")])
        for name in commands:
            median = statistics.median(times[(spec, name)])
            lines.append(f"| {spec} | {name} | {seen[(spec, name)]} | {median:.2f} | "
                         f"{median / base:.2f}× |")
    table = "\n".join(lines)
    print(table)
    if args.write:
        replace_section(args.write, "suites-bench", table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
