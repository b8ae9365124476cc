"""Fuzz target 1: ``crdt.peerwire.decode``, the one door for a peer's bytes.

Invariant: for any bytes, ``decode`` returns a message or raises
``RemoteProtocolError``, nothing else; a message it returns respects every
limit and survives encode → decode unchanged. Valid messages round-trip.
"""

from __future__ import annotations

import meshfuzz as mf
from hypothesis import HealthCheck, currently_in_test_context, given, note, settings
from hypothesis import strategies as st

from crdt import peerwire as pw
from crdt.errors import RemoteProtocolError
from crdt.lib0 import encode_varuint
from crdt.names import is_valid_name

FUZZ = settings(
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def check_decode(frame: bytes) -> pw.Message | None:
    """Decode untrusted bytes; only RemoteProtocolError may escape (anything
    else propagates and fails the test). Check what comes out."""
    if currently_in_test_context():
        note(f"frame = bytes.fromhex({frame.hex()!r})")
    try:
        msg = pw.decode(frame)
    except RemoteProtocolError:
        return None
    check_limits(msg)
    again = pw.decode(pw.encode(msg))
    assert again == msg, f"re-encoding changed the message: {msg!r} -> {again!r}"
    return msg


def check_limits(msg: pw.Message) -> None:
    if isinstance(msg, pw.Hello):
        assert msg.version == pw.VERSION
        assert len(msg.peer_id) == pw.PEER_ID_BYTES
        assert len(msg.listen.encode()) <= pw.MAX_ADDRESS_BYTES
    elif isinstance(msg, pw.Peers):
        assert len(msg.peers) <= pw.MAX_PEERS_PER_MESSAGE
        for peer_id, address in msg.peers:
            assert len(peer_id) == pw.PEER_ID_BYTES
            assert len(address.encode()) <= pw.MAX_ADDRESS_BYTES
    elif isinstance(msg, pw.Digest):
        assert len(msg.root) == pw.HASH_BYTES
    elif isinstance(msg, pw.DocDigests):
        assert len(msg.entries) <= pw.MAX_DIGEST_ENTRIES
        for name, digest in msg.entries:
            assert is_valid_name(name)
            assert len(digest) == pw.HASH_BYTES
    elif isinstance(msg, (pw.SyncStep1, pw.SyncStep2, pw.Update, pw.Awareness)):
        assert is_valid_name(msg.name)
    elif isinstance(msg, pw.Bye):
        assert len(msg.reason.encode()) <= pw.MAX_REASON_BYTES


# 1,200 + 2,000 + 400 + 600 + 500 + 300 = 5,000 cases


@settings(FUZZ, max_examples=1200)
@given(st.binary(max_size=300))
def test_random_bytes(frame):
    check_decode(frame)


@settings(FUZZ, max_examples=2000)
@given(st.binary(max_size=200))
def test_mutated_valid_messages(entropy):
    """Flip, insert, delete, truncate, change the type byte, lie in length
    and count fields of a valid encoding of every message type, and of the
    update, state vector or awareness bytes inside it. (The choices are read
    from hypothesis-drawn bytes: fast, and shrinkable.)"""
    check_decode(mf.gen_peer_frame(mf.ByteRandom(entropy)))


@settings(FUZZ, max_examples=400)
@given(mf.messages(), mf.ops(), st.booleans())
def test_mutated_valid_messages_structured(msg, ops, mutate_inner):
    """The same with hypothesis strategies for the message and the mutations
    (slower to generate, but the failing example is printed field by field)."""
    note(f"msg = {msg!r}\nops = {ops!r}")
    frame = mf.mutate_message(msg, ops if mutate_inner else None, None if mutate_inner else ops)
    check_decode(frame)


@settings(FUZZ, max_examples=600)
@given(st.integers(0, 300), st.binary(max_size=120), st.sampled_from(mf.INTERESTING))
def test_typed_garbage(kind, body, count):
    """A known (or unknown) type, then a count or length, then garbage."""
    check_decode(encode_varuint(kind) + body)
    check_decode(encode_varuint(kind) + encode_varuint(count) + body)


@settings(FUZZ, max_examples=500)
@given(mf.messages())
def test_valid_messages_round_trip(msg):
    frame = pw.encode(msg)
    note(f"frame = {frame.hex()}")
    assert pw.decode(frame) == msg


@settings(FUZZ, max_examples=300)
@given(st.text(max_size=250))
def test_bye_reason_is_cut_to_the_limit_and_decodes(reason):
    msg = pw.decode(pw.encode(pw.Bye(reason)))
    assert isinstance(msg, pw.Bye)
    assert reason.startswith(msg.reason)
    assert len(msg.reason.encode()) <= pw.MAX_REASON_BYTES


def test_oversized_frame_and_limits_at_the_edge():
    big = b"\x09" + b"\x00" * pw.MAX_FRAME_BYTES
    for frame in (
        big,
        # a count one above each limit, then nothing
        bytes([pw.T.PEERS]) + encode_varuint(pw.MAX_PEERS_PER_MESSAGE + 1),
        bytes([pw.T.DOC_DIGESTS]) + encode_varuint(pw.MAX_DIGEST_ENTRIES + 1),
        # a count at the limit that the frame cannot hold
        bytes([pw.T.DOC_DIGESTS]) + encode_varuint(pw.MAX_DIGEST_ENTRIES),
        bytes([pw.T.BYE]) + encode_varuint(pw.MAX_REASON_BYTES + 1) + b"x" * (pw.MAX_REASON_BYTES + 1),
        # a 9-byte varuint
        bytes([pw.T.PING]) + b"\xff" * 8 + b"\x01",
    ):
        assert check_decode(frame) is None
