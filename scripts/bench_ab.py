#!/usr/bin/env python3
"""Two builds side by side: the same peer_bench operations of this project
(`local:` and `daemon:`), run alternately by a BEFORE and an AFTER build of
`examples/peer_bench`, each finding its own `pushy` beside it (DIR/pushy and
DIR/examples/peer_bench, as in target/release). Prints p50s and ratios.

Usage: scripts/bench_ab.py BEFORE_DIR AFTER_DIR [--ops method,bytes16m]
       [--modes unpinned,pinned] [--rounds 3]
"""
import argparse
import os
import statistics
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_peers import SPLIT, fmt_time, run_one  # noqa: E402


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("before")
    parser.add_argument("after")
    parser.add_argument("--ops", default="method,bytes16m")
    parser.add_argument("--modes", default="unpinned,pinned")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--systems", default="local,daemon")
    args = parser.parse_args()
    os.environ.pop("PUSHY_HOST_PROGRAM", None)
    builds = {"before": args.before, "after": args.after}
    medians = {}  # (mode, op, system, build) -> [run medians]
    turn = 0
    for mode in args.modes.split(","):
        for round_index in range(args.rounds):
            for op in args.ops.split(","):
                runs, calls = SPLIT.get(op, (1, None))
                for run_index in range(runs):
                    for system in args.systems.split(","):
                        order = ["before", "after"] if turn % 2 == 0 else ["after", "before"]
                        turn += 1
                        for build in order:
                            command = [os.path.join(builds[build], "examples", "peer_bench"),
                                       system, op]
                            samples, error = run_one(command, mode == "pinned", calls)
                            if error:
                                print(f"{mode} {op} {system} {build}: {error}", file=sys.stderr)
                                continue
                            medians.setdefault((mode, op, system, build), []).append(
                                statistics.median(samples))
                print(f"[{mode} round {round_index + 1}/{args.rounds}] {op} done", file=sys.stderr)
    print("| mode | operation | target | before p50 | after p50 | after/before |")
    print("|---|---|---|---|---|---|")
    for mode in args.modes.split(","):
        for op in args.ops.split(","):
            for system in args.systems.split(","):
                before = medians.get((mode, op, system, "before"))
                after = medians.get((mode, op, system, "after"))
                if not before or not after:
                    continue
                b, a = statistics.median(before), statistics.median(after)
                print(f"| {mode} | {op} | {system}: | {fmt_time(b)} | {fmt_time(a)} | {a / b:.2f}× |")


if __name__ == "__main__":
    main()
