"""Callables that live on the local side.

Calling one asks the host (`call_local`). The component model forbids the
host to re-enter the guest while it waits, so the host answers either with
the callback's result or with a nested request, which we dispatch here and
hand back through `resume` before asking again: a trampoline.
"""

from __future__ import annotations

import builtins
import weakref
from typing import Any, Protocol

from wit_world.imports import host
from wit_world.imports.types import Inbound_Done, ReleaseEntry, Reply_Ok


class CallbackError(Exception):
    """The local side's callback failed; the message says how."""


# The qualified name of CallbackError: the host names its failed callbacks'
# errors so (`CALLBACK_ERROR_TYPE`), and an error that reaches the local side
# from guest code is reported under the same name.
_CALLBACK_ERROR_TYPE = f"{CallbackError.__module__}.{CallbackError.__qualname__}"


def local_exception(type_name: str, message: str) -> Exception:
    """What a local failure of type `type_name` raises here: an instance of
    the builtin exception class it names (so a local KeyError is a KeyError,
    which a mapping's missing key must be), else a CallbackError naming the
    type. Only `Exception` classes: the local side's KeyboardInterrupt or
    SystemExit are not this interpreter's to act on."""
    module, _, name = type_name.rpartition(".")
    if module == "builtins":
        kind = getattr(builtins, name, None)
        if isinstance(kind, type) and issubclass(kind, Exception):
            try:
                return kind(message)
            except Exception:  # noqa: BLE001 - a class that wants other arguments
                pass
    return CallbackError(f"{type_name}: {message}")


class LocalCallable:
    __slots__ = ("_id", "_proxies", "_received", "__weakref__")

    def __init__(self, callback_id: int, proxies: "CallbackProxies") -> None:
        self._id = callback_id
        self._proxies = proxies
        # How many times the local side sent this id; released together.
        self._received = [0]

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._proxies.call(self._id, args, kwargs)

    def __repr__(self) -> str:
        return f"<local callback {self._id}>"


class CallbackSession(Protocol):
    """What the proxies need from the session that owns them (`dispatch.Session`).

    A protocol, not the objects themselves, because the dependency is
    circular: the session's decoder makes proxies, and a proxy's call needs
    the decoder for its result and the session's dispatcher for the nested
    requests the trampoline hands it."""

    def encode_args(self, args: tuple) -> list:
        """A callback's positional arguments as value nodes."""

    def encode_kwargs(self, kwargs: dict) -> list:
        """A callback's keyword arguments as (name, value nodes) pairs."""

    def decode(self, nodes: list) -> Any:
        """A callback's result, from value nodes."""

    def dispatch(self, op: Any) -> Any:
        """Runs one nested request; returns its reply (never raises)."""

    def flush_output(self) -> None:
        """Hands buffered output to the host, so it comes before whatever
        the local callback prints."""


class CallbackProxies:
    """One proxy per local callback id; released to the local side in batches."""

    def __init__(self, session: CallbackSession) -> None:
        self._session = session
        self._live: "weakref.WeakValueDictionary[int, LocalCallable]" = weakref.WeakValueDictionary()
        # Releases not yet sent to the host; empty between operations.
        self.released: list[ReleaseEntry] = []

    def proxy(self, callback_id: int) -> LocalCallable:
        proxy = self._live.get(callback_id)
        if proxy is None:
            proxy = LocalCallable(callback_id, self)
            self._live[callback_id] = proxy
            weakref.finalize(proxy, self._finalized, callback_id, proxy._received)
        proxy._received[0] += 1
        return proxy

    def _finalized(self, callback_id: int, received: list[int]) -> None:
        self.released.append(ReleaseEntry(callback_id, received[0]))

    def call(self, callback_id: int, args: tuple, kwargs: dict) -> Any:
        session = self._session
        session.flush_output()
        # The encoder sends bytes as text (see values.Encoder): `list<u8>`
        # import arguments would leak as much as export results.
        kwargs_nodes = session.encode_kwargs(kwargs)
        inbound = host.call_local(callback_id, session.encode_args(args), kwargs_nodes)
        while type(inbound) is not Inbound_Done:
            reply = session.dispatch(inbound.value)
            inbound = host.resume(reply)
        reply = inbound.value
        if type(reply) is Reply_Ok:
            return session.decode(reply.value)
        error = reply.value
        if error.type_name == _CALLBACK_ERROR_TYPE:
            # The host's own report (the callback failed, or panicked).
            raise CallbackError(error.message)
        raise local_exception(error.type_name, error.message)

    def flush_releases(self) -> None:
        if self.released:
            released, self.released = self.released, []
            host.release_local(released)
