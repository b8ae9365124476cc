"""The y-websocket message codec (crdt/ywire.py): round trips, interop with
pycrdt's own y-protocols helpers, and refusal of malformed frames."""

from __future__ import annotations

import contextlib
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pycrdt import Awareness as PycrdtAwareness
from pycrdt import Doc, Text, create_awareness_message, create_sync_message, create_update_message

from crdt import ywire
from crdt.errors import RemoteProtocolError
from crdt.lib0 import Reader, Writer


def _update() -> bytes:
    doc = Doc(client_id=3)
    doc.get("content", type=Text).insert(0, "héllo 😀")
    return doc.get_update()


UPDATE = _update()
ENTRIES = (
    ywire.AwarenessEntry(1, 0, '{"user":{"name":"Zoë 😀","color":"#f00"}}'),
    ywire.AwarenessEntry(2**32 - 1, 17, "null"),
    ywire.AwarenessEntry(7, 3, "{}"),
)
ROUND_TRIPS = {
    "step1": (ywire.encode_sync_step1(b"\x01\x03\x0b"), ywire.SyncStep1(b"\x01\x03\x0b")),
    "step2": (ywire.encode_sync_step2(UPDATE), ywire.SyncStep2(UPDATE)),
    "update": (ywire.encode_sync_update(UPDATE), ywire.SyncUpdate(UPDATE)),
    "empty-update": (ywire.encode_sync_update(b"\x00\x00"), ywire.SyncUpdate(b"\x00\x00")),
    "awareness": (ywire.encode_awareness(ENTRIES), ywire.Awareness(ENTRIES)),
    "awareness-empty": (ywire.encode_awareness([]), ywire.Awareness(())),
    "query-awareness": (ywire.encode_query_awareness(), ywire.QueryAwareness()),
}


@pytest.mark.parametrize(("frame", "message"), ROUND_TRIPS.values(), ids=ROUND_TRIPS.keys())
def test_every_message_round_trips(frame: bytes, message: ywire.Message) -> None:
    assert ywire.decode_message(frame) == message


def test_frames_follow_the_y_protocols_layout() -> None:
    assert ywire.encode_sync_step1(b"\x00") == b"\x00\x00\x01\x00"
    assert ywire.encode_sync_step2(b"\x00\x00") == b"\x00\x01\x02\x00\x00"
    assert ywire.encode_sync_update(b"\x00\x00") == b"\x00\x02\x02\x00\x00"
    assert ywire.encode_query_awareness() == b"\x03"
    entry = ywire.AwarenessEntry(5, 2, '{"a":"é"}')
    inner = b"\x01\x05\x02" + bytes([len('{"a":"é"}'.encode())]) + '{"a":"é"}'.encode()
    assert ywire.encode_awareness([entry]) == b"\x01" + bytes([len(inner)]) + inner


@pytest.mark.parametrize("count", [0, 1, 127, 128, 2**32])
def test_saved_carries_the_count_as_a_varuint(count: int) -> None:
    r = Reader(ywire.encode_saved(count))
    assert r.read_varuint() == ywire.MESSAGE_SAVED
    assert r.read_varuint() == count
    assert r.at_end()


def test_decodes_what_pycrdt_sends() -> None:
    doc = Doc(client_id=3)
    doc.get("content", type=Text).insert(0, "hé")
    assert ywire.decode_message(create_sync_message(doc)) == ywire.SyncStep1(doc.get_state())
    assert ywire.decode_message(create_update_message(UPDATE)) == ywire.SyncUpdate(UPDATE)
    awareness = PycrdtAwareness(doc)
    awareness.set_local_state({"user": {"name": "Zoë"}})
    frame = create_awareness_message(awareness.encode_awareness_update([doc.client_id]))
    message = ywire.decode_message(frame)
    assert isinstance(message, ywire.Awareness)
    (entry,) = message.entries
    assert entry.client == doc.client_id
    assert json.loads(entry.state) == {"user": {"name": "Zoë"}}


def test_pycrdt_reads_our_awareness() -> None:
    frame = ywire.encode_awareness([ywire.AwarenessEntry(42, 1, '{"user":{"name":"Zoë 😀"}}')])
    r = Reader(frame)
    assert r.read_varuint() == ywire.MESSAGE_AWARENESS
    awareness = PycrdtAwareness(Doc(client_id=3))
    awareness.apply_awareness_update(r.read_var_bytes(), origin="test")
    assert awareness.states[42] == {"user": {"name": "Zoë 😀"}}


def test_removal_entries() -> None:
    assert ywire.AwarenessEntry(1, 2, "null").is_removal
    assert not ywire.AwarenessEntry(1, 2, "{}").is_removal


def _frame(*parts: int | bytes) -> bytes:
    w = Writer()
    for part in parts:
        if isinstance(part, int):
            w.write_varuint(part)
        else:
            w.write_var_bytes(part)
    return w.to_bytes()


def _awareness_payload(*states: str) -> bytes:
    w = Writer()
    w.write_varuint(len(states))
    for client, state in enumerate(states, start=1):
        w.write_varuint(client)
        w.write_varuint(1)
        w.write_var_string(state)
    return w.to_bytes()


MALFORMED = {
    "empty": b"",
    "auth": _frame(ywire.MESSAGE_AUTH, b"permission denied"),
    "unknown-type": _frame(4),
    "saved-from-browser": ywire.encode_saved(3),
    "unknown-type-huge": _frame(2**40),
    "unknown-sync-subtype": _frame(ywire.MESSAGE_SYNC, 3, b"\x00"),
    "sync-without-payload": _frame(ywire.MESSAGE_SYNC, ywire.SYNC_UPDATE),
    "payload-longer-than-frame": b"\x00\x02\x09\x00\x00",
    "trailing-after-query": ywire.encode_query_awareness() + b"\x00",
    "trailing-after-step1": ywire.encode_sync_step1(b"\x00") + b"\x00",
    "trailing-after-update": ywire.encode_sync_update(UPDATE) + b"\x01",
    "trailing-after-awareness": ywire.encode_awareness(ENTRIES) + b"\x00",
    "trailing-inside-awareness": _frame(ywire.MESSAGE_AWARENESS, _awareness_payload("{}") + b"\x00"),
    "awareness-not-json": _frame(ywire.MESSAGE_AWARENESS, _awareness_payload("{}", "{name: 1}")),
    "awareness-empty-state": _frame(ywire.MESSAGE_AWARENESS, _awareness_payload("")),
    # Python's json accepts these; JSON.parse in every browser the state is relayed to throws.
    "awareness-nan": _frame(ywire.MESSAGE_AWARENESS, _awareness_payload("NaN")),
    "awareness-infinity": _frame(ywire.MESSAGE_AWARENESS, _awareness_payload('{"cursor": -Infinity}')),
    "awareness-not-utf8": _frame(ywire.MESSAGE_AWARENESS, b"\x01\x01\x01\x02\xff\xfe"),
    "awareness-count-lies": _frame(ywire.MESSAGE_AWARENESS, b"\x7f\x01\x01\x02{}"),
}


@pytest.mark.parametrize("frame", MALFORMED.values(), ids=MALFORMED.keys())
def test_malformed_frames_are_remote_errors(frame: bytes) -> None:
    with pytest.raises(RemoteProtocolError):
        ywire.decode_message(frame)


@pytest.mark.parametrize("frame", [f for f, _ in ROUND_TRIPS.values()], ids=ROUND_TRIPS.keys())
def test_every_truncation_is_a_remote_error(frame: bytes) -> None:
    for cut in range(len(frame)):
        with pytest.raises(RemoteProtocolError):
            ywire.decode_message(frame[:cut])


HEADERS = st.sampled_from([b"", b"\x00\x00", b"\x00\x01", b"\x00\x02", b"\x01", b"\x03"])


@given(st.tuples(HEADERS, st.binary(max_size=100)).map(b"".join))
@settings(max_examples=2_000, deadline=None, database=None)
def test_random_frames_give_a_message_or_a_remote_error(frame: bytes) -> None:
    with contextlib.suppress(RemoteProtocolError):
        ywire.decode_message(frame)


@given(
    st.lists(
        st.builds(
            ywire.AwarenessEntry,
            st.integers(0, 2**53 - 1),
            st.integers(0, 2**53 - 1),
            st.one_of(st.just("null"), st.dictionaries(st.text(), st.text() | st.integers()).map(json.dumps)),
        ),
        max_size=5,
    )
)
@settings(max_examples=100, deadline=None, database=None)
def test_awareness_round_trips(entries: list[ywire.AwarenessEntry]) -> None:
    assert ywire.decode_message(ywire.encode_awareness(entries)) == ywire.Awareness(tuple(entries))


@settings(max_examples=2000, deadline=None)
def _sync_frame(sub: int, payload: bytes, extra: bytes) -> bytes:
    w = Writer()
    w.write_varuint(0)
    w.write_varuint(sub)
    w.write_var_bytes(payload)
    return w.to_bytes() + extra


@given(
    st.one_of(
        st.binary(max_size=40),
        st.builds(_sync_frame, st.integers(0, 3), st.binary(max_size=200), st.binary(max_size=2)),
    )
)
def test_update_of_agrees_with_decode_message(frame: bytes) -> None:
    """The fast path for keystroke frames reads exactly what decode_message reads."""
    fast = ywire.update_of(frame)
    try:
        message = ywire.decode_message(frame)
    except RemoteProtocolError:
        assert fast is None
        return
    if fast is not None:
        assert isinstance(message, (ywire.SyncUpdate, ywire.SyncStep2))
        assert message.update == fast
    elif isinstance(message, (ywire.SyncUpdate, ywire.SyncStep2)):
        assert len(message.update) >= 0x80  # long frames take the general path
