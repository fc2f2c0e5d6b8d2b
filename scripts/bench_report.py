"""Prints criterion medians as a Markdown table, with the ratios the targets name."""

import json
import os
import platform
import sys
from datetime import date


def medians(root):
    found = {}
    for group in sorted(os.listdir(root)):
        group_dir = os.path.join(root, group)
        if not os.path.isdir(group_dir) or group == "report":
            continue
        for bench in sorted(os.listdir(group_dir)):
            path = os.path.join(group_dir, bench, "new", "estimates.json")
            bench_json = os.path.join(group_dir, bench, "new", "benchmark.json")
            if not os.path.exists(path):
                continue
            with open(path) as handle:
                median = json.load(handle)["median"]["point_estimate"]
            name = bench
            if os.path.exists(bench_json):
                with open(bench_json) as handle:
                    name = json.load(handle).get("function_id") or bench
            found[(group, name)] = median
    return found


def fmt(ns):
    if ns >= 1e6:
        return f"{ns / 1e6:.2f} ms"
    if ns >= 1e3:
        return f"{ns / 1e3:.1f} µs"
    return f"{ns:.0f} ns"


def main():
    root = sys.argv[1] if len(sys.argv) > 1 else "target/criterion"
    data = medians(root)
    cpu = "unknown CPU"
    try:
        with open("/proc/cpuinfo") as handle:
            cpu = next(l.split(":", 1)[1].strip() for l in handle if l.startswith("model name"))
    except (OSError, StopIteration):
        pass
    print(f"Measured {date.today()} on {platform.node()} ({os.cpu_count()} vCPU, {cpu}).\n")
    print("| group | benchmark | median |")
    print("|---|---|---|")
    for (group, name), value in data.items():
        print(f"| {group} | {name} | {fmt(value)} |")

    def get(group, prefix):
        return next((v for (g, n), v in data.items() if g == group and n.startswith(prefix)), None)

    print("\n| target | measured | ratio |")
    print("|---|---|---|")
    fresh = get("fresh_session", "pushy: new session to first result")
    for label in ("python3 on PATH", "/usr/bin/python3"):
        base = get("fresh_session", f"{label} -c pass")
        if fresh and base:
            print(f"| fresh session ≤ 1/20 of `{label} -c pass` | {fmt(fresh)} vs {fmt(base)} | 1/{base / fresh:.1f} |")
        run = get("process", "pushy run")
        native = get("process", f"{label} examples/hello.py")
        if run and native:
            print(f"| `pushy run hello.py` ≤ ½ of `{label} hello.py` | {fmt(run)} vs {fmt(native)} | {run / native:.2f} |")
    for label, raw_name in (("local", "pipe ping-pong"), ("daemon", "TCP ping-pong")):
        raw = get("raw", raw_name)
        call = get("transport", f"{label}: method call")
        if raw and call:
            print(f"| method call over `{label}:` above the raw {raw_name} | {fmt(call)} − {fmt(raw)} | +{fmt(call - raw)} |")
    ping = get("round_trip", "ping")
    method = get("round_trip", "method call")
    if ping and method:
        print(f"| method call on a handle ≤ 3× a no-op call | {fmt(method)} vs {fmt(ping)} | {method / ping:.2f}× |")


if __name__ == "__main__":
    main()
