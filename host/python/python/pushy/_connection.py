"""Connections: ``pushy.connect`` and what a connection offers."""

from __future__ import annotations

import ast
import codecs
import inspect
import os
import sys
import textwrap
from typing import Any, Iterable, List, Optional, Tuple, Union

from . import _core
from ._local import Companion
from ._proxy import PYAPI, is_proxy

PathLike = Union[str, "os.PathLike[str]"]
MountSpec = Union[str, Tuple[PathLike, str], Tuple[PathLike, str, Union[bool, str]]]

# Bytes per round trip of putfile/getfile.
_FILE_CHUNK = 4 << 20


class Modules:
    """``con.modules``: remote modules by attribute (``con.modules.os``) or
    by dotted name (``con.modules["os.path"]``), imported on first use and
    cached for the connection. A package's submodules import on attribute
    access too (``con.modules.xml.dom.minidom``)."""

    __slots__ = ("_core",)

    def __init__(self, core: Any) -> None:
        self._core = core

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        return self._core.import_module(name)

    def __getitem__(self, name: str) -> Any:
        return self._core.import_module(name)

    def __repr__(self) -> str:
        return "<remote modules>"


class Connection:
    """A session of a sandboxed Python interpreter (see :func:`pushy.connect`).

    ``modules``, ``eval``, ``execute``, ``compile``, ``putfile``/``getfile``
    as in Pushy; values come back as Python objects (immutable ones) or
    proxies. One connection may be used from several threads: calls take
    turns, and a callback from the sandbox runs on the thread whose call is
    waiting for it. Use it as a context manager, or call :meth:`close`.
    """

    def __init__(self, core: Any, target: str) -> None:
        self._core = core
        self._target = target
        self._modules = Modules(core)
        self._namespace: Any = None

    # -- the session ----------------------------------------------------------

    @property
    def modules(self) -> Modules:
        """Remote modules: ``con.modules.os.getpid()``."""
        return self._modules

    @property
    def target(self) -> str:
        """The target URL this connection was made to."""
        return self._target

    @property
    def namespace(self) -> Any:
        """The session's ``__main__`` namespace (a proxy of its dict), where
        ``eval``/``execute`` run by default."""
        if self._namespace is None:
            self._namespace = self._core.eval("globals()")
        return self._namespace

    def _globals(self, globals: Any) -> Any:
        if globals is None:
            return self.namespace
        if not is_proxy(globals):
            raise TypeError(
                "globals must be a remote dict (a proxy, e.g. con.namespace or "
                "con.modules.builtins.dict()); a local mapping can be the locals")
        return globals

    def eval(self, code: Any, globals: Any = None, locals: Any = None) -> Any:
        """``eval(code, globals, locals)`` in the sandbox. ``code`` is source
        or a remote code object (from :meth:`compile`); ``globals`` a remote
        dict (default: the session's ``__main__``); ``locals`` any mapping,
        a local one too (the sandbox reads and writes it through its
        public methods)."""
        if globals is None and locals is None and isinstance(code, str):
            return self._core.eval(code)
        return _core.module_call(self._core, PYAPI, "evaluate", (code, self._globals(globals), locals))

    def execute(self, source: Any, globals: Any = None, locals: Any = None) -> None:
        """``exec(source, globals, locals)`` in the sandbox; see :meth:`eval`.
        With a local dict as ``locals``, what the code defines lands in it::

            ns = {}
            con.execute("def abc():\\n    return 123", locals=ns)
            ns["abc"]()   # 123, run in the sandbox
        """
        if globals is None and locals is None and isinstance(source, str):
            self._core.execute(source)
            return
        _core.module_call(self._core, PYAPI, "execute", (source, self._globals(globals), locals))

    def compile(self, code: Any, mode: str = "exec") -> Any:
        """Pushy's ``compile``. Given a local function, defines it in the
        session and returns the remote function: its source (decorators
        left out), its defaults and keyword-only defaults (sent as arguments
        are), running against the sandbox's modules (its ``import``s import
        there; names of the local module it used are not there). Given
        source, returns a remote code object (``mode``: ``exec``, ``eval``
        or ``single``) for :meth:`eval` or :meth:`execute`."""
        if isinstance(code, str):
            return _core.module_call(self._core, PYAPI, "compile_source", (code, mode))
        if inspect.isfunction(code):
            return self._define(code)
        raise TypeError(f"compile() takes source or a local function, not {type(code).__name__}")

    def remote_import(self, name: str) -> Any:
        """Imports a remote module by its dotted name (as ``modules[name]``)."""
        return self._core.import_module(name)

    def _define(self, function: Any) -> Any:
        lambda_ = function.__name__ == "<lambda>"
        source = _lambda_source(function) if lambda_ else _function_source(function)
        free = function.__code__.co_freevars
        if not free:
            remote = self._core.eval(source) if lambda_ else self._core.define(source)
        else:
            # A closure: the variables it closes over, as they are now, are
            # the arguments of a remote factory whose inner function it is
            # (values go as arguments do: by value or as capabilities).
            cells = []
            for name, cell in zip(free, function.__closure__ or ()):
                try:
                    cells.append(cell.cell_contents)
                except ValueError:
                    raise NameError(
                        f"compile(): free variable {name!r} of {function.__qualname__} "
                        "is not bound yet") from None
            factory = self._core.define(_closure_factory(source, lambda_, function.__name__, free))
            remote = _core.call(factory, tuple(cells))
        if function.__defaults__:
            _core.attr_set(remote, "__defaults__", function.__defaults__)
        if function.__kwdefaults__:
            kwdefaults = _core.module_call(self._core, "builtins", "dict", (), dict(function.__kwdefaults__))
            _core.attr_set(remote, "__kwdefaults__", kwdefaults)
        return remote

    def putfile(self, local_path: PathLike, remote_path: str) -> None:
        """Copies a local file into the sandbox (its private ``/tmp``, or a
        writable mount), in chunks."""
        with open(local_path, "rb") as source:
            remote = _core.module_call(self._core, "builtins", "open", (remote_path, "wb"))
            try:
                while True:
                    chunk = source.read(_FILE_CHUNK)
                    if not chunk:
                        break
                    _core.call_method(remote, "write", (chunk,))
            finally:
                _core.call_method(remote, "close", ())

    def getfile(self, remote_path: str, local_path: PathLike) -> None:
        """Copies a file of the sandbox here, in chunks."""
        remote = _core.module_call(self._core, "builtins", "open", (remote_path, "rb"))
        try:
            with open(local_path, "wb") as target:
                while True:
                    chunk = _core.call_method(remote, "read", (_FILE_CHUNK,))
                    if not chunk:
                        break
                    target.write(chunk)
        finally:
            _core.call_method(remote, "close", ())

    # -- releases ---------------------------------------------------------------

    @property
    def gc_enabled(self) -> bool:
        """Whether collected proxies release their remote objects (True).
        While False, releases are held (the remote objects stay alive);
        setting it back releases them."""
        return self._core.gc_enabled

    @gc_enabled.setter
    def gc_enabled(self, enabled: bool) -> None:
        self._core.gc_enabled = bool(enabled)

    @property
    def gc_interval(self) -> float:
        """Seconds between batched release messages (5, as in Pushy);
        releases also ride on the next call. 0 sends each at once."""
        return self._core.gc_interval

    @gc_interval.setter
    def gc_interval(self, seconds: float) -> None:
        self._core.gc_interval = float(seconds)

    def flush_releases(self) -> None:
        """Sends the queued releases now."""
        self._core.flush_releases()

    # -- the end --------------------------------------------------------------

    def interrupt(self) -> None:
        """Stops the running call (from another thread): it raises
        ``pushy.Interrupted``. The session is terminated and its state lost."""
        self._core.interrupt()

    def close(self) -> None:
        """Ends the session (idempotent). Proxies of it fail from now on."""
        self._core.companion.recent.clear()
        self._core.companion.objects.clear()
        self._core.close()

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return self._core.closed

    def __del__(self) -> None:
        # The proxies kept for speed hold the session, which holds them
        # (through Rust, where the collector cannot see): let go of them, so
        # that a connection dropped unclosed ends once its proxies are gone.
        # No I/O here.
        try:
            self._core.companion.recent.clear()
            self._core.companion.objects.clear()
        except Exception:  # noqa: BLE001 - at interpreter exit
            pass

    def __enter__(self) -> "Connection":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self.closed else "open"
        return f"<pushy.Connection {self._target} ({state})>"


def _source_of(function: Any) -> str:
    try:
        raw = inspect.getsource(function)
    except (OSError, TypeError) as error:
        raise TypeError(f"compile(): the source of {function.__qualname__} is not available ({error})") from None
    source = textwrap.dedent(raw)
    if source[:1] not in (" ", "\t"):
        return source
    # A nested function with a line of a string literal at column 0: no
    # dedent applies. Parsed inside an `if` block instead and written out
    # again from its tree (the literals keep their text; comments and line
    # numbers are not kept).
    try:
        block = ast.parse("if 1:\n" + raw).body[0]
    except SyntaxError:
        return source
    if isinstance(block, ast.If) and block.body and isinstance(
            block.body[0], (ast.FunctionDef, ast.AsyncFunctionDef)):
        node = block.body[0]
        node.decorator_list = []
        return ast.unparse(node) + "\n"
    return source


def _without_defaults(lines: List[bytes], node: Any) -> List[bytes]:
    """`lines` with each default of the function `node` replaced by None
    (the real ones are set afterwards: their expressions name local
    things). Offsets are in UTF-8 bytes. A default spanning lines keeps
    them, as newlines, so that tracebacks keep their line numbers."""
    defaults = list(node.args.defaults) + [d for d in node.args.kw_defaults if d is not None]
    lines = list(lines)
    # Last first, so that earlier offsets stay valid; offsets are in bytes.
    for default in sorted(defaults, key=lambda d: (d.lineno, d.col_offset), reverse=True):
        first, last = default.lineno - 1, default.end_lineno - 1  # type: ignore[operator]
        start, end = default.col_offset, default.end_col_offset
        # Keep the line count (tracebacks): the default is inside the
        # parentheses, where newlines are free.
        replacement = b"None" + b"\n" * (last - first)
        joined = lines[first][:start] + replacement + lines[last][end:]
        lines[first:last + 1] = [joined]
    return lines


def _function_source(function: Any) -> str:
    """The source of a local function to define remotely: dedented, its
    decorators left out, its defaults replaced by None."""
    source = _source_of(function)
    tree = ast.parse(source)
    node = tree.body[0] if tree.body else None
    if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
        raise TypeError(f"compile(): the source of {function.__qualname__} is not a def")
    lines = _without_defaults([line.encode("utf-8") for line in source.splitlines(keepends=True)], node)
    return b"".join(lines[node.lineno - 1:]).decode("utf-8")


def _closure_factory(source: str, lambda_: bool, name: str, free: Tuple[str, ...]) -> str:
    """The source of ``_pushy_closure_(*free)``, which defines the function
    of ``source`` (a def, or a lambda's expression) and returns it; built as
    a tree, so the string literals inside keep their text exactly."""
    made = "None" if lambda_ else name
    factory = ast.parse(f"def _pushy_closure_({', '.join(free)}):\n    return {made}\n")
    outer = factory.body[0]
    assert isinstance(outer, ast.FunctionDef)
    if lambda_:
        outer.body = [ast.Return(value=ast.parse(source, mode="eval").body)]
    else:
        outer.body[0:0] = ast.parse(source).body
    return ast.unparse(ast.fix_missing_locations(factory)) + "\n"


def _lambda_source(function: Any) -> str:
    """The source of a local lambda, found in the lines it is on by its
    parameters, its defaults replaced by None."""
    source = _source_of(function).strip()
    tree = None
    for attempt in (source, f"({source})", source.rstrip(",)") + ")"):
        try:
            tree = ast.parse(attempt)
            source = attempt
            break
        except SyntaxError:
            continue
    if tree is None:
        raise TypeError("compile(): the lambda's source cannot be read; use a def")
    code = function.__code__
    wanted = code.co_varnames[:code.co_argcount + code.co_kwonlyargcount
                              + bool(code.co_flags & inspect.CO_VARARGS)
                              + bool(code.co_flags & inspect.CO_VARKEYWORDS)]
    lines = [line.encode("utf-8") for line in source.splitlines(keepends=True)]
    candidates: List[str] = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Lambda):
            continue
        arguments = node.args
        names = [a.arg for a in arguments.posonlyargs + arguments.args]
        names += [arguments.vararg.arg] if arguments.vararg else []
        names += [a.arg for a in arguments.kwonlyargs]
        names += [arguments.kwarg.arg] if arguments.kwarg else []
        if sorted(names) != sorted(wanted):
            continue
        first, last = node.lineno - 1, node.end_lineno - 1  # type: ignore[operator]
        if first != last:
            break
        edited = _without_defaults(lines, node)
        # The defaults' edits are inside the lambda: its end moved by them.
        end = node.end_col_offset - (len(lines[last]) - len(edited[last]))  # type: ignore[operator]
        candidates.append(edited[first][node.col_offset:end].decode("utf-8"))
    if len(candidates) == 1:
        return candidates[0]
    # Several lambdas with these parameters on the line: the one whose code
    # is this function's (compiled alone, a closure's variables read as
    # globals, hence the second, looser comparison).
    for strict in (True, False):
        for candidate in candidates:
            if _same_code(candidate, code, strict):
                return candidate
    raise TypeError("compile(): the lambda's source cannot be told apart on its line; use a def")


def _same_code(source: str, code: Any, strict: bool) -> bool:
    """Whether the lambda `source`, compiled alone, is `code`."""
    try:
        outer = compile(source, "<lambda>", "eval", dont_inherit=True)
    except SyntaxError:
        return False
    inner = next((c for c in outer.co_consts if inspect.iscode(c)), None)
    if inner is None:
        return False
    if strict:
        return inner.co_code == code.co_code and inner.co_consts == code.co_consts
    return _operations(inner) == _operations(code)


_SKIPPED_OPS = {"COPY_FREE_VARS", "MAKE_CELL", "RESUME", "NOP", "PUSH_NULL", "CACHE"}
_VARIABLE_LOADS = {"LOAD_DEREF", "LOAD_GLOBAL", "LOAD_NAME", "LOAD_CLASSDEREF"}


def _operations(code: Any) -> List[Tuple[str, Any]]:
    """The instructions of `code`, a variable read the same whether it is
    a closure's cell or a global."""
    import dis
    found = []
    for instruction in dis.get_instructions(code):
        if instruction.opname in _SKIPPED_OPS:
            continue
        name = "LOAD_VARIABLE" if instruction.opname in _VARIABLE_LOADS else instruction.opname
        found.append((name, repr(instruction.argval)))
    return found


def _mount(spec: MountSpec) -> Tuple[str, str, bool]:
    if isinstance(spec, str):
        parts = spec.split(":")
        if len(parts) == 3 and parts[2] in ("ro", "rw"):
            return parts[0], parts[1], parts[2] == "ro"
        if len(parts) == 2:
            return parts[0], parts[1], False
        raise ValueError(f"a mount is HOST:GUEST[:ro] or (host, guest[, read_only]), not {spec!r}")
    if len(spec) == 2:
        host, guest = spec  # type: ignore[misc]
        return os.fspath(host), guest, False
    host, guest, mode = spec  # type: ignore[misc]
    read_only = mode == "ro" if isinstance(mode, str) else bool(mode)
    return os.fspath(host), guest, read_only


def write_output(companion: Companion, stream: int, data: bytes) -> None:
    """Remote output to this process's ``sys.stdout``/``sys.stderr`` (the
    objects, so redirections and pytest's capsys see it), decoded as UTF-8
    (a character split across chunks is kept for the next)."""
    target = sys.stdout if stream == 1 else sys.stderr
    decoder = companion.decoders.get(stream)
    if decoder is None:
        decoder = companion.decoders[stream] = codecs.getincrementaldecoder("utf-8")("replace")
    text = decoder.decode(data)
    if text and target is not None:
        target.write(text)
        target.flush()


def connect(target: str, *, token_file: Optional[PathLike] = None, tls_ca: Optional[PathLike] = None,
            timeout: Optional[float] = None, memory_mib: Optional[int] = None,
            output_limit_mib: Optional[int] = None, scratch_mib: Optional[int] = None,
            path: Iterable[PathLike] = (), preload: Iterable[str] = (),
            mounts: Iterable[MountSpec] = (), gc_interval: float = 5.0) -> Connection:
    """Connects to a sandboxed Python interpreter.

    ``target`` is one of (Pushy's URLs):

    - ``"embedded:"`` — a sandbox in this process;
    - ``"local:"`` — a child process of this Python running the sandbox
      (``python -m pushy._host``), over its pipes;
    - ``"daemon:HOST:PORT"`` — a ``pushy serve`` daemon, with the token in
      ``token_file`` (default ``$PUSHY_TOKEN_FILE``) and, for TLS, its CA
      certificate in ``tls_ca``;
    - ``"ssh:[USER@]HOST[:PORT]"`` — ``pushy host --stdio`` on the remote,
      through ssh (needs the ``pushy`` binary here, on PATH or
      ``$PUSHY_HOST_PROGRAM``, to push).

    Limits (as the command line's flags): ``timeout`` seconds per call (0:
    none; default 60), ``memory_mib`` of the sandbox (default 512),
    ``output_limit_mib`` per call (default 64), ``scratch_mib`` of its
    private ``/tmp`` (default 64). A daemon lets them tighten its own
    limits, never loosen them.

    What the sandbox sees (not for ``daemon:``, whose own flags decide):
    ``path`` — directories, wheels and zips put on its ``sys.path``,
    read-only at their host paths; ``preload`` — modules imported once into
    a cached snapshot every session starts from; ``mounts`` — host
    directories, each ``"HOST:GUEST[:ro]"`` or ``(host, guest[, read_only])``.

    ``gc_interval``: seconds between batched releases of collected proxies.

    Raises ``pushy.ConnectError`` (and its ``AuthenticationFailed``,
    ``ConnectionRefused``, ``ConnectTimeout``) when no session starts,
    ``ValueError`` for unusable arguments.

    Example::

        with pushy.connect("embedded:", timeout=5) as con:
            con.modules.os.getpid()
            con.eval("1 + 2")
    """
    companion = Companion()
    mount_list: List[Tuple[str, str, bool]] = [_mount(spec) for spec in mounts]
    core = _core.connect(
        target,
        companion=companion,
        token_file=None if token_file is None else os.fspath(token_file),
        tls_ca=None if tls_ca is None else os.fspath(tls_ca),
        timeout=timeout,
        memory_mib=memory_mib,
        output_limit_mib=output_limit_mib,
        scratch_mib=scratch_mib,
        path=[os.fspath(p) for p in path],
        preload=list(preload),
        mounts=mount_list,
        gc_interval=gc_interval,
        host_command=[sys.executable, "-m", "pushy._host"],
    )
    return Connection(core, target)


def obtain(value: Any) -> Any:
    """A local deep copy of a remote value: a proxy of a list, dict, set or
    tuple becomes a local one (recursively; objects in it that are not
    containers stay proxies). Anything else is returned as it is."""
    if is_proxy(value):
        return _core.obtain(value)
    if type(value) is tuple:
        return tuple(obtain(item) for item in value)
    return value
