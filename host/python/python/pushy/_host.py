"""The host ``local:`` starts: ``python -m pushy._host host --stdio [flags]``.

It serves one session over this process's stdin and stdout, as the
``pushy host --stdio`` command does, with the same flags for limits and what
the sandbox sees. The package brings its own host so that ``local:`` works
without the ``pushy`` binary installed, and always speaks this package's
protocol version.
"""

from __future__ import annotations

import argparse
import signal
import sys
from typing import List, Optional

from . import _core
from ._connection import _mount


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pushy._host", description=__doc__)
    parser.add_argument("command", choices=["host"])
    parser.add_argument("--stdio", action="store_true", required=True)
    parser.add_argument("--timeout", type=float)
    parser.add_argument("--memory", type=int)
    parser.add_argument("--output-limit", type=int)
    parser.add_argument("--scratch", type=int)
    parser.add_argument("--dir", action="append", default=[])
    parser.add_argument("--path", action="append", default=[])
    parser.add_argument("--preload", action="append", default=[])
    args = parser.parse_args(argv)
    # A Ctrl-C at a terminal reaches the whole process group: the parent
    # interrupts the running call through the connection, and this host must
    # not die of it first (with a traceback on the user's terminal).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    preload = [name for given in args.preload for name in given.split(",") if name]
    try:
        _core.serve_stdio(
            timeout=args.timeout, memory_mib=args.memory, output_limit_mib=args.output_limit,
            scratch_mib=args.scratch, path=args.path, preload=preload,
            mounts=[_mount(spec) for spec in args.dir])
    except ValueError as error:
        print(f"pushy host: {error}", file=sys.stderr)
        return 2
    except Exception as error:  # noqa: BLE001 - reported to the parent through stderr
        print(f"pushy host: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
