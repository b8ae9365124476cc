"""The Yjs v1 update reader (crdt/yupdate.py) against real pycrdt output.

pycrdt is the oracle: every transaction event carries the state vectors
before and after it and its own delete set, so what ``parse_update`` reports
can be checked against what Yrs itself says the update holds."""

from __future__ import annotations

import contextlib
import random
from dataclasses import dataclass

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pycrdt import Array, Doc, Map, Text, TransactionEvent, XmlElement, XmlFragment, XmlText, merge_updates

from crdt.errors import RemoteProtocolError
from crdt.lib0 import Reader, Writer
from crdt.yupdate import (
    DeleteRanges,
    StateVector,
    decode_state_vector,
    delete_set_of,
    encode_state_vector,
    parse_update,
)

FUZZ = settings(max_examples=3_000, deadline=None, database=None)


@dataclass
class Captured:
    update: bytes
    before: StateVector
    after: StateVector
    deletes: DeleteRanges


def _decode_delete_set(data: bytes) -> DeleteRanges:
    """pycrdt's own encoding of a transaction's delete set (the oracle)."""
    r = Reader(data)
    out: DeleteRanges = []
    for _ in range(r.read_varuint()):
        client = r.read_varuint()
        for _ in range(r.read_varuint()):
            out.append((client, r.read_varuint(), r.read_varuint()))
    return sorted(out)


def record(doc: Doc, log: list[Captured]) -> None:
    def capture(event: TransactionEvent) -> None:
        log.append(
            Captured(
                bytes(event.update),
                decode_state_vector(event.before_state),
                decode_state_vector(event.after_state),
                _decode_delete_set(event.delete_set),
            )
        )

    doc.observe(capture)


def text_session(seed: int, writers: int = 3, steps: int = 150) -> tuple[list[Doc], list[Captured]]:
    """Concurrent writers editing one Text with non-ASCII and non-BMP text,
    syncing now and then. Positions given to pycrdt count UTF-8 bytes, so
    they are computed from the Python string."""
    rnd = random.Random(seed)
    docs = [Doc(client_id=1_000 + i) for i in range(writers)]
    log: list[Captured] = []
    for doc in docs:
        doc.get("content", type=Text)
        record(doc, log)
    for _ in range(steps):
        text = rnd.choice(docs).get("content", type=Text)
        current = str(text)
        if current and rnd.random() < 0.35:
            i = rnd.randrange(len(current))
            j = min(len(current), i + rnd.randint(1, 3))
            del text[len(current[:i].encode()) : len(current[:j].encode())]
        else:
            i = rnd.randint(0, len(current))
            text.insert(len(current[:i].encode()), rnd.choice(["x", "é", "😀", "漢字", "ab"]))
        if rnd.random() < 0.15:
            a, b = rnd.sample(docs, 2)
            b.apply_update(a.get_update(b.get_state()))
    return docs, log


def expected_ranges(before: StateVector, after: StateVector) -> dict[int, tuple[int, int]]:
    return {c: (before.get(c, 0), k) for c, k in after.items() if k > before.get(c, 0)}


def utf16_units(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


# -- ranges, needs and deletes against pycrdt ---------------------------------


@pytest.mark.parametrize("seed", range(4))
def test_every_transaction_parses_to_its_state_vector_delta_and_delete_set(seed: int) -> None:
    _, log = text_session(seed)
    assert any(c.deletes for c in log) and any(len(expected_ranges(c.before, c.after)) > 1 for c in log)
    for captured in log:
        info = parse_update(captured.update)
        assert info.ranges == expected_ranges(captured.before, captured.after)
        assert sorted(info.deletes) == captured.deletes
        # The gate must never ask for more than the author had.
        assert info.is_ready(captured.before)


@pytest.mark.parametrize("seed", range(3))
def test_diffs_against_any_state_vector_cover_exactly_the_missing_clocks(seed: int) -> None:
    docs, log = text_session(seed)
    source = docs[0]
    full = decode_state_vector(source.get_state())
    remotes = [{}, *(c.before for c in log[:: max(1, len(log) // 10)])]
    for remote in remotes:
        known = {c: min(k, full.get(c, 0)) for c, k in remote.items()}
        update = source.get_update(encode_state_vector(known))
        info = parse_update(update)
        assert info.ranges == expected_ranges(known, full)
        assert info.is_ready(known)


def test_non_bmp_text_is_counted_in_utf16_units_like_pycrdt_clocks() -> None:
    doc = Doc(client_id=5)
    log: list[Captured] = []
    record(doc, log)
    text = doc.get("content", type=Text)
    pieces = ["a😀b", "😀😀", "𝄞 music", "é", "漢字", "a\u0301", "👩‍👩‍👧"]
    for piece in pieces:
        text.insert(len(str(text).encode()), piece)
    clock = 0
    for piece, captured in zip(pieces, log, strict=True):
        assert parse_update(captured.update).ranges == {5: (clock, clock + utf16_units(piece))}
        clock += utf16_units(piece)
    assert decode_state_vector(doc.get_state()) == {5: clock}
    assert parse_update(doc.get_update()).ranges == {5: (0, clock)}


def test_deleting_an_emoji_deletes_two_clock_ticks() -> None:
    doc = Doc(client_id=5)
    log: list[Captured] = []
    record(doc, log)
    text = doc.get("content", type=Text)
    text.insert(0, "a😀b")
    del text[1:5]  # the emoji: four UTF-8 bytes in pycrdt positions
    assert str(text) == "ab"
    info = parse_update(log[-1].update)
    assert info.ranges == {}
    assert info.deletes == [(5, 1, 2)]
    assert info.needs == {5: 3}
    assert delete_set_of(doc.get_update()) == [(5, 1, 2)]


def test_deletes_of_another_clients_items_need_those_items() -> None:
    a, b = Doc(client_id=1), Doc(client_id=2)
    a.get("content", type=Text).insert(0, "abcdef")
    b.apply_update(a.get_update())
    log: list[Captured] = []
    record(b, log)
    del b.get("content", type=Text)[1:3]
    info = parse_update(log[-1].update)
    assert info.ranges == {}
    assert info.deletes == [(1, 1, 2)]
    assert info.needs == {1: 3}
    assert not info.is_ready({1: 2})
    assert info.is_ready({1: 3})
    assert not info.is_known({1: 6})  # a delete set can add information


def test_maps_arrays_nested_and_xml_types_parse() -> None:
    a, b = Doc(client_id=1), Doc(client_id=2)
    log: list[Captured] = []
    record(a, log)
    record(b, log)
    m = a.get("m", type=Map)
    m["int"] = 1
    m["float"] = 1.5
    m["bool"] = True
    m["none"] = None
    m["str"] = "héllo 😀"
    m["bytes"] = b"\x00\xff"
    m["big"] = 2**62 + 1
    m["nested"] = [1, [2, {"a": 3, "b": [None, "x"]}], {"deep": {"er": b"\x01"}}]
    m["text"] = Text("inner")
    m["array"] = Array([1, Map({"k": "v"}), Text("t")])
    arr = a.get("arr", type=Array)
    arr.extend([1, 2, 3])
    content = a.get("content", type=Text)
    content.insert(0, "bold", attrs={"bold": True})
    content.insert_embed(0, {"image": "x.png"})
    content.format(0, 2, {"italic": True})
    xml = a.get("xml", type=XmlFragment)
    xml.children.append(XmlElement("p", {"class": "c"}, [XmlText("hey")]))
    m["sub"] = Doc()
    del m["int"]
    arr.pop(0)
    b.apply_update(a.get_update())
    # b writes into a type that a created: its update points at a's items
    nested = b.get("m", type=Map)["text"]
    before = decode_state_vector(b.get_state())
    nested.insert(0, "B")
    assert len(log) > 15
    for captured in log:
        info = parse_update(captured.update)
        assert info.ranges == expected_ranges(captured.before, captured.after)
        assert sorted(info.deletes) == captured.deletes
        assert info.is_ready(captured.before)
    last = parse_update(log[-1].update)
    assert last.ranges == {2: (0, 1)}
    assert 1 in last.needs and last.needs[1] <= before[1]
    for doc in (a, b):
        whole = parse_update(doc.get_update())
        assert whole.ranges == expected_ranges({}, decode_state_vector(doc.get_state()))


def test_array_of_any_values_spans_one_tick_per_value() -> None:
    doc = Doc(client_id=3)
    log: list[Captured] = []
    record(doc, log)
    doc.get("arr", type=Array).extend([1, "two", None, 4.5, [5], {"six": 6}, b"7"])
    assert parse_update(log[-1].update).ranges == {3: (0, 7)}


def _item(client: int, info: int, body: bytes, clock: int = 0) -> bytes:
    """A one-struct update of *client* whose parent is the root type ``m``."""
    w = Writer()
    for value in (1, 1, client, clock):
        w.write_varuint(value)
    w.write_u8(info)
    w.write_varuint(1)
    w.write_var_string("m")
    w.write_bytes(body)
    w.write_varuint(0)  # no delete set
    return w.to_bytes()


def test_content_binary_parses_and_pycrdt_agrees() -> None:
    key = Writer()
    key.write_var_string("bin")
    key.write_var_bytes(b"\x03\xff\x00")
    update = _item(9, 0x20 | 3, key.to_bytes())
    info = parse_update(update)
    assert info.ranges == {9: (0, 1)} and info.needs == {} and info.deletes == []
    doc = Doc()
    doc.apply_update(update)
    assert bytes(doc.get("m", type=Map)["bin"]) == b"\x03\xff\x00"


def test_gc_and_deleted_content_advance_the_clock() -> None:
    gc = bytes([1, 2, 9, 0, 0, 3, 1]) + b"\x01\x01m\x04" + b"\x00"
    info = parse_update(gc)
    assert info.ranges == {9: (0, 7)}
    replica = Doc()
    replica.apply_update(gc)
    assert decode_state_vector(replica.get_state()) == {9: 7}
    doc = Doc(client_id=4)
    text = doc.get("content", type=Text)
    text.insert(0, "abcdef")
    del text[1:4]
    whole = parse_update(doc.get_update())  # deleted items travel as ContentDeleted
    assert whole.ranges == {4: (0, 6)}
    assert whole.deletes == [(4, 1, 3)]
    assert whole.needs == {}


def test_skip_structs_from_merged_updates_need_what_was_skipped() -> None:
    doc = Doc(client_id=5)
    log: list[Captured] = []
    record(doc, log)
    text = doc.get("content", type=Text)
    text.insert(0, "ab")
    text.insert(2, "cd")
    text.insert(4, "ef")
    merged = merge_updates(log[0].update, log[2].update)
    info = parse_update(merged)
    assert info.ranges == {5: (0, 6)}
    assert info.needs == {5: 4}
    assert not info.is_ready({5: 2})
    assert info.is_ready({5: 4})


# -- state vectors and delete sets --------------------------------------------


def test_state_vectors_decode_pycrdt_and_encode_canonically() -> None:
    docs, _ = text_session(11)
    sv = decode_state_vector(docs[0].get_state())
    assert sv and set(sv) <= {1_000, 1_001, 1_002}
    canonical = encode_state_vector(sv)
    assert decode_state_vector(canonical) == sv
    assert canonical == encode_state_vector(dict(reversed(list(sv.items()))))
    assert encode_state_vector({3: 1, 1: 0, 2: 5}) == bytes([2, 2, 5, 3, 1])
    assert encode_state_vector({}) == b"\x00"


@pytest.mark.parametrize("data", [b"", b"\x01", b"\x01\x05", b"\x00\x00", b"\x02\x01\x01"])
def test_malformed_state_vectors_are_remote_errors(data: bytes) -> None:
    with pytest.raises(RemoteProtocolError):
        decode_state_vector(data)


@given(st.binary(max_size=40))
@settings(max_examples=1_000, deadline=None, database=None)
def test_state_vector_garbage_gives_remote_errors_only(data: bytes) -> None:
    with contextlib.suppress(RemoteProtocolError):
        decode_state_vector(data)


def test_delete_set_of_sorts_and_merges_ranges() -> None:
    w = Writer()
    w.write_varuint(0)  # no structs
    w.write_varuint(2)
    for client, ranges in ((7, [(5, 2), (0, 5), (9, 1)]), (3, [(4, 4), (2, 3)])):
        w.write_varuint(client)
        w.write_varuint(len(ranges))
        for clock, length in ranges:
            w.write_varuint(clock)
            w.write_varuint(length)
    assert delete_set_of(w.to_bytes()) == [(3, 2, 6), (7, 0, 7), (7, 9, 1)]


@pytest.mark.parametrize("seed", range(2))
def test_delete_set_of_whole_document_equals_union_of_transaction_delete_sets(seed: int) -> None:
    docs, log = text_session(seed)
    for doc in docs:
        doc.apply_update(merge_updates(*(d.get_update() for d in docs)))
    deleted = {(c, k) for captured in log for c, start, n in captured.deletes for k in range(start, start + n)}
    for doc in docs:
        ours = {(c, k) for c, start, n in delete_set_of(doc.get_update()) for k in range(start, start + n)}
        assert ours == deleted


# -- untrusted bytes ----------------------------------------------------------


def _sample_updates() -> list[bytes]:
    docs, log = text_session(3, steps=40)
    doc = Doc(client_id=77)
    m = doc.get("m", type=Map)
    m["v"] = [1, {"a": b"x"}, "😀"]
    m["t"] = Text("t😀")
    return [c.update for c in log[:20]] + [d.get_update() for d in docs] + [doc.get_update()]


SAMPLES = _sample_updates()


def test_every_truncation_of_a_valid_update_is_a_remote_error() -> None:
    for update in SAMPLES:
        parse_update(update)
        for cut in range(len(update)):
            with pytest.raises(RemoteProtocolError):
                parse_update(update[:cut])


def test_trailing_bytes_are_a_remote_error() -> None:
    for update in SAMPLES:
        with pytest.raises(RemoteProtocolError):
            parse_update(update + b"\x00")


@pytest.mark.parametrize(
    "update",
    [
        bytes([2, 1, 9, 0, 0, 1, 1, 9, 1, 0, 1, 0]),  # client 9 twice
        bytes([1, 0, 9, 0, 0]),  # zero structs
        bytes([1, 1, 9, 0, 0, 0, 0]),  # GC of length zero
        bytes([1, 1, 9, 0, 10, 0, 0]),  # Skip of length zero
        bytes([0, 1, 9, 1, 0, 0]),  # empty delete range
        bytes([1, 1, 9, 0, 11, 1]),  # unknown content kind
        bytes([1, 1, 9, 0, 31, 1]),  # unknown content kind
        bytes([1, 1, 9, 0, 7, 1, 1]) + b"m" + bytes([7, 0]),  # unknown shared type
        bytes([1, 1, 9, 0, 4, 1, 1]) + b"m" + bytes([0, 0]),  # string of zero length
    ],
)
def test_malformed_updates_are_remote_errors(update: bytes) -> None:
    with pytest.raises(RemoteProtocolError):
        parse_update(update)


@pytest.mark.parametrize(
    ("kind", "body"),
    [
        (5, b"\x01{"),  # ContentEmbed: one JSON value
        (6, b"\x01k\x05{oops"),  # ContentFormat: key, JSON value
    ],
    ids=["embed", "format"],
)
def test_json_carried_by_an_update_must_be_json(kind: int, body: bytes) -> None:
    """The module promises that anything not well-formed is refused before
    pycrdt sees it; Yjs and pycrdt both fail on these while reading."""
    update = _item(9, kind, body)
    with pytest.raises(ValueError, match="JSON"):
        Doc().apply_update(update)
    with pytest.raises(RemoteProtocolError):
        parse_update(update)


@given(st.binary(max_size=200))
@FUZZ
def test_random_bytes_give_an_update_or_a_remote_error(data: bytes) -> None:
    with contextlib.suppress(RemoteProtocolError):
        parse_update(data)


def test_mutated_updates_give_an_update_or_a_remote_error() -> None:
    """Random garbage rarely gets past the first bytes; mutations of real
    updates reach every branch of the reader."""
    rnd = random.Random(0)
    accepted = 0
    for _ in range(5_000):
        data = bytearray(rnd.choice(SAMPLES))
        for _ in range(rnd.randint(1, 3)):
            position = rnd.randrange(len(data))
            roll = rnd.random()
            if roll < 0.7:
                data[position] = rnd.randrange(256)
            elif roll < 0.85:
                del data[position]
            else:
                data.insert(position, rnd.randrange(256))
        try:
            info = parse_update(bytes(data))
        except RemoteProtocolError:
            continue
        accepted += 1
        assert all(start < end for start, end in info.ranges.values())
    assert accepted > 100  # the mutations did reach past the header
