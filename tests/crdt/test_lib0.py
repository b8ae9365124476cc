"""lib0 encoding (crdt/lib0.py): varints, byte strings, JSON and skipping
``Any`` values, checked against pycrdt's encoder and the lib0 reference
layout. Whatever bytes a Reader is given, it answers with values or
RemoteProtocolError, never anything else."""

from __future__ import annotations

import contextlib
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pycrdt import Encoder

from crdt.errors import RemoteProtocolError
from crdt.lib0 import Reader, Writer, encode_varuint

FUZZ = settings(max_examples=2_000, deadline=None, database=None)


@given(st.integers(min_value=0, max_value=2**53 - 1))
@settings(max_examples=500, deadline=None, database=None)
def test_varuint_round_trips_and_matches_pycrdt(value: int) -> None:
    w = Writer()
    w.write_varuint(value)
    data = w.to_bytes()
    reference = Encoder()
    reference.write_var_uint(value)
    assert data == reference.to_bytes() == encode_varuint(value)
    r = Reader(data)
    assert r.read_varuint() == value
    assert r.at_end()


def test_varuint_refuses_negative_values() -> None:
    with pytest.raises(ValueError):
        encode_varuint(-1)


@pytest.mark.parametrize(
    "data",
    [b"", b"\x80", b"\xff\xff", b"\x80" * 8 + b"\x01", b"\xff" * 20],
    ids=["empty", "unfinished", "unfinished-2", "nine-bytes", "endless"],
)
def test_malformed_varuint_is_a_remote_error(data: bytes) -> None:
    with pytest.raises(RemoteProtocolError):
        Reader(data).read_varuint()


@pytest.mark.parametrize(
    ("data", "value"),
    [
        (b"\x00", 0),
        (b"\x3f", 63),
        (b"\x41", -1),
        (b"\x7f", -63),
        (b"\x80\x01", 64),
        (b"\xc0\x01", -64),
        (b"\xbf\x7f", 8191),
    ],
)
def test_signed_varint_follows_lib0_layout(data: bytes, value: int) -> None:
    r = Reader(data)
    assert r.read_varint() == value
    assert r.at_end()


@pytest.mark.parametrize("data", [b"", b"\x80", b"\xc0\x80", b"\xff" * 12])
def test_malformed_varint_is_a_remote_error(data: bytes) -> None:
    with pytest.raises(RemoteProtocolError):
        Reader(data).read_varint()


@pytest.mark.parametrize("text", ["", "plain", "héllo 😀", "漢字", "a\u0301", "\x00nul"])
def test_strings_carry_their_utf8_byte_length(text: str) -> None:
    w = Writer()
    w.write_var_string(text)
    data = w.to_bytes()
    encoded = text.encode("utf-8")
    assert data == encode_varuint(len(encoded)) + encoded
    r = Reader(data)
    assert r.read_var_string() == text
    assert r.at_end()


@pytest.mark.parametrize(
    "data",
    [b"\x02\xc3", b"\x05abc", b"\x02\xff\xfe", b"\x03\xed\xa0\x80"],
    ids=["cut-in-char", "short", "not-utf8", "surrogate"],
)
def test_bad_strings_are_remote_errors(data: bytes) -> None:
    with pytest.raises(RemoteProtocolError):
        Reader(data).read_var_string()


def test_read_bytes_never_reads_past_the_end() -> None:
    r = Reader(b"abc")
    with pytest.raises(RemoteProtocolError):
        r.read_bytes(4)
    with pytest.raises(RemoteProtocolError):
        r.read_bytes(-1)
    with pytest.raises(RemoteProtocolError):
        r.skip(4)
    assert r.read_bytes(3) == b"abc"
    with pytest.raises(RemoteProtocolError):
        r.read_u8()


def test_read_json() -> None:
    w = Writer()
    w.write_var_string('{"user": {"name": "é"}}')
    assert Reader(w.to_bytes()).read_json() == {"user": {"name": "é"}}
    bad = Writer()
    bad.write_var_string("{not json")
    with pytest.raises(RemoteProtocolError):
        Reader(bad.to_bytes()).read_json()


def test_count_larger_than_the_message_is_refused_up_front() -> None:
    with pytest.raises(RemoteProtocolError):
        Reader(encode_varuint(10**9) + b"\x00" * 10).read_count()
    assert Reader(b"\x02\x00\x00").read_count() == 2


def _string(text: str) -> bytes:
    w = Writer()
    w.write_var_string(text)
    return w.to_bytes()


ANY_VALUES = {
    "undefined": b"\x7f",
    "null": b"\x7e",
    "integer": b"\x7d" + b"\xc0\x01",
    "float32": b"\x7c" + struct.pack(">f", 1.5),
    "float64": b"\x7b" + struct.pack(">d", 0.1),
    "bigint": b"\x7a" + struct.pack(">q", 2**60),
    "false": b"\x79",
    "true": b"\x78",
    "string": b"\x77" + _string("héllo 😀"),
    "object": b"\x76\x02" + _string("a") + b"\x78" + _string("b") + b"\x75\x01\x7e",
    "array": b"\x75\x03\x7d\x01\x77\x00\x76\x00",
    "bytes": b"\x74\x03abc",
}


@pytest.mark.parametrize("encoded", ANY_VALUES.values(), ids=ANY_VALUES.keys())
def test_skip_any_consumes_exactly_one_value(encoded: bytes) -> None:
    r = Reader(encoded + b"\x99")
    r.skip_any()
    assert r.read_u8() == 0x99
    assert r.at_end()
    for cut in range(len(encoded)):
        with pytest.raises(RemoteProtocolError):
            Reader(encoded[:cut]).skip_any()


@pytest.mark.parametrize("tag", [0, 1, 115, 128, 255])
def test_skip_any_refuses_unknown_tags(tag: int) -> None:
    with pytest.raises(RemoteProtocolError):
        Reader(bytes([tag, 0, 0, 0, 0, 0, 0, 0, 0])).skip_any()


def test_deeply_nested_any_is_a_remote_error_not_a_recursion_error() -> None:
    deep = b"\x75\x01" * 10_000 + b"\x7e"
    with pytest.raises(RemoteProtocolError):
        Reader(deep).skip_any()


@given(st.binary(max_size=64))
@FUZZ
def test_random_bytes_give_values_or_remote_errors(data: bytes) -> None:
    for read in (
        Reader.read_varuint,
        Reader.read_varint,
        Reader.read_var_string,
        Reader.read_json,
        Reader.skip_any,
    ):
        with contextlib.suppress(RemoteProtocolError):
            read(Reader(data))
