"""The peers' side of `scripts/bench`: RPyC (classic) and execnet doing the
operations that `host/examples/peer_bench.rs` does for this project (which
also runs the raw baselines).

    python scripts/peers.py SYSTEM OPERATION  ->  one JSON line: samples in µs

SYSTEM: rpyc-pipes, rpyc-tcp, execnet-popen, execnet-socket, and this
project's Python package: pushy-python-local, pushy-python-embedded. A system
without the operation prints no samples. Loops are bounded in count and time; every process
started here is stopped here.
"""

import json
import os
import socket
import subprocess
import sys
import time

BUDGET_S = float(os.environ.get("BENCH_BUDGET_S", "3"))
# Calls per run of the per-call operations (method, getpid); scripts/bench
# splits each round into several shorter runs.
CALLS = int(os.environ.get("BENCH_CALLS", "0"))
BIN = os.path.dirname(sys.executable)


def calls(default):
    return CALLS or default


class Measured(float):
    """What a benchmark function returns when it times only part of its run (µs)."""


def timed(fn, count):
    """Times `fn` up to `count` times within the budget: its whole run, or
    the part it reports by returning `Measured`."""
    samples = []
    deadline = time.perf_counter() + BUDGET_S
    for _ in range(count):
        start = time.perf_counter()
        measured = fn()
        took = (time.perf_counter() - start) * 1e6
        samples.append(float(measured) if type(measured) is Measured else took)
        if time.perf_counter() > deadline:
            break
    return samples


def since(start):
    return Measured((time.perf_counter() - start) * 1e6)


PER_CALL_OPS = ("method", "getpid", "append10k")


def per_call_op(con, op):
    """The per-call operations, the same for every client with RPyC's
    classic surface (`eval`, `modules`): RPyC and `import pushy`."""
    if op == "method":
        # The bound method is the proxy fetched once: one round trip per call.
        get = con.eval("{'k': 1}").get
        assert get("k") == 1
        return timed(lambda: get("k"), calls(5000))
    if op == "getpid":
        assert isinstance(con.modules.os.getpid(), int)
        return timed(lambda: con.modules.os.getpid(), calls(3000))
    def appends():
        items = con.eval("[]")
        start = time.perf_counter()
        for i in range(10_000):
            items.append(i)
        took = since(start)
        assert len(items) == 10_000
        return took
    return timed(appends, 5)


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


TCP_SERVER = """
import socket, sys
from rpyc.core.service import SlaveService
from rpyc.utils.server import ThreadedServer

class NoDelayServer(ThreadedServer):
    def _accept_method(self, sock):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        super()._accept_method(sock)

NoDelayServer(SlaveService, hostname="127.0.0.1", port=int(sys.argv[1]),
              protocol_config={"allow_all_attrs": True, "allow_pickle": True}).start()
"""


def rpyc_connect(kind):
    import rpyc
    if kind == "pipes":
        return rpyc.classic.connect_subproc(os.path.join(BIN, "rpyc_classic.py")), None
    port = free_port()
    # rpyc_classic.py leaves Nagle on, which stalls every reply ~40 ms; the
    # comparison is with TCP_NODELAY on both ends.
    server = subprocess.Popen(
        [sys.executable, "-c", TCP_SERVER, str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 10
    while True:
        try:
            con = rpyc.classic.connect("127.0.0.1", port)
            break
        except OSError:
            if time.time() > deadline:
                server.kill()
                raise
            time.sleep(0.01)
    con._channel.stream.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return con, server


def rpyc_close(con, server):
    try:
        con.close()
    finally:
        if server is not None:
            server.kill()
            server.wait()


def rpyc_op(kind, op):
    if op == "setup":
        def once():
            start = time.perf_counter()
            con, server = rpyc_connect(kind)
            con.modules.os.getpid()
            took = since(start)
            rpyc_close(con, server)
            return took
        return timed(once, 20)
    con, server = rpyc_connect(kind)
    try:
        if op in PER_CALL_OPS:
            return per_call_op(con, op)
        if op == "bytes16m":
            echo = con.eval("lambda b: bytes(b)")
            payload = b"x" * (16 << 20)
            return timed(lambda: echo(payload), 5)
        if op == "create_drop10k":
            make = con.builtins.object

            def create_drop():
                for _ in range(10_000):
                    make()
                con.eval("1")
            return timed(create_drop, 3)
        if op == "drop10k_held":
            make = con.builtins.object

            def drop_held():
                held = [make() for _ in range(10_000)]
                start = time.perf_counter()
                del held
                con.eval("1")
                return since(start)
            return timed(drop_held, 3)
    finally:
        rpyc_close(con, server)
    return []


def execnet_socket_gateway():
    """execnet's own socket server (its SocketIO sets TCP_NODELAY on both
    ends) on a free loopback port, and a gateway to it."""
    import execnet
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "execnet.script.socketserver", f"127.0.0.1:{port}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 10
    while True:
        try:
            return execnet.makegateway(f"socket=127.0.0.1:{port}"), server
        except OSError:
            if time.time() > deadline or server.poll() is not None:
                server.kill()
                raise
            time.sleep(0.01)


def execnet_op(kind, op):
    import execnet
    if op == "setup":
        if kind != "popen":
            return []
        def once():
            start = time.perf_counter()
            gateway = execnet.makegateway("popen")
            gateway.remote_exec("import os; channel.send(os.getpid())").receive()
            took = since(start)
            gateway.exit()
            return took
        return timed(once, 20)
    if op not in ("bytes16m", "method"):
        return []
    if kind == "popen":
        gateway, server = execnet.makegateway("popen"), None
    else:
        gateway, server = execnet_socket_gateway()
    try:
        if op == "bytes16m":
            channel = gateway.remote_exec("while 1:\n    channel.send(channel.receive())")
            payload = b"x" * (16 << 20)

            def round_trip():
                channel.send(payload)
                channel.receive()
            return timed(round_trip, 5)
        if op == "method":
            channel = gateway.remote_exec("d = {'k': 1}\nwhile 1:\n    channel.send(d.get(channel.receive()))")

            def call():
                channel.send("k")
                channel.receive()
            return timed(call, calls(5000))
    finally:
        gateway.exit()
        if server is not None:
            server.kill()
            server.wait()
    return []


def pushy_python_op(target, op):
    """The same operations through this project's Python package (`import
    pushy`, installed into this venv by `scripts/bench python`), with RPyC's
    shapes: a bound method fetched once, then called; `modules.os.getpid()`
    from the connection each time (attribute walk and call)."""
    import pushy
    if op == "setup":
        def once():
            start = time.perf_counter()
            con = pushy.connect(target)
            con.modules.os.getpid()
            took = since(start)
            con.close()
            return took
        return timed(once, 20)
    con = pushy.connect(target)
    try:
        if op in PER_CALL_OPS:
            return per_call_op(con, op)
    finally:
        con.close()
    return []


def main():
    system, op = sys.argv[1], sys.argv[2]
    if system.startswith("pushy-python-"):
        samples = pushy_python_op(system[len("pushy-python-"):] + ":", op)
    elif system.startswith("rpyc-"):
        samples = rpyc_op(system[5:], op)
    elif system in ("execnet-popen", "execnet-socket"):
        samples = execnet_op(system[8:], op)
    else:
        raise SystemExit(f"unknown system {system}")
    print(json.dumps({"system": system, "op": op, "samples": samples}))


if __name__ == "__main__":
    main()
