"""How long the guest takes to turn 16 MiB of `bytes` into the text that
carries it out of the sandbox (see `bytes-text` in wit/agent.wit). Run it
inside the sandbox and beside it to compare:

    target/release/pushy run scripts/guest_bytes_text.py
    python3 scripts/guest_bytes_text.py
"""

import binascii
import time

ASCII = b"x" * (16 << 20)
BINARY = bytes(range(256)) * (1 << 16)


def median_ms(make, runs=7):
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        make()
        times.append(time.perf_counter() - started)
    times.sort()
    return times[len(times) // 2] * 1e3


latin1_text = BINARY.decode("latin-1")
for name, make in [
    ("ascii bytes, decode('ascii')", lambda: ASCII.decode("ascii")),
    ("ascii bytes, decode('latin-1')", lambda: ASCII.decode("latin-1")),
    ("binary bytes, decode('latin-1')", lambda: BINARY.decode("latin-1")),
    ("binary as latin-1 text, to UTF-8", lambda: latin1_text.encode("utf-8")),
    ("binary bytes, base64", lambda: binascii.b2a_base64(BINARY, newline=False)),
]:
    print(f"{name:36} {median_ms(make):8.2f} ms")
