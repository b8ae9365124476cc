"""lib0 binary encoding, the variable-length integers and byte strings that Yjs
and y-protocols put on the wire.

:class:`Reader` never reads past its buffer: every malformed input raises
:class:`~crdt.errors.RemoteProtocolError`. Strings are written with their UTF-8
*byte* length (pycrdt's ``Encoder.write_var_string`` writes the character count
and corrupts non-ASCII text, so it is not used).
"""

from __future__ import annotations

import json
from typing import Any

from crdt.errors import RemoteProtocolError

# A varuint longer than this many bytes cannot be a clock, length or client id
# (Yjs uses at most 53-bit integers).
_MAX_VARUINT_BYTES = 8
_MAX_ANY_DEPTH = 64


class Reader:
    """Sequential reader over one message."""

    __slots__ = ("data", "pos")

    def __init__(self, data: bytes, pos: int = 0) -> None:
        self.data = data
        self.pos = pos

    def at_end(self) -> bool:
        return self.pos >= len(self.data)

    def remaining(self) -> int:
        return len(self.data) - self.pos

    def read_u8(self) -> int:
        pos = self.pos
        if pos >= len(self.data):
            raise RemoteProtocolError("unexpected end of message")
        self.pos = pos + 1
        return self.data[pos]

    def read_varuint(self) -> int:
        data = self.data
        pos = self.pos
        end = len(data)
        if pos < end and data[pos] < 0x80:  # one byte: by far the most common case
            self.pos = pos + 1
            return data[pos]
        result = 0
        shift = 0
        for _ in range(_MAX_VARUINT_BYTES):
            if pos >= end:
                raise RemoteProtocolError("unexpected end of message in an integer")
            byte = data[pos]
            pos += 1
            result |= (byte & 0x7F) << shift
            if byte < 0x80:
                self.pos = pos
                return result
            shift += 7
        raise RemoteProtocolError("integer too long")

    def read_varint(self) -> int:
        """lib0 signed varint: first byte holds sign (0x40) and 6 bits."""
        first = self.read_u8()
        negative = bool(first & 0x40)
        result = first & 0x3F
        shift = 6
        byte = first
        count = 1
        while byte & 0x80:
            if count >= _MAX_VARUINT_BYTES:
                raise RemoteProtocolError("integer too long")
            byte = self.read_u8()
            result |= (byte & 0x7F) << shift
            shift += 7
            count += 1
        return -result if negative else result

    def read_bytes(self, n: int) -> bytes:
        if n < 0 or n > len(self.data) - self.pos:
            raise RemoteProtocolError("length runs past the end of the message")
        start = self.pos
        self.pos = start + n
        return bytes(self.data[start : start + n])

    def skip(self, n: int) -> None:
        if n < 0 or n > len(self.data) - self.pos:
            raise RemoteProtocolError("length runs past the end of the message")
        self.pos += n

    def read_var_bytes(self) -> bytes:
        return self.read_bytes(self.read_varuint())

    def skip_var_bytes(self) -> None:
        self.skip(self.read_varuint())

    def read_var_string(self) -> str:
        raw = self.read_var_bytes()
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise RemoteProtocolError("string is not valid UTF-8") from exc

    def read_json(self) -> Any:
        return parse_json(self.read_var_string())

    def skip_any(self, depth: int = 0) -> None:
        """Skip one lib0 ``Any`` value (the encoding of Yjs ``ContentAny``)."""
        if depth > _MAX_ANY_DEPTH:
            raise RemoteProtocolError("value nested too deeply")
        tag = self.read_u8()
        if tag in (127, 126, 121, 120):  # undefined, null, false, true
            return
        if tag == 125:  # varint
            self.read_varint()
        elif tag == 124:  # float32
            self.skip(4)
        elif tag in (123, 122):  # float64, bigint64
            self.skip(8)
        elif tag == 119:  # string
            self.read_var_string()
        elif tag == 118:  # object
            for _ in range(self.read_count()):
                self.read_var_string()
                self.skip_any(depth + 1)
        elif tag == 117:  # array
            for _ in range(self.read_count()):
                self.skip_any(depth + 1)
        elif tag == 116:  # Uint8Array
            self.skip_var_bytes()
        else:
            raise RemoteProtocolError(f"unknown value tag {tag}")

    def read_count(self) -> int:
        """A number of following elements; each takes at least one byte, so a
        count larger than what remains is a lie and is refused up front."""
        n = self.read_varuint()
        if n > self.remaining():
            raise RemoteProtocolError("element count larger than the message")
        return n


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def parse_json(text: str) -> Any:
    """Strict JSON, as browsers' JSON.parse reads it: no NaN or Infinity."""
    try:
        return json.loads(text, parse_constant=_refuse_constant)
    except (ValueError, RecursionError) as exc:
        raise RemoteProtocolError("invalid JSON in message") from exc


class Writer:
    """Append-only byte builder."""

    __slots__ = ("buf",)

    def __init__(self) -> None:
        self.buf = bytearray()

    def write_u8(self, value: int) -> None:
        self.buf.append(value)

    def write_varuint(self, value: int) -> None:
        write_varuint(self.buf, value)

    def write_bytes(self, data: bytes) -> None:
        self.buf += data

    def write_var_bytes(self, data: bytes) -> None:
        write_varuint(self.buf, len(data))
        self.buf += data

    def write_var_string(self, text: str) -> None:
        self.write_var_bytes(text.encode("utf-8"))

    def to_bytes(self) -> bytes:
        return bytes(self.buf)


def write_varuint(buf: bytearray, value: int) -> None:
    if value < 0:
        raise ValueError("varuint must not be negative")
    while value > 0x7F:
        buf.append(0x80 | (value & 0x7F))
        value >>= 7
    buf.append(value)


def encode_varuint(value: int) -> bytes:
    buf = bytearray()
    write_varuint(buf, value)
    return bytes(buf)
