"""The Store contract (crdt/store.py): what every storage adapter must do.

An adapter's test file subclasses :class:`StoreContract` and provides a
``harness`` fixture (a :class:`StoreHarness`) that knows how to open, reopen
and crash that kind of store. Updates are real pycrdt updates, so "the same
document" is checked by replaying what load() returns, not by trusting it.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Protocol

import pytest
from pycrdt import Doc, Text

from crdt.store import COMPACT_AFTER_UPDATES, DocumentInfo, Store, Write
from crdt.yupdate import decode_state_vector, delete_set_of, encode_state_vector

TEXT = "content"
Fingerprint = tuple[str, bytes, list[tuple[int, int, int]]]


class StoreHarness(Protocol):
    def open(self) -> Store:
        """A new, empty store."""

    def reopen(self, store: Store) -> Store:
        """The same store after the program restarts (its data, a new object
        where the adapter has one)."""

    def crash_tearing(self, store: Store, batch: Sequence[Write]) -> Store:
        """Write *batch* as the last thing before a crash that tears it;
        return the store as it opens after the crash."""


def edits(count: int, seed: int = 0, client_id: int = 4242) -> tuple[list[bytes], list[str]]:
    """*count* updates of one writer typing and deleting non-ASCII text, and
    the text after each of them."""
    rnd = random.Random(seed)
    doc = Doc(client_id=client_id)
    text = doc.get(TEXT, type=Text)
    updates: list[bytes] = []
    doc.observe(lambda event: updates.append(bytes(event.update)))
    texts: list[str] = []
    while len(updates) < count:
        current = str(text)
        if current and rnd.random() < 0.3:
            i = rnd.randrange(len(current))
            del text[len(current[:i].encode()) : len(current[: i + 1].encode())]
        else:
            i = rnd.randint(0, len(current))
            text.insert(len(current[:i].encode()), rnd.choice(["a", "é", "😀", "漢", " "]))
        texts.append(str(text))
    return updates, texts


def fingerprint(updates: Sequence[bytes]) -> Fingerprint:
    doc = Doc()
    text = doc.get(TEXT, type=Text)
    for update in updates:
        doc.apply_update(update)
    return str(text), encode_state_vector(decode_state_vector(doc.get_state())), delete_set_of(doc.get_update())


def snapshot(store: Store) -> tuple[list[DocumentInfo], dict[str, list[bytes]]]:
    docs = store.documents()
    return docs, {d.name: store.load(d.name) for d in docs}


class StoreContract:
    """Subclass as ``TestXxxStore`` and provide a ``harness`` fixture."""

    @pytest.fixture
    def harness(self) -> StoreHarness:
        raise NotImplementedError("an adapter's test class provides the harness")

    def test_an_unknown_document_loads_as_empty(self, harness: StoreHarness) -> None:
        store = harness.open()
        assert store.load("nothing-here") == []
        assert store.documents() == []

    def test_a_write_without_update_creates_the_document(self, harness: StoreHarness) -> None:
        store = harness.open()
        assert store.write([Write("notes", at=1_700_000_000.5)]) == []
        expected = [DocumentInfo("notes", 0, 1_700_000_000.5, 1_700_000_000.5)]
        assert store.documents() == expected
        assert store.load("notes") == []
        store = harness.reopen(store)
        assert store.documents() == expected
        assert store.load("notes") == []

    def test_creating_twice_keeps_the_first_creation_time(self, harness: StoreHarness) -> None:
        store = harness.open()
        store.write([Write("notes", at=10.0)])
        store.write([Write("notes", at=20.0)])
        assert store.documents() == [DocumentInfo("notes", 0, 10.0, 10.0)]

    def test_documents_are_listed_by_name(self, harness: StoreHarness) -> None:
        store = harness.open()
        store.write([Write(name, at=1.0) for name in ["b", "a", "c-2", "C", "c_1"]])
        store.write([Write("0", at=2.0)])
        assert [d.name for d in store.documents()] == sorted(["b", "a", "c-2", "C", "c_1", "0"])

    def test_updates_load_in_write_order_and_replay_to_the_text(self, harness: StoreHarness) -> None:
        store = harness.open()
        ours, our_texts = edits(40, seed=1, client_id=11)
        theirs, their_texts = edits(25, seed=2, client_id=12)
        rnd = random.Random(3)
        # Interleave the two documents, in batches of 1 to 7 writes.
        sources = {"ours": list(ours), "theirs": list(theirs)}
        queue: list[tuple[str, bytes]] = []
        while any(sources.values()):
            name = rnd.choice([n for n, left in sources.items() if left])
            queue.append((name, sources[name].pop(0)))
        while queue:
            size = rnd.randint(1, 7)
            batch, queue = queue[:size], queue[size:]
            store.write([Write(name, update, at=float(i)) for i, (name, update) in enumerate(batch)])
        assert store.load("ours") == ours
        assert store.load("theirs") == theirs
        assert all(type(u) is bytes for u in store.load("ours"))
        assert fingerprint(store.load("ours"))[0] == our_texts[-1]
        assert fingerprint(store.load("theirs"))[0] == their_texts[-1]

    def test_reopen_keeps_everything_byte_for_byte(self, harness: StoreHarness) -> None:
        store = harness.open()
        updates, _ = edits(30)
        store.write([Write("empty", at=1.0)])
        store.write([Write("doc", u, length=i, at=2.0 + i) for i, u in enumerate(updates[:10])])
        for i, update in enumerate(updates[10:], start=10):
            store.write([Write("doc", update, length=i, at=2.0 + i)])
        store.write([Write("odd bytes", b"\x00\xff" * 100 + bytes(range(256)))])
        before = snapshot(store)
        store = harness.reopen(store)
        assert snapshot(store) == before
        store = harness.reopen(store)
        assert snapshot(store) == before

    def test_length_and_updated_at_refresh(self, harness: StoreHarness) -> None:
        store = harness.open()
        updates, _ = edits(3)
        store.write([Write("doc", at=100.0)])
        store.write([Write("doc", updates[0], length=5, at=110.0)])
        assert store.documents() == [DocumentInfo("doc", 5, 100.0, 110.0)]
        store.write([Write("doc", updates[1], at=120.0)])  # an update alone keeps the length
        assert store.documents() == [DocumentInfo("doc", 5, 100.0, 120.0)]
        store.write([Write("doc", length=9, at=130.0)])  # a length alone refreshes both
        assert store.documents() == [DocumentInfo("doc", 9, 100.0, 130.0)]
        store.write([Write("doc", updates[2], length=7, at=125.0)])  # updated_at never goes back
        assert store.documents() == [DocumentInfo("doc", 7, 100.0, 130.0)]
        store = harness.reopen(store)
        assert store.documents() == [DocumentInfo("doc", 7, 100.0, 130.0)]
        assert store.load("doc") == updates

    def test_write_reports_documents_whose_log_grew_past_the_threshold(self, harness: StoreHarness) -> None:
        store = harness.open()
        big, _ = edits(COMPACT_AFTER_UPDATES + 3)
        small, _ = edits(3, client_id=7)
        assert store.write([Write("big", u) for u in big[:COMPACT_AFTER_UPDATES]]) == []
        assert store.write([Write("small", small[0])]) == []
        assert store.write([Write("big", big[COMPACT_AFTER_UPDATES]), Write("small", small[1])]) == ["big"]
        store = harness.reopen(store)
        assert store.write([Write("big", big[COMPACT_AFTER_UPDATES + 1]), Write("big", big[-1])]) == ["big"]
        assert store.write([Write("big", length=1)]) == []  # no update, nothing grew
        store.compact("big")
        assert store.write([Write("small", small[2])]) == []
        assert store.load("big") and len(store.load("big")) == 1
        assert fingerprint(store.load("big")) == fingerprint(big)

    def test_one_batch_reports_each_name_once(self, harness: StoreHarness) -> None:
        store = harness.open()
        a, _ = edits(COMPACT_AFTER_UPDATES + 2, client_id=1)
        b, _ = edits(COMPACT_AFTER_UPDATES + 2, client_id=2)
        grown = store.write([Write("a", u) for u in a] + [Write("b", u) for u in b])
        assert grown == ["a", "b"]

    def test_compaction_keeps_the_document_and_survives_reopen(self, harness: StoreHarness) -> None:
        store = harness.open()
        updates, texts = edits(120, seed=5)
        for start in range(0, len(updates), 10):
            store.write([Write("doc", u) for u in updates[start : start + 10]])
        store.write([Write("other", updates[0])])
        reference = fingerprint(updates)
        assert reference[0] == texts[-1] and reference[2]  # deletions included
        other_before = store.load("other")
        store.compact("doc")
        compacted = store.load("doc")
        assert len(compacted) < len(updates)
        assert fingerprint(compacted) == reference
        assert store.load("other") == other_before
        store = harness.reopen(store)
        assert store.load("doc") == compacted
        assert fingerprint(store.load("doc")) == reference

    def test_writes_after_compaction_follow_the_snapshot(self, harness: StoreHarness) -> None:
        store = harness.open()
        updates, _ = edits(60, seed=6)
        store.write([Write("doc", u) for u in updates[:30]])
        store.compact("doc")
        store.write([Write("doc", u) for u in updates[30:45]])
        assert fingerprint(store.load("doc")) == fingerprint(updates[:45])
        store.compact("doc")  # a second compaction folds the earlier snapshot in
        store.write([Write("doc", u) for u in updates[45:]])
        store = harness.reopen(store)
        loaded = store.load("doc")
        assert loaded[-15:] == updates[45:]
        assert fingerprint(loaded) == fingerprint(updates)

    def test_compacting_unknown_or_empty_documents_is_harmless(self, harness: StoreHarness) -> None:
        store = harness.open()
        store.compact("unknown")
        assert store.load("unknown") == []
        store.write([Write("empty", at=1.0)])
        store.compact("empty")
        assert fingerprint(store.load("empty")) == fingerprint([])
        assert [d.name for d in store.documents()] == ["empty"]

    def test_a_torn_last_write_loses_at_most_that_batch(self, harness: StoreHarness) -> None:
        store = harness.open()
        updates, texts = edits(40, seed=8)
        other, _ = edits(5, seed=9, client_id=99)
        committed = updates[:30]
        for start in range(0, 30, 6):
            store.write([Write("doc", u, length=start, at=float(start)) for u in updates[start : start + 6]])
        store.write([Write("empty", at=1.0)])
        last = [Write("doc", u, length=40, at=99.0) for u in updates[30:]] + [Write("new", u) for u in other]
        store = harness.crash_tearing(store, last)
        loaded = store.load("doc")
        assert loaded in (committed, updates)
        assert store.load("new") == ([] if loaded == committed else other)  # the batch is all or nothing
        assert fingerprint(loaded)[0] in (texts[29], texts[39])
        assert "empty" in [d.name for d in store.documents()]
        # The store opened cleanly: it takes writes and keeps them.
        store.write([Write("after", other[0], at=5.0)])
        store = harness.reopen(store)
        assert store.load("after") == [other[0]]
        assert store.load("doc") == loaded
