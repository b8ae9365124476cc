"""Document (crdt/document.py) apart from the causal gate: positional edits
in code points, origins and undo, loading, diffs, and refusing updates that
pycrdt cannot integrate."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pycrdt import Doc, Text, UndoManager

from crdt.document import Document
from crdt.errors import LocalProtocolError, RemoteProtocolError
from crdt.ytext import TEXT_NAME, utf8_offset
from crdt.yupdate import decode_state_vector, encode_state_vector


def replay(updates: list[bytes]) -> str:
    doc = Doc()
    text = doc.get(TEXT_NAME, type=Text)
    for update in updates:
        doc.apply_update(update)
    return str(text)


def authored(text: str, client_id: int = 50) -> Document:
    doc = Document("doc", client_id=client_id)
    doc.edit("author", insert=text)
    return doc


# -- positions count code points ---------------------------------------------


@pytest.mark.parametrize(
    ("start", "at", "delete", "insert"),
    [
        ("héllo 😀", 2, 0, "X"),  # right after the two-byte "é"
        ("héllo 😀", 1, 1, "e"),  # replace "é"
        ("héllo 😀", 6, 1, ""),  # delete the emoji
        ("héllo 😀", 7, 0, "!"),  # append after the emoji
        ("héllo 😀", 6, 0, "🎉"),  # before the emoji
        ("héllo 😀", 0, 7, "漢字"),  # replace everything
        ("a\u0301b", 1, 1, ""),  # a combining accent is its own code point
        ("👩‍👩‍👧 x", 1, 1, ""),  # inside a ZWJ sequence: code points, not graphemes
    ],
)
def test_edit_changes_the_text_where_python_slicing_says(start: str, at: int, delete: int, insert: str) -> None:
    doc = authored(start)
    changes = doc.edit("me", insert=insert, at=at, delete=delete)
    expected = start[:at] + insert + start[at + delete :]
    assert doc.text == expected
    assert len(changes) == 1 and changes[0].origin == "me"
    assert replay([doc.encode_state()]) == expected


ALPHABET = st.sampled_from(["a", "é", "😀", "漢", "\u0301", " ", "𝄞", "\n"])


@given(st.data())
@settings(max_examples=150, deadline=None, database=None)
def test_random_edits_match_a_python_string(data: st.DataObject) -> None:
    model = data.draw(st.lists(ALPHABET, max_size=8).map("".join))
    doc = authored(model)
    updates = [doc.encode_state()]
    for _ in range(data.draw(st.integers(1, 6))):
        at = data.draw(st.integers(0, len(model)))
        delete = data.draw(st.integers(0, len(model) - at))
        insert = data.draw(st.lists(ALPHABET, max_size=4).map("".join))
        changes = doc.edit("me", insert=insert, at=at, delete=delete)
        model = model[:at] + insert + model[at + delete :]
        assert doc.text == model
        updates.extend(c.update for c in changes)
    assert replay(updates) == model


def test_utf8_offset() -> None:
    assert [utf8_offset("héllo 😀", i) for i in range(8)] == [0, 1, 3, 4, 5, 6, 7, 11]


@pytest.mark.parametrize(("at", "delete"), [(-1, 0), (6, 0), (0, 6), (5, 1), (0, -1)])
def test_edits_outside_the_text_are_local_errors(at: int, delete: int) -> None:
    doc = authored("héllo")
    with pytest.raises(LocalProtocolError):
        doc.edit("me", insert="x", at=at, delete=delete)
    assert doc.text == "héllo"


def test_an_empty_edit_changes_nothing() -> None:
    doc = authored("abc")
    assert doc.edit("me") == []
    assert doc.text == "abc"


@pytest.mark.parametrize("client_id", [0, -1, 2**32])
def test_client_ids_must_be_positive_32_bit(client_id: int) -> None:
    with pytest.raises(LocalProtocolError):
        Document("doc", client_id=client_id)


# -- origins and undo ----------------------------------------------------------


def test_undo_reverts_local_edits_but_never_received_ones() -> None:
    remote = authored("remote ", client_id=1)
    replica = Document("doc", client_id=2)
    # UndoManager needs the pycrdt Text itself; Document keeps it private.
    undo = UndoManager(scopes=[replica._text], capture_timeout_millis=0)
    undo.include_origin("local")
    replica.edit("local", insert="mine")
    changes = replica.receive(remote.encode_state(), origin=7)
    assert [c.origin for c in changes] == [7]
    assert "remote " in replica.text and "mine" in replica.text
    assert undo.undo()
    assert replica.text == "remote "
    assert not undo.undo()
    assert replica.text == "remote "


def test_a_default_undo_manager_sees_nothing_received() -> None:
    remote = authored("remote", client_id=1)
    replica = Document("doc", client_id=2)
    undo = UndoManager(scopes=[replica._text], capture_timeout_millis=0)
    replica.receive(remote.encode_state(), origin=7)
    assert not undo.can_undo()
    assert not undo.undo()
    assert replica.text == "remote"


def test_control_pycrdt_undoes_updates_applied_without_origin() -> None:
    """Why the origin matters (hazard 5): without one, undo reverts a remote edit."""
    remote = authored("remote", client_id=1)
    replica = Doc(client_id=2)
    text = replica.get(TEXT_NAME, type=Text)
    undo = UndoManager(scopes=[text], capture_timeout_millis=0)
    replica.apply_update(remote.encode_state())
    assert undo.undo()
    assert str(text) == ""


# -- load, state vectors and diffs -------------------------------------------


def test_load_replays_stored_updates_and_yields_no_changes() -> None:
    source = authored("héllo")
    updates = [source.encode_state(), *(c.update for c in source.edit("x", insert=" 😀", at=5))]
    doc = Document("doc", client_id=9)
    assert doc.state_vector() == {}
    doc.load(updates)
    assert doc.text == "héllo 😀"
    assert doc.state_vector() == source.state_vector()
    assert doc.edit("me", insert="!", at=7)[0].origin == "me"
    assert doc.state_vector()[9] == 1


def test_state_vector_is_a_copy_and_follows_every_change() -> None:
    doc = authored("ab")
    sv = doc.state_vector()
    sv[50] = 99
    assert doc.state_vector() == {50: 2}
    doc.edit("me", insert="😀", at=2)
    assert doc.state_vector() == {50: 4}
    assert decode_state_vector(doc.encode_state_vector()) == {50: 4}


def test_diff_brings_a_replica_up_to_date() -> None:
    a = authored("shared ")
    b = Document("doc", client_id=60)
    b.receive(a.encode_state(), origin="a")
    a.edit("me", insert="more 😀", at=7)
    a.edit("me", at=0, delete=1)
    diff = a.diff(b.encode_state_vector())
    assert b.receive(diff, origin="a")
    assert b.text == a.text == "hared more 😀"
    assert a.diff(encode_state_vector(a.state_vector())) != a.encode_state()


@pytest.mark.parametrize("state_vector", [b"", b"\x01", b"\x01\x02", b"\x00\x00", b"\xff" * 9])
def test_diff_refuses_a_malformed_state_vector(state_vector: bytes) -> None:
    with pytest.raises(RemoteProtocolError):
        authored("x").diff(state_vector)


def test_receiving_an_empty_update_changes_nothing() -> None:
    doc = authored("x")
    assert doc.receive(b"\x00\x00", origin="peer") == []
    assert doc.pending_count() == 0


# -- updates pycrdt refuses ----------------------------------------------------

# Each of these passes parse_update, and pycrdt refuses it with ValueError or
# RuntimeError. receive() must turn that into RemoteProtocolError (the only
# error the shell catches for remote input) and leave the document as it was.
REFUSED_BY_PYCRDT = {
    # ContentJSON ["12"] in the Yjs layout: Yrs reads one string more than the count.
    "content-json": "01010900020101610102313200",
    # ContentEmbed whose value is not JSON.
    "embed-not-json": "01010900050101610178" + "00",
    # ContentFormat whose value is not JSON.
    "format-not-json": "0101090006010161016b017800",
    # A string item whose parent is client 50's string "hello", not a type.
    "parent-is-text": "01010900040032000178" + "00",
    # An XmlHook with its name, as Yjs writes it; Yrs reads a hook without one.
    "xml-hook-name": "010109000701016105" + "05014d010005" + "00",
}


@pytest.mark.parametrize("update", REFUSED_BY_PYCRDT.values(), ids=REFUSED_BY_PYCRDT.keys())
def test_updates_pycrdt_cannot_integrate_are_remote_errors(update: str) -> None:
    data = bytes.fromhex(update)
    doc = authored("hello")
    before = doc.encode_state()
    with pytest.raises(RemoteProtocolError):
        doc.receive(data, origin="peer")
    assert doc.text == "hello"
    assert doc.encode_state() == before
    assert doc.pending_count() == 0
    assert doc.edit("me", insert="!", at=5)[0].update  # still usable


def test_a_bad_buffered_update_does_not_swallow_the_change_that_released_it() -> None:
    """An update that waits for its causes is only found bad when they
    arrive. The good update that released it was integrated; its change must
    still come back, or it is never stored nor sent to anyone."""
    bad = bytes.fromhex(REFUSED_BY_PYCRDT["parent-is-text"])  # needs client 50's first item
    doc = Document("doc", client_id=3)
    assert doc.receive(bad, origin="mallory") == []
    changes = doc.receive(authored("hello").encode_state(), origin="alice")
    assert [c.origin for c in changes] == ["alice"]
    assert replay([c.update for c in changes]) == doc.text == "hello"
    assert not doc.pending_from("mallory")


def test_covers_names_clocks_and_deleted_ranges() -> None:
    """What an IHAVE names is here when every client's clock is reached and
    every range given is deleted here; a deletion leaves the state vector as
    it was, so only the ranges tell it."""
    author = Document("d", 5)
    author.edit("me", insert="hello")
    replica = Document("d", 6)
    replica.receive(author.encode_state(), "peer")
    assert replica.covers([(5, 5)], [])
    assert not replica.covers([(5, 6)], [])
    assert not replica.covers([(7, 1)], [])
    assert replica.covers([], [])
    (change,) = author.edit("me", at=1, delete=3)  # "hello" -> "ho": deletes clocks 1-3 of client 5
    assert author.covers([(5, 5)], [(5, 1, 3)]) and author.covers([], [(5, 2, 1)])
    assert replica.covers([(5, 5)], [])
    assert not replica.covers([(5, 5)], [(5, 1, 3)])
    replica.receive(change.update, "peer")
    assert replica.covers([(5, 5)], [(5, 1, 3)]) and replica.covers([], [(5, 1, 1), (5, 3, 1)])
    assert not replica.covers([], [(5, 0, 2)]) and not replica.covers([], [(5, 3, 2)])
    assert not replica.covers([], [(6, 1, 1)])
