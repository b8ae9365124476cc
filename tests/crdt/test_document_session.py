"""DocumentSession (crdt/session.py): the y-websocket server rules, driven
with frames in and effects out; no sockets."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest
from pycrdt import Doc, Text

from crdt import ywire
from crdt.document import Document
from crdt.errors import RemoteProtocolError
from crdt.session import Changed, DocumentSession, Effect, Send


def new_session(text: str = "") -> DocumentSession:
    doc = Document("doc", client_id=1)
    if text:
        doc.edit("seed", insert=text)
    return DocumentSession(doc)


def connected(*conns: int, text: str = "") -> DocumentSession:
    session = new_session(text)
    for conn in conns:
        session.connect(conn)
    return session


def sent(effects: list[Effect]) -> list[tuple[int, ywire.Message]]:
    return [(e.connection, ywire.decode_message(e.data)) for e in effects if isinstance(e, Send)]


def changes(effects: list[Effect]) -> list[Changed]:
    return [e for e in effects if isinstance(e, Changed)]


def presence(client: int, clock: int, name: str | None) -> ywire.AwarenessEntry:
    state = "null" if name is None else json.dumps({"user": {"name": name}})
    return ywire.AwarenessEntry(client, clock, state)


def awareness(*entries: ywire.AwarenessEntry) -> bytes:
    return ywire.encode_awareness(list(entries))


def browser_edits(*texts: str, client_id: int = 500) -> list[bytes]:
    """Updates a browser would send, each appending one text."""
    doc = Doc(client_id=client_id)
    text = doc.get("content", type=Text)
    log: list[bytes] = []
    doc.observe(lambda event: log.append(bytes(event.update)))
    for piece in texts:
        text.insert(len(str(text).encode()), piece)
    return log


def replay(updates: list[bytes]) -> str:
    doc = Document("replay", client_id=2)
    for update in updates:
        doc.receive(update, origin="replay")
    return doc.text


# -- rule 1: a new connection gets step 1, then who is present ------------------


def test_first_connection_gets_sync_step1_only() -> None:
    session = new_session("héllo")
    effects = session.connect(10)
    assert sent(effects) == [(10, ywire.SyncStep1(session.document.encode_state_vector()))]
    assert changes(effects) == []


def test_new_connection_gets_step1_then_awareness_of_present_clients() -> None:
    session = connected(10, 11)
    session.receive(10, awareness(presence(100, 3, "Ann")))
    session.receive(11, awareness(presence(200, 1, "Bob"), presence(201, 5, None)))
    effects = session.connect(12)
    assert sent(effects) == [
        (12, ywire.SyncStep1(session.document.encode_state_vector())),
        (12, ywire.Awareness((presence(100, 3, "Ann"), presence(200, 1, "Bob")))),
    ]


# -- rule 2: step 1 is answered with step 2 ------------------------------------


def test_step1_is_answered_by_a_step2_that_brings_a_fresh_document_up_to_date() -> None:
    session = connected(10, 11, text="shared 😀 text")
    fresh = Document("fresh", client_id=99)
    effects = session.receive(10, ywire.encode_sync_step1(fresh.encode_state_vector()))
    [(conn, message)] = sent(effects)
    assert conn == 10 and isinstance(message, ywire.SyncStep2)
    assert changes(effects) == []
    fresh.receive(message.update, origin="server")
    assert fresh.text == session.document.text == "shared 😀 text"


def test_step2_holds_only_what_the_client_lacks() -> None:
    session = connected(10, text="abc")
    client = Document("client", client_id=99)
    client.receive(session.document.encode_state(), origin="server")
    session.document.edit("other", insert="def", at=3)
    [(_, message)] = sent(session.receive(10, ywire.encode_sync_step1(client.encode_state_vector())))
    assert isinstance(message, ywire.SyncStep2)
    assert len(message.update) < len(session.document.encode_state())
    client.receive(message.update, origin="server")
    assert client.text == "abcdef"


# -- rule 3: a change goes to every other connection, never back ---------------


@pytest.mark.parametrize("wrap", [ywire.encode_sync_update, ywire.encode_sync_step2], ids=["update", "step2"])
def test_an_update_is_sent_to_all_other_connections_and_reported(wrap: Callable[[bytes], bytes]) -> None:
    session = connected(10, 11, 12)
    [update] = browser_edits("héllo 😀")
    effects = session.receive(11, wrap(update))
    [change] = changes(effects)
    assert change.origin == 11
    assert replay([change.update]) == "héllo 😀"
    assert sent(effects) == [(10, ywire.SyncUpdate(change.update)), (12, ywire.SyncUpdate(change.update))]
    assert session.document.text == "héllo 😀"


def test_a_lone_connection_gets_no_echo_of_its_own_update() -> None:
    session = connected(10)
    effects = session.receive(10, ywire.encode_sync_update(browser_edits("x")[0]))
    assert sent(effects) == []
    assert len(changes(effects)) == 1


def test_updates_released_from_the_buffer_skip_their_own_authors() -> None:
    session = connected(10, 11, 12)
    first, second = browser_edits("a", "b")
    assert session.receive(10, ywire.encode_sync_update(second)) == []  # waits for its cause
    effects = session.receive(11, ywire.encode_sync_update(first))
    assert [c.origin for c in changes(effects)] == [11, 10]
    receivers = [conn for conn, _ in sent(effects)]
    assert receivers == [10, 12, 11, 12]
    assert session.document.text == "ab"


def test_a_duplicate_update_changes_nothing_and_sends_nothing() -> None:
    session = connected(10, 11)
    [update] = browser_edits("once")
    session.receive(10, ywire.encode_sync_update(update))
    assert session.receive(11, ywire.encode_sync_update(update)) == []
    assert session.document.text == "once"


def test_apply_fans_out_changes_from_elsewhere_to_every_connection() -> None:
    session = connected(10, 11)
    effects = session.apply(browser_edits("from a peer")[0], origin="peer-x")
    assert [c.origin for c in changes(effects)] == ["peer-x"]
    assert [conn for conn, _ in sent(effects)] == [10, 11]


# -- rule 4: awareness goes to everyone, the sender included -------------------


def test_awareness_is_relayed_to_every_connection_including_the_sender() -> None:
    session = connected(10, 11, 12)
    entry = presence(100, 1, "Zoë 😀")
    effects = session.receive(11, awareness(entry))
    assert sent(effects) == [(conn, ywire.Awareness((entry,))) for conn in (10, 11, 12)]
    assert changes(effects) == []
    assert session.awareness_count() == 1


def test_stale_awareness_is_ignored() -> None:
    session = connected(10, 11)
    session.receive(10, awareness(presence(100, 5, "new")))
    assert session.receive(10, awareness(presence(100, 4, "old"))) == []
    assert session.receive(10, awareness(presence(100, 5, "same clock"))) == []
    # One stale and one fresh entry: only the fresh one travels.
    effects = session.receive(10, awareness(presence(100, 3, "old"), presence(101, 1, "fresh")))
    assert sent(effects) == [(conn, ywire.Awareness((presence(101, 1, "fresh"),))) for conn in (10, 11)]
    [(_, present)] = sent(session.receive(11, ywire.encode_query_awareness()))
    assert present == ywire.Awareness((presence(100, 5, "new"), presence(101, 1, "fresh")))


def test_a_removal_at_the_same_clock_wins() -> None:
    session = connected(10, 11)
    session.receive(10, awareness(presence(100, 5, "here")))
    effects = session.receive(10, awareness(presence(100, 5, None)))
    assert sent(effects) == [(conn, ywire.Awareness((presence(100, 5, None),))) for conn in (10, 11)]
    assert session.awareness_count() == 0


def test_query_awareness_is_answered_to_the_asker_only() -> None:
    session = connected(10, 11)
    assert session.receive(11, ywire.encode_query_awareness()) == []
    session.receive(10, awareness(presence(100, 1, "Ann")))
    assert sent(session.receive(11, ywire.encode_query_awareness())) == [
        (11, ywire.Awareness((presence(100, 1, "Ann"),)))
    ]


# -- rule 5: a closed connection's clients leave at once -------------------------


def test_disconnect_removes_the_departing_connections_clients_for_everyone_left() -> None:
    session = connected(10, 11, 12)
    session.receive(10, awareness(presence(100, 3, "Ann"), presence(101, 7, "Ann's other tab")))
    session.receive(11, awareness(presence(200, 1, "Bob")))
    effects = session.disconnect(10)
    gone = ywire.Awareness((presence(100, 4, None), presence(101, 8, None)))
    assert sent(effects) == [(11, gone), (12, gone)]
    assert session.awareness_count() == 1
    assert 10 not in session.connections
    assert sent(session.connect(13))[1:] == [(13, ywire.Awareness((presence(200, 1, "Bob"),)))]


def test_disconnect_of_a_connection_without_clients_sends_nothing() -> None:
    session = connected(10, 11)
    session.receive(10, awareness(presence(100, 1, "Ann")))
    session.receive(10, awareness(presence(100, 2, None)))  # already left
    assert session.disconnect(10) == []
    assert session.disconnect(11) == []


def test_disconnect_drops_the_connections_waiting_updates() -> None:
    session = connected(10, 11)
    _, second = browser_edits("a", "b")
    session.receive(10, ywire.encode_sync_update(second))
    assert session.document.pending_count() == 1
    session.disconnect(10)
    assert session.document.pending_count() == 0


def test_frames_from_a_closed_connection_are_refused() -> None:
    session = connected(10)
    session.disconnect(10)
    with pytest.raises(RemoteProtocolError):
        session.receive(10, ywire.encode_query_awareness())


# -- malformed frames change nothing ---------------------------------------------


def _state(session: DocumentSession) -> tuple[object, ...]:
    doc = session.document
    present = session.receive(11, ywire.encode_query_awareness())
    return doc.text, doc.encode_state(), doc.pending_count(), sorted(session.connections), present


MALFORMED_FRAMES = {
    "garbage": b"\xff\xff\xff",
    "unknown-type": b"\x04",
    "truncated-update": ywire.encode_sync_update(browser_edits("abc")[0])[:-3],
    "update-not-an-update": ywire.encode_sync_update(b"\x01\x01\x05"),
    "update-trailing-bytes": ywire.encode_sync_update(browser_edits("abc")[0] + b"\x00"),
    "step1-bad-state-vector": ywire.encode_sync_step1(b"\x05\x01"),
    "awareness-half-bad": awareness(presence(300, 1, "Eve"), ywire.AwarenessEntry(301, 1, "{bad")),
    # Parses as an update; its parent is a string item, which pycrdt refuses.
    "update-pycrdt-refuses": ywire.encode_sync_update(bytes.fromhex("010109000400010001780" + "0")),
}


@pytest.mark.parametrize("frame", MALFORMED_FRAMES.values(), ids=MALFORMED_FRAMES.keys())
def test_a_malformed_frame_raises_and_changes_nothing(frame: bytes) -> None:
    session = connected(10, 11, 12, text="hello")
    session.receive(10, awareness(presence(100, 1, "Ann")))
    session.receive(12, ywire.encode_sync_update(browser_edits("a", "b")[1]))  # one waiting update
    before = _state(session)
    with pytest.raises(RemoteProtocolError):
        session.receive(10, frame)
    assert _state(session) == before
    # The others carry on.
    assert len(changes(session.receive(11, ywire.encode_sync_update(browser_edits("!", client_id=7)[0])))) == 1
