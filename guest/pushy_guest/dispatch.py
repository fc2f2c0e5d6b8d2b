"""One handler per operation. Every exception becomes data.

A Python exception that escapes an export aborts the whole instance, so
`Session.dispatch` catches BaseException around every handler and returns
the error as an `ErrorInfo` (type, bases, message, traceback, handle).
"""

from __future__ import annotations

import ast
import builtins
import importlib
import importlib.util
import linecache
import marshal
import operator
import os
import sys
import traceback
import types
from collections import deque
from itertools import islice
from typing import Any, Callable

from wit_world.imports import host
from wit_world.imports.types import (
    BinaryOp, CompareOp, ErrorInfo, ErrorKind, HandleInfo, Op_Binary, Op_Call, Op_CallMethod, Op_CallPacked,
    Op_Compare, Op_Contains, Op_Define, Op_DelAttr, Op_DelItem, Op_Dir,
    Op_Eval, Op_Execute, Op_GetAttr, Op_GetItem, Op_Hash, Op_ImportModule,
    Op_Iter, Op_Len, Op_Next, Op_Obtain, Op_Ping, Op_Release, Op_Repr,
    Op_RunScript, Op_SetArgv, Op_SetAttr, Op_SetItem, Op_Shutdown, Op_Str, Op_TableSize,
    Op_Truth, Op_Unary, Reply_Error, Reply_Ok, UnaryOp,
)
from wit_world.imports.types import Node_Int

from . import threads
from .callbacks import CallbackProxies
from .streams import OutputBuffer, OutputStream, input_stream
from .table import InvalidHandle, ObjectTable, qualified_name, wit_text
from .values import _INT_MAX, _INT_MIN, _NONE, Decoder, Encoder

_OUR_DIR = os.path.dirname(__file__)
# Frames of these files are the agent's, not the user's.
_AGENT_DIRS = (_OUR_DIR + os.sep, os.path.dirname(host.__file__).rsplit(os.sep, 1)[0] + os.sep)
_loads = marshal.loads
_MAX_CACHED_SOURCES = 256
# An exception's message and traceback cross at most this long each (the
# host cuts them further to the call's output limit).
_MAX_ERROR_TEXT = 64 * 1024 * 1024

_BINARY = {
    BinaryOp.ADD: operator.add, BinaryOp.SUB: operator.sub,
    BinaryOp.MUL: operator.mul, BinaryOp.TRUEDIV: operator.truediv,
    BinaryOp.FLOORDIV: operator.floordiv, BinaryOp.MODULO: operator.mod,
    BinaryOp.POW: operator.pow, BinaryOp.LSHIFT: operator.lshift,
    BinaryOp.RSHIFT: operator.rshift, BinaryOp.BIT_AND: operator.and_,
    BinaryOp.BIT_OR: operator.or_, BinaryOp.BIT_XOR: operator.xor,
    BinaryOp.MATMUL: operator.matmul,
}
_COMPARE = {
    CompareOp.LT: operator.lt, CompareOp.LE: operator.le,
    CompareOp.EQ: operator.eq, CompareOp.NE: operator.ne,
    CompareOp.GT: operator.gt, CompareOp.GE: operator.ge,
}
_UNARY = {
    UnaryOp.NEG: operator.neg, UnaryOp.POS: operator.pos,
    UnaryOp.INVERT: operator.invert, UnaryOp.ABS: operator.abs,
}


# Prepared at import: when memory is exhausted we may not be able to build it later.
_FALLBACK = Reply_Error(ErrorInfo("builtins.MemoryError", ["builtins.Exception",
                        "builtins.BaseException", "builtins.object"],
                        "the guest failed while reporting an error", "", None,
                        ErrorKind.EXCEPTION))


class Encoded:
    """A reply value that a handler already encoded."""

    __slots__ = ("nodes",)

    def __init__(self, nodes: list) -> None:
        self.nodes = nodes


class Session:
    def __init__(self) -> None:
        self.table = ObjectTable()
        self.entries = self.table.entries
        self.callbacks = CallbackProxies(self)
        self.encoder = Encoder(self.table)
        self.decoder = Decoder(self.table, self.callbacks.proxy)
        self.output = OutputBuffer(host.emit_output)
        self.main = types.ModuleType("__main__")
        self.main.__dict__["__builtins__"] = builtins
        self._sources: deque[str] = deque()
        self._source_counter = 0
        self._code_cache: dict[tuple[str, str], Any] = {}
        self._seeded = False
        self.handlers: dict[type, Callable[[Any], Any]] = {
            Op_Ping: lambda op: None,
            Op_Eval: lambda op: eval(self._compile(op.value, "eval"), self.main.__dict__),
            Op_Execute: self._execute,
            Op_Define: self._define,
            Op_ImportModule: lambda op: importlib.import_module(op.value),
            Op_GetAttr: lambda op: getattr(self.entries[op.value.target].obj, op.value.name),
            Op_SetAttr: self._set_attr,
            Op_DelAttr: lambda op: delattr(self.entries[op.value.target].obj, op.value.name),
            Op_Call: self._call,
            Op_CallMethod: self._call_method,
            Op_CallPacked: self._call_packed,
            Op_GetItem: lambda op: self.entries[op.value.target].obj[self.decoder.decode(op.value.key)],
            Op_SetItem: self._set_item,
            Op_DelItem: self._del_item,
            Op_Len: lambda op: len(self.entries[op.value].obj),
            Op_Contains: lambda op: self.decoder.decode(op.value.key) in self.entries[op.value.target].obj,
            Op_Iter: self._iter,
            Op_Next: self._next,
            Op_Repr: lambda op: repr(self.entries[op.value].obj),
            Op_Str: lambda op: str(self.entries[op.value].obj),
            Op_Truth: lambda op: bool(self.entries[op.value].obj),
            Op_Hash: lambda op: hash(self.entries[op.value].obj),
            Op_Binary: self._binary,
            Op_Compare: lambda op: _COMPARE[op.value.op](
                self.entries[op.value.target].obj, self.decoder.decode(op.value.other)),
            Op_Unary: lambda op: _UNARY[op.value.op](self.entries[op.value.target].obj),
            Op_Dir: lambda op: tuple(dir(self.entries[op.value].obj)),
            Op_Obtain: lambda op: Encoded(self.encoder.obtain(
                self.entries[op.value.target].obj, op.value.max_items)),
            Op_Release: self._release,
            Op_TableSize: lambda op: len(self.table),
            Op_SetArgv: self._set_argv,
            Op_RunScript: self._run_script,
            Op_Shutdown: lambda op: _shut_down(),
        }

    # -- the one entry point ------------------------------------------------

    def dispatch(self, op: Any) -> Any:
        # The component's export calls this directly (see agent.py): it
        # must never raise, and every frame here costs on every call.
        try:
            if not self._seeded:
                self._seed()
            try:
                result = self.handlers[type(op)](op)
                kind = type(result)
                if kind is Encoded:
                    reply = Reply_Ok(result.nodes)
                elif result is None:
                    reply = Reply_Ok([_NONE])
                elif kind is int and _INT_MIN <= result <= _INT_MAX:
                    reply = Reply_Ok([Node_Int(result)])
                else:
                    reply = Reply_Ok(self.encoder.encode(result))
            except BaseException as exc:  # noqa: BLE001 - an escaping exception aborts the instance
                reply = Reply_Error(self.error_info(exc))
            if self.output.chunks or self.callbacks.released:
                try:
                    self.output.flush()
                    self.callbacks.flush_releases()
                except BaseException:  # noqa: BLE001
                    pass
            return reply
        except BaseException:  # noqa: BLE001 - e.g. MemoryError while building the reply
            return _FALLBACK

    def error_info(self, exc: BaseException) -> ErrorInfo:
        kind = type(exc)
        try:
            message = str(exc)
        except BaseException:  # noqa: BLE001
            message = f"<unprintable {kind.__name__}>"
        try:
            text = _format_traceback(kind, exc)
        except BaseException:  # noqa: BLE001
            text = f"{kind.__name__}: {message}\n"
        try:
            handle = self.table.send(exc)
            info = HandleInfo(*handle)
        except BaseException:  # noqa: BLE001
            info = None
        return ErrorInfo(
            qualified_name(kind), [qualified_name(base) for base in kind.__mro__[1:]],
            wit_text(message[:_MAX_ERROR_TEXT]), wit_text(text[-_MAX_ERROR_TEXT:]), info,
            ErrorKind.INVALID_HANDLE if isinstance(exc, InvalidHandle) else ErrorKind.EXCEPTION)

    def reset_for_snapshot(self) -> None:
        """After a preload's imports (see the host's sandbox/preload.rs): the
        snapshot taken next must start as a fresh session does, with no
        handles, an empty namespace and its seed and clock still to come."""
        self.table.clear()
        namespace = self.main.__dict__
        namespace.clear()
        namespace.update(__name__="__main__", __doc__=None, __package__=None,
                         __loader__=None, __spec__=None, __builtins__=builtins)
        self._sources.clear()
        self._source_counter = 0
        self._code_cache.clear()
        self._seeded = False
        # As at the end of the built-in snapshot (agent.py): the preloaded
        # modules' objects join the permanent generation.
        import gc
        gc.collect()
        gc.freeze()

    def _seed(self) -> None:
        """Fresh entropy for this session: the snapshot's seed is shared.
        And a process clock: WASI has none (CPython's reads as negative), so
        `time.process_time` counts from the session's first call (the guest
        is single-threaded; time blocked in sleeps counts too). And the
        working directory: the session's /tmp."""
        self._seeded = True
        random_module = sys.modules.get("random")
        if random_module is not None:
            random_module.seed()
        import time
        monotonic_ns = time.monotonic_ns
        started = monotonic_ns()

        def process_time_ns() -> int:
            return monotonic_ns() - started

        def process_time() -> float:
            return (monotonic_ns() - started) / 1e9

        time.process_time_ns = process_time_ns
        time.process_time = process_time
        # The session's private /tmp is its working directory (the default,
        # `/`, is no directory the sandbox has).
        import os
        try:
            os.chdir("/tmp")
        except OSError:
            pass

    # -- what the callback proxies need (callbacks.CallbackSession) ----------

    def encode_args(self, args: tuple) -> list:
        return self.encoder.encode(args)

    def encode_kwargs(self, kwargs: dict) -> list:
        return [(wit_text(str(key)), self.encoder.encode(value)) for key, value in kwargs.items()]

    def decode(self, nodes: list) -> Any:
        return self.decoder.decode(nodes)

    def flush_output(self) -> None:
        self.output.flush()

    # -- handlers -----------------------------------------------------------

    def _compile(self, source: str, mode: str) -> Any:
        key = (source, mode)
        code = self._code_cache.get(key)
        if code is not None:
            return code
        self._source_counter += 1
        filename = f"<remote-{self._source_counter}>"
        code = compile(source, filename, mode, dont_inherit=True)
        # Keep the source for tracebacks, bounded.
        linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
        self._sources.append(filename)
        if len(self._sources) > _MAX_CACHED_SOURCES:
            linecache.cache.pop(self._sources.popleft(), None)
        if len(self._code_cache) >= _MAX_CACHED_SOURCES:
            self._code_cache.clear()
        self._code_cache[key] = code
        return code

    def _execute(self, op: Op_Execute) -> None:
        exec(self._compile(op.value, "exec"), self.main.__dict__)

    def _define(self, op: Op_Define) -> Any:
        tree = ast.parse(op.value)
        names = [node.name for node in tree.body
                 if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))]
        if not names:
            raise ValueError("source defines no function or class at top level")
        exec(self._compile(op.value, "exec"), self.main.__dict__)
        return self.main.__dict__[names[-1]]

    def _kwargs(self, pairs: list) -> dict:
        decode = self.decoder.decode
        return {key: decode(value) for key, value in pairs}

    def _call(self, op: Op_Call) -> Any:
        args = op.value
        target = self.entries[args.target].obj
        if args.kwargs:
            return target(*self.decoder.decode_args(args.args), **self._kwargs(args.kwargs))
        return target(*self.decoder.decode_args(args.args))

    def _call_method(self, op: Op_CallMethod) -> Any:
        args = op.value
        method = getattr(self.entries[args.target].obj, args.name)
        if args.kwargs:
            return method(*self.decoder.decode_args(args.args), **self._kwargs(args.kwargs))
        return method(*self.decoder.decode_args(args.args))

    def _call_packed(self, op: Op_CallPacked) -> Any:
        target, name, args, handles = _loads(op.value)
        entries = self.entries
        if handles:
            args = list(args)
            for index in handles:
                args[index] = entries[args[index]].obj
        target = entries[target].obj
        if name is not None:
            target = getattr(target, name)
        return target(*args)

    def _set_attr(self, op: Op_SetAttr) -> None:
        setattr(self.entries[op.value.target].obj, op.value.name, self.decoder.decode(op.value.value))

    def _set_item(self, op: Op_SetItem) -> None:
        target = self.entries[op.value.target].obj
        target[self.decoder.decode(op.value.key)] = self.decoder.decode(op.value.value)

    def _del_item(self, op: Op_DelItem) -> None:
        del self.entries[op.value.target].obj[self.decoder.decode(op.value.key)]

    def _iter(self, op: Op_Iter) -> tuple:
        iterator = iter(self.entries[op.value.target].obj)
        limit = max(1, op.value.max_items)
        items = tuple(islice(iterator, limit))
        done = len(items) < limit
        return (None if done else iterator, items, done)

    def _next(self, op: Op_Next) -> tuple:
        iterator = self.entries[op.value.target].obj
        limit = max(1, op.value.max_items)
        items = tuple(islice(iterator, limit))
        return (items, len(items) < limit)

    def _binary(self, op: Op_Binary) -> Any:
        args = op.value
        target = self.entries[args.target].obj
        other = self.decoder.decode(args.other)
        function = _BINARY[args.op]
        return function(other, target) if args.reflected else function(target, other)

    def _release(self, op: Op_Release) -> None:
        release = self.table.release
        for entry in op.value:
            release(entry.id, entry.count)

    def _set_argv(self, op: Op_SetArgv) -> None:
        sys.argv = list(op.value)

    def _run_script(self, op: Op_RunScript) -> int:
        """Runs a script as python3 runs a file: `__main__`, its bytes decoded
        as Python decodes source (UTF-8, a BOM, a PEP 263 cookie), then the
        `atexit` handlers, whether it ended normally, by SystemExit or by an
        exception."""
        raw, filename = op.value
        module = types.ModuleType("__main__")
        module.__dict__.update({"__builtins__": builtins, "__file__": filename})
        self.main = module
        sys.modules["__main__"] = module
        try:
            try:
                source = importlib.util.decode_source(bytes(raw))
            except (SyntaxError, LookupError, UnicodeDecodeError) as exc:
                raise SyntaxError(f"{filename}: {exc}") from None
            code = compile(source, filename, "exec", dont_inherit=True)
            linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
            try:
                exec(code, module.__dict__)
            except SystemExit as exit_request:
                return exit_status(exit_request.code)
            except BaseException as exc:
                # A hook of the script's own reports the error, as python3
                # calls it; otherwise the error goes back as data.
                if sys.excepthook is sys.__excepthook__:
                    raise
                sys.excepthook(type(exc), exc, _user_frames(exc.__traceback__))
                return 1
            return 0
        finally:
            _shut_down()


def exit_status(code: Any) -> int:
    """The status python3 exits with for `SystemExit(code)`: an int as the
    OS takes it (its low byte; one beyond a C long is -1, so 255), None 0,
    anything else printed to stderr and 1."""
    if code is None:
        return 0
    if isinstance(code, int):
        return code & 0xFF if _INT_MIN <= code <= _INT_MAX else 255
    print(code, file=sys.stderr)
    return 1


def _shut_down() -> None:
    """What interpreter exit does for the code: the `atexit` handlers (their
    errors printed by atexit itself, as python3 does), then every open file
    flushed (python3 closes them as it tears down; the instance is dropped
    without that, and buffered writes to a mount would be lost)."""
    import atexit
    import gc
    import io
    atexit._run_exitfuncs()
    atexit._clear()
    for obj in gc.get_objects():
        if isinstance(obj, (io.BufferedWriter, io.BufferedRandom, io.TextIOWrapper)):
            try:
                if not obj.closed:
                    obj.flush()
            except BaseException:  # noqa: BLE001 - one file's failure is not the others'
                pass


#: Frames of a traceback formatted, innermost kept: a RecursionError after
#: `sys.setrecursionlimit(10**5)` has 10**5 of them, and reading each one's
#: source line took seconds of the call's time limit.
MAX_TRACEBACK_FRAMES = 1000


def _format_traceback(kind: type, exc: BaseException) -> str:
    """The traceback as python3 would print it: without the agent's frames
    (its dispatch above the user's code; its streams and bindings below it,
    where python3 has C code), in chained exceptions and groups too; at
    most the innermost `MAX_TRACEBACK_FRAMES` of each."""
    report = traceback.TracebackException(kind, exc, exc.__traceback__,
                                          limit=-MAX_TRACEBACK_FRAMES)
    pending = [report]
    seen: set[int] = set()
    while pending:
        current = pending.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        current.stack = traceback.StackSummary.from_list(
            [frame for frame in current.stack if not frame.filename.startswith(_AGENT_DIRS)])
        pending.extend(chained for chained in (current.__cause__, current.__context__)
                       if chained is not None)
        pending.extend(getattr(current, "exceptions", None) or ())
    return "".join(report.format())


def _user_frames(tb: Any) -> Any:
    """Skips the agent's own frames at the top of a traceback."""
    while tb is not None and tb.tb_frame.f_code.co_filename.startswith(_OUR_DIR):
        tb = tb.tb_next
    return tb


def install_streams(session: Session) -> None:
    sys.stdout = OutputStream(session.output, 1, "<stdout>")
    sys.stderr = OutputStream(session.output, 2, "<stderr>")
    sys.__stdout__ = sys.stdout
    sys.__stderr__ = sys.stderr
    sys.stdin = sys.__stdin__ = input_stream(host.read_input, session.output.flush)
    _route_fd_writes(session.output)
    _route_process_exits(session.output)
    threads.install()


def _route_process_exits(output: OutputBuffer) -> None:
    """`os._exit(n)` and `os.abort()` tell the host their status (n, 134)
    before they end the instance: WASI's exit carries only success or
    failure."""
    import posix
    wasi_exit = posix._exit

    def _exit(status: int, /) -> None:
        status = operator.index(status)
        try:
            output.flush()
        except BaseException:  # noqa: BLE001 - exiting regardless
            pass
        host.exiting(max(-(1 << 31), min(status, (1 << 31) - 1)))
        wasi_exit(status)

    _exit.__doc__ = wasi_exit.__doc__
    os._exit = posix._exit = _exit
    wasi_abort = posix.abort

    def abort() -> None:
        try:
            output.flush()
        except BaseException:  # noqa: BLE001 - aborting regardless
            pass
        host.exiting(134)  # 128 + SIGABRT, as a shell reports python3's abort
        wasi_abort()

    abort.__doc__ = wasi_abort.__doc__
    os.abort = posix.abort = abort


def _route_fd_writes(output: OutputBuffer) -> None:
    """`os.write(1, ...)` and `os.write(2, ...)` reach the same ordered
    streams as `print` (WASI's own stdout and stderr are not the session's)."""
    import posix
    fd_write = posix.write

    def write(fd: int, data: Any, /) -> int:
        if fd == 1 or fd == 2:
            data = bytes(memoryview(data))
            output.write(fd, data, True)
            return len(data)
        return fd_write(fd, data)

    fd_read = posix.read

    def read(fd: int, length: int, /) -> bytes:
        if fd == 0:
            if length < 0:
                raise ValueError("length must be non-negative")
            output.flush()
            return bytes(host.read_input(length)) if length else b""
        return fd_read(fd, length)

    write.__doc__ = fd_write.__doc__
    read.__doc__ = fd_read.__doc__
    os.write = posix.write = write
    os.read = posix.read = read
