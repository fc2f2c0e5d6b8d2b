"""pushy: Pushy's Python API on a sandboxed interpreter.

Connect to a Python interpreter and use it as if it were local — remote
modules, ``eval``/``execute``, local functions defined remotely, proxies that
act like the remote objects, callbacks into this process — where the
interpreter is CPython compiled to WASI running inside wasmtime: code you do
not trust gets no files (unless you mount them), no network, no environment,
and bounded memory, time and output.

    import pushy
    with pushy.connect("embedded:") as con:
        con.modules.os.getpid()
        con.eval("1 + 2")
        ns = {}
        con.execute("def abc():\\n    return 123", locals=ns)
        ns["abc"]()                          # 123, run in the sandbox

Local objects passed in are capabilities: a function becomes callable in the
sandbox, a dict, list or other object usable through its public surface only
(see ``pushy._local``). Remote exceptions of builtin classes are raised as
themselves; others as :class:`RemoteError`; limits and failures as
:class:`PushyError` subclasses (:mod:`pushy.errors`).
"""

from __future__ import annotations

from . import _core
from ._connection import Connection, Modules, connect, obtain, write_output
from ._local import WRAPPER_TYPES, localize, unwrap
from ._proxy import PROXY_CLASSES, CallableProxy, ModuleProxy, Proxy, is_proxy
from .errors import (
    AuthenticationFailed, BadArgument, ConnectError, ConnectionClosed, ConnectionRefused,
    ConnectTimeout, Interrupted, InvalidHandle, MemoryLimitExceeded, ProtocolError, PushyError,
    RemoteError, SandboxError, SandboxTrapped, SessionExited, SessionTerminated,
    TimeLimitExceeded, UnsupportedTarget, classes, remote_exception,
)

__all__ = [
    "connect", "obtain", "is_proxy", "Connection", "Modules", "Proxy", "CallableProxy",
    "ModuleProxy", "PushyError", "RemoteError", "TimeLimitExceeded", "MemoryLimitExceeded",
    "SessionTerminated", "SandboxTrapped", "SessionExited", "Interrupted", "ConnectionClosed",
    "ConnectError", "AuthenticationFailed", "ConnectionRefused", "ConnectTimeout",
    "InvalidHandle", "BadArgument", "ProtocolError", "SandboxError", "UnsupportedTarget",
]

_core.install(Proxy, CallableProxy, PROXY_CLASSES, localize, remote_exception, write_output, classes(),
              WRAPPER_TYPES, unwrap)
