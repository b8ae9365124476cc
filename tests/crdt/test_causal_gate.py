"""The causal gate of Document.receive (crdt/document.py).

Yrs diverges when handed updates out of causal order
(shared/hazards/out_of_order.py). Browsers send no causal metadata, so the
gate must work from the update bytes alone: these tests record real editing
sessions, then deliver every update to a fresh Document in shuffled orders
with nothing but the bytes, and compare with a replica that saw them in
order. The same orders applied to plain pycrdt diverge, which shows the
sessions are hard enough for the test to mean something."""

from __future__ import annotations

import random

import pytest
from pycrdt import Doc, Text

from crdt import document as document_module
from crdt.document import MAX_PENDING_UPDATES, BufferFull, Document
from crdt.errors import RemoteProtocolError
from crdt.ytext import TEXT_NAME
from crdt.yupdate import decode_state_vector, delete_set_of, encode_state_vector

SEEDS = range(12)
ORDERS_PER_SEED = 6

Fingerprint = tuple[str, bytes, list[tuple[int, int, int]]]


def record_session(seed: int, writers: int = 3, steps: int = 200) -> list[bytes]:
    """Every update emitted by concurrent writers who sync now and then
    (the hazard script's workload, on the document's own root type)."""
    rnd = random.Random(seed)
    docs = [Doc(client_id=100 + i) for i in range(writers)]
    log: list[bytes] = []
    for doc in docs:
        doc.get(TEXT_NAME, type=Text)
        doc.observe(lambda event: log.append(bytes(event.update)))
    for _ in range(steps):
        text = rnd.choice(docs).get(TEXT_NAME, type=Text)
        n = len(text)
        if n and rnd.random() < 0.35:
            i = rnd.randrange(n)
            del text[i : i + rnd.randint(1, min(3, n - i))]
        else:
            text.insert(rnd.randint(0, n), rnd.choice("xyz"))
        if rnd.random() < 0.1:
            a, b = rnd.sample(docs, 2)
            b.apply_update(a.get_update(b.get_state()))
    return log


def pycrdt_fingerprint(doc: Doc) -> Fingerprint:
    return (
        str(doc.get(TEXT_NAME, type=Text)),
        encode_state_vector(decode_state_vector(doc.get_state())),
        delete_set_of(doc.get_update()),
    )


def fingerprint(doc: Document) -> Fingerprint:
    return doc.text, encode_state_vector(doc.state_vector()), delete_set_of(doc.encode_state())


def in_order(updates: list[bytes]) -> Doc:
    doc = Doc()
    doc.get(TEXT_NAME, type=Text)
    for update in updates:
        doc.apply_update(update)
    return doc


def shuffled(updates: list[bytes], seed: int, k: int) -> list[bytes]:
    order = updates[:]
    random.Random(seed * 1_000 + k).shuffle(order)
    return order


@pytest.fixture(scope="module")
def sessions() -> dict[int, tuple[list[bytes], Fingerprint]]:
    out = {}
    for seed in SEEDS:
        log = record_session(seed)
        out[seed] = (log, pycrdt_fingerprint(in_order(log)))
    return out


def test_shuffled_deliveries_through_the_gate_converge(sessions: dict[int, tuple[list[bytes], Fingerprint]]) -> None:
    for seed, (log, reference) in sessions.items():
        for k in range(ORDERS_PER_SEED):
            doc = Document("gate", client_id=1)
            for update in shuffled(log, seed, k):
                doc.receive(update, origin="peer")
            assert doc.pending_count() == 0, (seed, k)
            assert fingerprint(doc) == reference, (seed, k)


def test_the_same_orders_diverge_without_the_gate(sessions: dict[int, tuple[list[bytes], Fingerprint]]) -> None:
    diverged = 0
    for seed, (log, reference) in sessions.items():
        for k in range(ORDERS_PER_SEED):
            if pycrdt_fingerprint(in_order(shuffled(log, seed, k)))[0] != reference[0]:
                diverged += 1
    assert diverged > 0


def test_changes_come_out_in_causal_order(sessions: dict[int, tuple[list[bytes], Fingerprint]]) -> None:
    """The changes receive() returns are what gets stored and replayed with
    plain pycrdt by Document.load, so their order must be causal."""
    for seed in list(SEEDS)[:4]:
        log, reference = sessions[seed]
        for k in range(3):
            doc = Document("gate", client_id=1)
            changes = [c for update in shuffled(log, seed, k) for c in doc.receive(update, origin=k)]
            assert all(c.origin == k for c in changes)
            assert pycrdt_fingerprint(in_order([c.update for c in changes])) == reference
            reloaded = Document("reloaded", client_id=2)
            reloaded.load(c.update for c in changes)
            assert fingerprint(reloaded) == reference


def test_duplicate_deliveries_converge(sessions: dict[int, tuple[list[bytes], Fingerprint]]) -> None:
    for seed in list(SEEDS)[:6]:
        log, reference = sessions[seed]
        rnd = random.Random(seed)
        doubled = [u for u in log for _ in range(rnd.randint(1, 3))]
        doc = Document("gate", client_id=1)
        for update in shuffled(doubled, seed, 99):
            doc.receive(update, origin="peer")
        assert doc.pending_count() == 0
        assert fingerprint(doc) == reference
        # Once everything is here, a redelivery changes nothing at all.
        for update in log:
            assert doc.receive(update, origin="late") == []
        assert fingerprint(doc) == reference


def _typing(n: int) -> list[bytes]:
    """n updates, each depending on the one before."""
    source = Doc(client_id=7)
    text = source.get(TEXT_NAME, type=Text)
    log: list[bytes] = []
    source.observe(lambda event: log.append(bytes(event.update)))
    for i in range(n):
        text.insert(i, "abcdefghij"[i % 10])
    return log


def test_too_many_orphans_raise_buffer_full_and_leave_the_text_alone() -> None:
    log = _typing(MAX_PENDING_UPDATES + 2)
    doc = Document("gate", client_id=1)
    doc.edit("local", insert="kept")
    for update in log[1 : MAX_PENDING_UPDATES + 1]:
        assert doc.receive(update, origin="flood") == []
    assert doc.pending_count() == MAX_PENDING_UPDATES
    with pytest.raises(BufferFull) as refused:
        doc.receive(log[MAX_PENDING_UPDATES + 1], origin="flood")
    assert isinstance(refused.value, RemoteProtocolError)
    assert doc.text == "kept"
    assert doc.pending_count() == MAX_PENDING_UPDATES
    assert doc.state_vector() == {1: 4}
    # The refusal did not damage what was waiting: the missing cause releases it.
    changes = doc.receive(log[0], origin="flood")
    assert len(changes) == MAX_PENDING_UPDATES + 1
    assert doc.pending_count() == 0
    typed = "".join("abcdefghij"[i % 10] for i in range(MAX_PENDING_UPDATES + 1))
    assert doc.text in ("kept" + typed, typed + "kept")


def test_too_many_waiting_bytes_raise_buffer_full(monkeypatch: pytest.MonkeyPatch) -> None:
    log = _typing(6)
    monkeypatch.setattr(document_module, "MAX_PENDING_BYTES", sum(len(u) for u in log[1:4]))
    doc = Document("gate", client_id=1)
    for update in log[1:4]:
        doc.receive(update, origin="flood")
    with pytest.raises(BufferFull):
        doc.receive(log[4], origin="flood")
    assert doc.text == ""
    assert doc.pending_count() == 3


def test_drop_pending_forgets_only_that_origins_updates() -> None:
    log = _typing(5)
    doc = Document("gate", client_id=1)
    doc.receive(log[2], origin="a")
    doc.receive(log[3], origin="b")
    doc.receive(log[4], origin="a")
    assert doc.pending_from("a") and doc.pending_from("b") and not doc.pending_from("c")
    assert doc.drop_pending("a") == 2
    assert not doc.pending_from("a")
    assert doc.pending_count() == 1
    assert doc.drop_pending("c") == 0
    doc.receive(log[0], origin="c")
    doc.receive(log[1], origin="c")
    assert doc.pending_count() == 1  # b's update still needs a's dropped one
    changes = doc.receive(log[2], origin="c")
    assert [c.origin for c in changes] == ["c", "b"]
    assert doc.text == "abcd"
    assert doc.pending_count() == 0


def test_updates_delivered_newest_first_are_released_in_a_cascade() -> None:
    """A delete-only update (no state-vector change) waits like any other."""
    author = Doc(client_id=7)
    text = author.get(TEXT_NAME, type=Text)
    log: list[bytes] = []
    author.observe(lambda event: log.append(bytes(event.update)))
    text.insert(0, "abc")
    del text[1:2]
    text.insert(1, "X")
    doc = Document("gate", client_id=1)
    for update in reversed(log):
        doc.receive(update, origin="peer")
    assert doc.text == "aXc" == str(text)
