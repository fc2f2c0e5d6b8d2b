"""sys.stdout and sys.stderr that forward to the host, in order.

Both streams share one pending buffer, so output reaches the host in the
order it was written; it is flushed at each newline (live output), when the
other stream is written to, when it grows past a threshold, and at the end
of every operation.
"""

from __future__ import annotations

import codecs
import io
from typing import Callable

_FLUSH_AT = 8192
# Large writes are encoded and handed to the host in pieces of this size, so
# that one huge write needs no second copy of itself in memory.
_PIECE = 1 << 20


class OutputBuffer:
    def __init__(self, emit: Callable[[int, bytes], None]) -> None:
        self._emit = emit
        self._stream = 0
        # Written but not yet emitted; empty between operations.
        self.chunks: list[bytes] = []
        self._size = 0

    def write(self, stream: int, data: bytes, newline: bool) -> None:
        if len(data) > _PIECE:
            self.flush()
            view = memoryview(data)
            for start in range(0, len(data), _PIECE):
                self._emit(stream, str(view[start:start + _PIECE], "latin-1"))
            return
        if self._stream != stream and self.chunks:
            self.flush()
        self._stream = stream
        self.chunks.append(data)
        self._size += len(data)
        if newline or self._size >= _FLUSH_AT:
            self.flush()

    def flush(self) -> None:
        if not self.chunks:
            return
        data = b"".join(self.chunks)
        self.chunks = []
        self._size = 0
        # latin-1 maps every byte to one char: lossless, and strings do not
        # leak where `list<u8>` import arguments do (see wit/agent.wit).
        self._emit(self._stream, data.decode('latin-1'))


class _BinaryView(io.RawIOBase):
    """`sys.stdout.buffer`: writes bytes into the same ordered buffer."""

    def __init__(self, buffer: OutputBuffer, stream: int) -> None:
        super().__init__()
        self._buffer = buffer
        self._stream = stream

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:  # type: ignore[override]
        data = bytes(data)
        self._buffer.write(self._stream, data, b"\n" in data)
        return len(data)

    def flush(self) -> None:
        self._buffer.flush()


class OutputStream(io.TextIOBase):
    """A text stream for fd 1 or 2 that never touches WASI."""

    def __init__(self, buffer: OutputBuffer, stream: int, name: str) -> None:
        super().__init__()
        self._buffer = buffer
        self._stream = stream
        self._name = name
        # As python3's: text UTF-8 cannot encode is an error on stdout and
        # escaped on stderr (so that a traceback always gets out).
        self._errors = "strict" if stream == 1 else "backslashreplace"
        self.buffer = _BinaryView(buffer, stream)

    @property
    def name(self) -> str:
        return self._name

    @property
    def encoding(self) -> str:
        return "utf-8"

    @property
    def errors(self) -> str:
        return self._errors

    def fileno(self) -> int:
        return self._stream

    def reconfigure(self, *, encoding: str | None = None, errors: str | None = None,
                    newline: str | None = None, line_buffering: bool | None = None,
                    write_through: bool | None = None) -> None:
        """Only the error handler can change: the stream is UTF-8 and
        flushed at each newline already."""
        if encoding is not None and codecs.lookup(encoding).name != "utf-8":
            raise ValueError(f"{self._name} is UTF-8 in the sandbox; cannot use {encoding}")
        if errors is not None:
            codecs.lookup_error(errors)
            self._errors = errors

    @property
    def line_buffering(self) -> bool:
        return True

    def writable(self) -> bool:
        return True

    def isatty(self) -> bool:
        return False

    def write(self, text: str) -> int:
        if self.closed:
            raise ValueError("I/O operation on closed file.")
        if not isinstance(text, str):
            raise TypeError(f"write() argument must be str, not {type(text).__name__}")
        if len(text) > _PIECE:
            for start in range(0, len(text), _PIECE):
                piece = text[start:start + _PIECE]
                self._buffer.write(self._stream, piece.encode("utf-8", self._errors), True)
            return len(text)
        self._buffer.write(self._stream, text.encode("utf-8", self._errors), "\n" in text)
        return len(text)

    def flush(self) -> None:
        self._buffer.flush()


class InputRaw(io.RawIOBase):
    """The raw stdin: each read asks the host for the local side's next
    bytes (empty at end of input). Output written so far goes out first,
    so a prompt is seen before the read waits."""

    def __init__(self, read: Callable[[int], bytes], before_read: Callable[[], None]) -> None:
        super().__init__()
        self._read = read
        self._before_read = before_read

    def readable(self) -> bool:
        return True

    def isatty(self) -> bool:
        return False

    def fileno(self) -> int:
        return 0

    def readinto(self, buffer) -> int:  # type: ignore[override]
        size = len(buffer)
        if size == 0:
            return 0
        self._before_read()
        data = self._read(size)
        buffer[:len(data)] = data
        return len(data)


def input_stream(read: Callable[[int], bytes], before_read: Callable[[], None]) -> io.TextIOWrapper:
    """`sys.stdin`: text over `InputRaw`, decoded as UTF-8."""
    raw = InputRaw(read, before_read)
    # newline="\n", as python3's stdin: a "\r\n" line keeps its "\r".
    stream = io.TextIOWrapper(io.BufferedReader(raw), encoding="utf-8", errors="strict",
                              newline="\n")
    stream.mode = "r"
    return stream
