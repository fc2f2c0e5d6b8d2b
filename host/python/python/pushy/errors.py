"""The exceptions of pushy.

A Python exception raised in the sandbox comes back as itself when its
class is a builtin one (``except KeyError:`` works; the remote traceback is
its ``remote_traceback`` attribute and is printed with it), else as a
:class:`RemoteError`. Everything else that can go wrong is a
:class:`PushyError`: limits, the end of a session, connecting, the link.
"""

from __future__ import annotations

import builtins
import errno
import sys
from typing import Any, Dict, Optional, Sequence, Tuple, Type

__all__ = [
    "PushyError", "RemoteError", "TimeLimitExceeded", "MemoryLimitExceeded",
    "SessionTerminated", "SandboxTrapped", "SessionExited", "Interrupted",
    "ConnectionClosed", "ConnectError", "AuthenticationFailed", "ConnectionRefused",
    "ConnectTimeout", "InvalidHandle", "BadArgument", "ProtocolError", "SandboxError",
    "UnsupportedTarget",
]


class PushyError(Exception):
    """Base of every pushy failure that is not a Python exception of the
    sandbox's code. ``session_ended`` says whether the session is gone (a
    new connection is needed)."""

    session_ended = False


class RemoteError(PushyError):
    """An exception of a class that is not a builtin one, raised in the
    sandbox (a ``class MyError(Exception)`` of the remote code).

    It is also an instance of the nearest builtin base of that class (a
    remote ``class Invalid(ValueError)`` is caught by ``except ValueError:``).

    Attributes: ``type_name`` (qualified, e.g. ``__main__.MyError``),
    ``bases`` (qualified names along its MRO), ``message`` (``str()`` of it),
    ``remote_traceback`` (as the sandbox printed it) and
    ``remote_exception`` (a proxy of the exception object, or None).
    """

    def __init__(self, type_name: str, message: str, remote_traceback: str = "",
                 bases: Sequence[str] = (), remote_exception: Any = None) -> None:
        super().__init__(type_name, message)
        self.type_name = type_name
        self.message = message
        self.remote_traceback = remote_traceback
        self.bases = tuple(bases)
        self.remote_exception = remote_exception

    def __str__(self) -> str:
        short = self.type_name.rsplit(".", 1)[-1]
        text = f"{short}: {self.message}" if self.message else short
        if self.remote_traceback:
            text += "\n\nRemote traceback:\n" + self.remote_traceback.rstrip()
        return text


class TimeLimitExceeded(PushyError, TimeoutError):
    """A call ran past its time limit (``timeout=``); the session ended.
    ``limit`` is the limit in seconds."""

    session_ended = True
    limit: float = 0.0


class MemoryLimitExceeded(PushyError, MemoryError):
    """The sandbox's memory limit (``memory_mib=``) was reached. When the
    interpreter could not recover, the session ended (``session_ended``);
    when the code got a ``MemoryError`` from the limit and the session goes
    on, ``session_ended`` is False."""

    session_ended = True


class SessionTerminated(PushyError):
    """The session had ended already (a limit, a trap, an interrupt, an
    exit): start a new connection."""

    session_ended = True


class SandboxTrapped(SessionTerminated):
    """The sandbox trapped (a stack overflow, an abort); the session ended."""


class SessionExited(SessionTerminated):
    """The remote code called ``os._exit(status)``; ``status`` is its status."""

    status: int = 0


class Interrupted(SessionTerminated):
    """The call was interrupted (``Connection.interrupt()``); the session
    ended and its state is lost."""


class ConnectionClosed(PushyError):
    """The connection is closed (``close()``, or the link or host went away)."""

    session_ended = True


class ConnectError(PushyError, ConnectionError):
    """No session could be started: the host could not be reached or
    started, or the handshake failed."""

    session_ended = True


class AuthenticationFailed(ConnectError):
    """The daemon refused the token (``token_file=``), or wanted one."""


class ConnectionRefused(ConnectError):
    """The daemon refused the session (busy, or a limit it cannot meet)."""


class ConnectTimeout(ConnectError, TimeoutError):
    """Connecting or the handshake took too long."""


class InvalidHandle(PushyError, LookupError):
    """A proxy whose object the session no longer has."""


class BadArgument(PushyError, ValueError):
    """An argument that cannot be sent (e.g. a proxy of another connection)."""


class ProtocolError(PushyError):
    """The other side broke the protocol, or speaks another version of it."""


class SandboxError(ConnectError):
    """The sandbox could not be set up (e.g. a memory limit too small for
    it): no session started, as for every ``ConnectError``."""

    session_ended = True


class UnsupportedTarget(PushyError, ValueError):
    """A target URL that is not ``embedded:``, ``local:``, ``daemon:HOST:PORT``
    or ``ssh:[USER@]HOST[:PORT]``."""


def classes() -> Dict[str, type]:
    """Every class above by name (what the extension raises)."""
    return {name: globals()[name] for name in __all__}


# -- exceptions of the sandbox -------------------------------------------

_BUILTIN_EXCEPTIONS = {
    f"builtins.{name}": value for name, value in vars(builtins).items()
    if isinstance(value, type) and issubclass(value, BaseException)
}
_REMOTE_ERROR_CLASSES: Dict[type, Type[RemoteError]] = {}


def _remote_error_class(bases: Sequence[str]) -> Type[RemoteError]:
    """RemoteError, also deriving from the nearest builtin base class."""
    for base in bases:
        builtin = _BUILTIN_EXCEPTIONS.get(base)
        if builtin is None or builtin in (Exception, BaseException):
            continue
        if not issubclass(builtin, Exception):
            break
        cls = _REMOTE_ERROR_CLASSES.get(builtin)
        if cls is None:
            try:
                cls = type("RemoteError", (RemoteError, builtin), {
                    "__module__": __name__, "__doc__": RemoteError.__doc__,
                    # The builtin's own __str__/__init__ would come first.
                    "__str__": RemoteError.__str__, "__init__": RemoteError.__init__,
                })
            except TypeError:  # a layout that cannot be combined
                cls = RemoteError
            _REMOTE_ERROR_CLASSES[builtin] = cls
        return cls
    return RemoteError


def _note(exception: BaseException, remote_traceback: str) -> None:
    """Shows the remote traceback where the exception is printed (Python
    3.11+ prints notes; earlier versions keep it in ``remote_traceback``)."""
    if not remote_traceback:
        return
    note = "Remote traceback:\n" + remote_traceback.rstrip()
    add_note = getattr(exception, "add_note", None)
    if add_note is not None:
        add_note(note)
    else:
        exception.__notes__ = [note]  # type: ignore[attr-defined]


def remote_exception(type_name: str, bases: Sequence[str], message: str, traceback: str,
                     exception: Any, *, memory_limit_hit: bool = False) -> BaseException:
    """The exception to raise here for one raised in the sandbox (the
    extension's hook)."""
    if memory_limit_hit and type_name == "builtins.MemoryError":
        limited = MemoryLimitExceeded(
            "the sandbox's memory limit refused an allocation (the session goes on)")
        limited.session_ended = False
        limited.remote_traceback = traceback  # type: ignore[attr-defined]
        limited.remote_exception = exception  # type: ignore[attr-defined]
        _note(limited, traceback)
        return limited
    builtin = _BUILTIN_EXCEPTIONS.get(type_name)
    if builtin is None:
        return _remote_error_class(bases)(type_name, message, traceback, bases, exception)
    args: Tuple[Any, ...] = (message,) if message else ()
    # The exception's own arguments (a KeyError's key, an OSError's errno),
    # but not for AttributeError: its argument is its message, and hasattr()
    # on a proxy asks often.
    if exception is not None and builtin is not AttributeError:
        from . import _core
        try:
            fetched = _core.attr_get(exception, "args")
            if isinstance(fetched, tuple):
                args = fetched
        except Exception:  # noqa: BLE001 - the message will do
            pass
    if issubclass(builtin, OSError) and args and isinstance(args[0], int) and exception is not None:
        args = _os_error_args(exception, args)
    try:
        made = builtin(*args)
    except Exception:  # noqa: BLE001 - a class that wants other arguments
        try:
            made = builtin.__new__(builtin)
            made.args = args
        except Exception:  # noqa: BLE001 - one that cannot be made so (ExceptionGroup)
            return _remote_error_class(bases)(type_name, message, traceback, bases, exception)
    made.remote_traceback = traceback  # type: ignore[attr-defined]
    made.remote_exception = exception  # type: ignore[attr-defined]
    _note(made, traceback)
    return made


def _os_error_args(exception: Any, args: Tuple[Any, ...]) -> Tuple[Any, ...]:
    """An OSError's arguments as this system's: the sandbox's errno numbers
    are WASI's (ENOENT is 44 there), matched by name; its file names,
    which are attributes, not arguments, go back in."""
    from . import _core
    number, rest = args[0], tuple(args[1:2])
    try:
        connection = _core.connection_of(exception)
        companion = connection.companion
        if companion.errno_names is None:
            module = connection.import_module("errno")
            companion.errno_names = _core.obtain(_core.attr_get(module, "errorcode"))
        number = int(getattr(errno, companion.errno_names.get(number, ""), number))
        names = (_core.attr_get(exception, "filename"), _core.attr_get(exception, "filename2"))
        if len(rest) == 1 and names[0] is not None:
            rest += (names[0], None, names[1]) if names[1] is not None else (names[0],)
    except Exception:  # noqa: BLE001 - the remote arguments will do
        pass
    return (number,) + rest


def remote_traceback_of(exception: BaseException) -> Optional[str]:
    """The remote traceback of an exception that came from the sandbox."""
    return getattr(exception, "remote_traceback", None)


del sys
