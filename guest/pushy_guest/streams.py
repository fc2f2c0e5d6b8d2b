"""sys.stdout and sys.stderr that forward to the host, in order.

Both streams share one pending buffer, so output reaches the host in the
order it was written; it is flushed at each newline (live output), when the
other stream is written to, when it grows past a threshold, and at the end
of every operation.
"""

from __future__ import annotations

import io
from typing import Callable

_FLUSH_AT = 8192


class OutputBuffer:
    def __init__(self, emit: Callable[[int, bytes], None]) -> None:
        self._emit = emit
        self._stream = 0
        # Written but not yet emitted; empty between operations.
        self.chunks: list[bytes] = []
        self._size = 0

    def write(self, stream: int, data: bytes, newline: bool) -> None:
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
        self.buffer = _BinaryView(buffer, stream)

    @property
    def name(self) -> str:
        return self._name

    @property
    def encoding(self) -> str:
        return "utf-8"

    @property
    def errors(self) -> str:
        return "backslashreplace"

    @property
    def line_buffering(self) -> bool:
        return True

    def writable(self) -> bool:
        return True

    def isatty(self) -> bool:
        return False

    def write(self, text: str) -> int:
        if not isinstance(text, str):
            raise TypeError(f"write() argument must be str, not {type(text).__name__}")
        self._buffer.write(self._stream, text.encode("utf-8", "backslashreplace"), "\n" in text)
        return len(text)

    def flush(self) -> None:
        self._buffer.flush()
