"""Runs inside the wasmtime sandbox: `cargo run --release -- run examples/hello.py`."""

import json
import sys

print("Hello from sandboxed Python", sys.version.split()[0], "on", sys.platform)
print("argv:", sys.argv)
print(json.dumps({"squares": [n * n for n in range(5)]}))
