"""The history core (crdt.history, crdt.timeline, crdt.ystructs): sessions,
version ids, versions rebuilt identically on every replica, restore as a
diff, attribution, and the order of characters checked against pycrdt."""

from __future__ import annotations

import random

import pytest

from crdt import entries, history, timeline, ystructs
from crdt.document import Document
from crdt.history import Author, History, Recorder, VersionNotFound, VersionNotHeld

ANN = Author("Ann", "#cc3300", "aa" * 16)
BOB = Author("Bob", "#0033cc", "bb" * 16)


def sync(*docs: Document) -> None:
    """Bring every replica up to date with every other (in both directions)."""
    for a in docs:
        for b in docs:
            if a is not b:
                b.receive(a.diff(b.encode_state_vector()), "peer")


def type_into(doc: Document, text: str, at: int | None = None) -> list[bytes]:
    at = len(doc.text) if at is None else at
    return [c.update for c in doc.edit("local", insert=text, at=at)]


# -- sessions ------------------------------------------------------------------------


def test_edits_with_short_pauses_are_one_session_and_a_long_pause_ends_it():
    doc = Document("d", 11)
    rec = Recorder(ANN.peer, gap=60, longest=600)
    for t, word in ((0, "Hello"), (20, " there"), (75, ", friend")):
        for update in type_into(doc, word):
            rec.note(doc, update, {11: (ANN.name, ANN.color)}, at=1000 + t)
    assert not rec.due(1000 + 75 + 59)
    assert rec.due(1000 + 75 + 60)
    rec.close(doc, 1000 + 135)
    for update in type_into(doc, "!"):
        rec.note(doc, update, {11: (BOB.name, BOB.color)}, at=2000)
    rec.close(doc, 2060)
    versions = History(doc).versions()
    assert [v.kind for v in versions] == ["edit", "edit"]
    newest, oldest = versions
    assert oldest.at == 1075 and newest.at == 2000  # the time of the session's last edit
    assert oldest.inserted == len("Hello there, friend") and oldest.deleted == 0
    assert [a.name for a in oldest.authors] == ["Ann"] and oldest.authors[0].peer == ANN.peer
    assert History(doc).text(oldest) == "Hello there, friend"
    assert History(doc).text(newest) == "Hello there, friend!"


def test_a_long_session_still_leaves_versions():
    doc = Document("d", 11)
    rec = Recorder(ANN.peer, gap=60, longest=600)
    for t in range(0, 700, 30):
        for update in type_into(doc, "x"):
            rec.note(doc, update, {11: (ANN.name, ANN.color)}, at=t)
        if rec.due(t):
            rec.close(doc, t)
    assert len(History(doc).versions()) == 1  # closed at 600, the rest still open


def test_deletions_are_counted():
    doc = Document("d", 11)
    rec = Recorder(ANN.peer)
    type_into(doc, "abcdef")
    for change in doc.edit("local", at=1, delete=3):
        rec.note(doc, change.update, {11: (ANN.name, ANN.color)}, at=5)
    rec.close(doc, 100)
    (v,) = History(doc).versions()
    assert (v.inserted, v.deleted) == (0, 3)


# -- ids ----------------------------------------------------------------------------------


def test_a_version_id_round_trips():
    doc = Document("d", 11)
    type_into(doc, "first")
    vid, _ = history.name_version(doc, "one", ANN, at=10)
    assert history.check_id(vid) == vid and len(vid) == 16
    version = History(doc).find(vid)
    state = History(doc).snapshot(vid)
    assert state.id == vid and version.label == "one"
    # The state named is the replica's just before the entry (which comes after it).
    sv = doc.state_vector()
    assert all(sv[c] >= k for c, k in state.sv.items()) and state.sv != sv
    # The id is the state's: another replica with the same updates resolves the same snapshot.
    other = Document("d", 12)
    other.receive(doc.encode_state(), "x")
    assert History(other).snapshot(vid) == state
    # Naming again is a new entry (the first entry is part of the state now), with the same text.
    again, _ = history.name_version(doc, "one, again", BOB, at=20)
    assert again != vid
    assert History(doc).text(History(doc).find(again)) == History(doc).text(version) == "first"
    for bad in ("", "x" * 15, "x" * 17, "a/b" + "c" * 13, None, 12):
        with pytest.raises(ValueError):
            history.check_id(bad)
    with pytest.raises(VersionNotFound):
        History(doc).find("A" * 16)


def test_an_entry_that_does_not_resolve_to_its_id_cannot_be_opened():
    doc = Document("d", 11)
    type_into(doc, "text")
    vid, _ = history.name_version(doc, "good", ANN, at=1)
    forged = entries.Entry("named", 9.0, "F" * 16, 77, True, {11: 1}, [], label="forged")
    doc.write_root_array(history.HISTORY, lambda root: root.append(entries.encode(forged)), "test")
    doc.write_root_array(history.HISTORY, lambda root: root.append(b"\x01garbage"), "test")
    h = History(doc)
    assert {v.label for v in h.versions()} == {"good", "forged"}  # listed from what the entries say...
    with pytest.raises(VersionNotFound):
        h.text(h.find("F" * 16))  # ...but a snapshot that does not hash to its id does not open
    assert h.text(h.find(vid)) == "text"


def test_entries_round_trip():
    e = entries.Entry(
        "restore", 1_700_000_000.123, "A" * 16, 2**32 - 1, False, {5: 10, 2**32 - 1: 3},
        [(5, 0, 2), (5, 7, 1), (9, 1, 4)], started=1_699_999_990.5, inserted=3, deleted=4,
        authors=[entries.Person(5, "Zoë", "#112233")], label=None, restored="B" * 16,
    )  # fmt: skip
    back = entries.decode(entries.encode(e))
    assert back == e
    header = entries.decode(entries.encode(e), snapshot=False)
    assert header.sv == {} and header.restored == "B" * 16 and header.authors[0].name == "Zoë"
    for bad in (b"", b"\x02", entries.encode(e)[:-1], entries.encode(e) + b"\x00", "text", None):
        with pytest.raises(ValueError):
            entries.decode(bad)


# -- the same history everywhere ---------------------------------------------------------


def test_a_version_opens_to_the_same_text_on_replicas_that_got_updates_in_other_orders():
    rng = random.Random(7)
    writers = [Document("d", 100 + i) for i in range(3)]
    named: list[tuple[str, str]] = []
    updates: list[bytes] = []
    for step in range(60):
        w = rng.choice(writers)
        text = w.text
        if text and rng.random() < 0.3:
            at = rng.randrange(len(text))
            changes = w.edit("local", at=at, delete=min(3, len(text) - at))
        else:
            changes = w.edit("local", at=rng.randint(0, len(text)), insert=rng.choice(["é", "ab", "😀", "word "]))
        updates += [c.update for c in changes]
        if step % 7 == 0:
            sync(*writers)
        if step % 10 == 9:
            vid, changes = history.name_version(w, f"v{step}", ANN, at=step)
            updates += [c.update for c in changes]
            named.append((vid, w.text))
    sync(*writers)
    # Two replicas take every update, each in its own (causal) order: the gate
    # holds what comes early.
    a, b = Document("d", 901), Document("d", 902)
    for update in updates:
        a.receive(update, "x")
    shuffled = updates[:]
    random.Random(3).shuffle(shuffled)
    for update in shuffled:
        b.receive(update, "x")
    assert a.pending_count() == b.pending_count() == 0
    assert a.text == b.text == writers[0].text
    for replica in (a, b, *writers):
        h = History(replica)
        assert {v.label for v in h.versions()} == {f"v{s}" for s in range(9, 60, 10)}
        for vid, text in named:
            assert h.text(h.find(vid)) == text


def test_a_version_not_held_yet_says_so():
    a, b = Document("d", 1), Document("d", 2)
    type_into(a, "shared ")
    sync(a, b)
    type_into(a, "only on a")
    vid, changes = history.name_version(a, "later", ANN, at=1)
    # b gets the entry first: written by a's own client after its text, the gate holds it.
    for change in changes:
        b.receive(change.update, "x")
    assert b.pending_count() == len(changes)
    sync(a, b)
    assert History(b).text(History(b).find(vid)) == "shared only on a"
    # Text typed in a browser has a client of its own: its entry may come first.
    c = Document("d", 3)
    c.receive(b.encode_state(), "x")
    a.edit_as(500, [(0, 0, "Browser text. ")], "x")
    later, changes = history.name_version(a, "with the browser's text", ANN, at=2)
    for change in changes:
        c.receive(change.update, "x")
    version = History(c).find(later)
    assert not History(c).holds(version)
    with pytest.raises(VersionNotHeld):
        History(c).text(version)
    sync(a, c)
    assert History(c).text(version) == "Browser text. shared only on a"
    with pytest.raises(VersionNotFound):
        History(Document("d", 4)).find(vid)


# -- restore ----------------------------------------------------------------------------


def test_restore_gives_the_versions_text_and_a_concurrent_edit_survives():
    good = "Première ligne.\nDeuxième ligne 😀.\nTroisième.\n"
    a, b = Document("d", 1), Document("d", 2)
    type_into(a, good)
    vid, _ = history.name_version(a, "good", ANN, at=1)
    sync(a, b)
    # Someone deletes everything and types junk; the state is named on the way.
    a.edit("local", at=0, delete=len(a.text))
    type_into(a, "junk junk junk")
    junk, _ = history.name_version(a, "junk", BOB, at=2)
    sync(a, b)
    # Meanwhile Bob, on b, adds a line that a has not seen yet.
    type_into(b, "Bob était là. ", at=5)
    after, _ = history.restore(a, vid, ANN, at=3, client_id=777)
    assert a.text == good  # exactly the version's text, here
    sync(a, b)
    assert a.text == b.text
    assert "Bob était là. " in a.text and a.text.replace("Bob était là. ", "") == good
    h = History(a)
    restore = h.find(after)
    assert restore.kind == "restore" and restore.restored == vid
    assert [x.name for x in restore.authors] == ["Ann"]
    assert h.authors()[777] == ANN  # the restore is attributed to the person who restored it
    assert h.find(vid).label == "good"  # nothing was rewritten: the old versions are all there
    # A restore is undone by restoring again. What a restore saw is replaced
    # (Bob's line had arrived by then); only what it could not see survives.
    history.restore(a, junk, BOB, at=4, client_id=778)
    sync(a, b)
    assert a.text == b.text == "junk junk junk"


def test_restore_changes_little_when_little_differs():
    doc = Document("d", 1)
    paragraphs = [f"Paragraph {i}: " + "words and more words, ünïcödé. " * 30 + "\n" for i in range(40)]
    type_into(doc, "".join(paragraphs))
    vid, _ = history.name_version(doc, "before", ANN, at=1)
    old = paragraphs[17]
    at = doc.text.index(old)
    doc.edit("local", at=at, delete=len(old), insert="A paragraph rewritten by mistake.\n")
    _, changes = history.restore(doc, vid, ANN, at=2, client_id=999)
    assert doc.text == "".join(paragraphs)
    text_change = sum(len(c.update) for c in changes if c.origin == "restore")
    assert text_change < 2 * len(old.encode())


def test_restore_of_an_unknown_version_changes_nothing():
    doc = Document("d", 1)
    type_into(doc, "keep")
    before = doc.encode_state()
    with pytest.raises(VersionNotFound):
        history.restore(doc, "B" * 16, ANN, at=1, client_id=5)
    assert doc.encode_state() == before


# -- attribution --------------------------------------------------------------------------


def test_attribution_maps_text_ranges_to_authors():
    a, b = Document("d", 10), Document("d", 20)
    history.record_authors(a, {10: ANN})
    type_into(a, "Hello ")
    sync(a, b)
    history.record_authors(b, {20: BOB})
    type_into(b, "wörld")
    type_into(a, "dear ", at=6)  # Ann again, in the middle
    sync(a, b)
    for replica in (a, b):
        h = History(replica)
        ranges = [(replica.text[s:e], client) for s, e, client in h.attribution()]
        assert ranges == [("Hello dear ", 10), ("wörld", 20)]
        assert h.authors() == {10: ANN, 20: BOB}


# -- the order of characters ---------------------------------------------------------------


@pytest.mark.parametrize("seed", range(300))
def test_the_order_read_matches_pycrdt(seed):
    """Concurrent inserts and deletes by several replicas, some of which
    collect deleted content (as browsers do): the order read from the state
    gives pycrdt's text, and every recorded state's text."""
    from pycrdt import Doc, Text

    rng = random.Random(seed)
    n = rng.randint(2, 4)
    docs = [Doc(skip_gc=(i == 0 or rng.random() < 0.5), client_id=rng.randint(1, 2**32 - 1)) for i in range(n)]
    texts = [d.get("content", type=Text) for d in docs]
    for _ in range(rng.randint(5, 80)):
        i = rng.randrange(n)
        t, s = texts[i], str(texts[i])
        if s and rng.random() < 0.3:
            x = rng.randrange(len(s))
            y = min(len(s), x + rng.randint(1, 4))
            del t[len(s[:x].encode()) : len(s[:y].encode())]
        else:
            x = rng.randint(0, len(s))
            t.insert(len(s[:x].encode()), rng.choice(["a", "bc", "é", "😀x", "hello "]))
        if rng.random() < 0.3:
            j, k = rng.sample(range(n), 2)
            docs[k].apply_update(docs[j].get_update(docs[k].get_state()))
    for j in range(n):
        for k in range(n):
            if j != k:
                docs[k].apply_update(docs[j].get_update(docs[k].get_state()))
    runs = timeline.order(docs[0].get_update(), "content", str(texts[0]))
    assert runs is not None


def test_cut_and_order_agree_on_every_version():
    rng = random.Random(1)
    doc = Document("d", 5)
    seen: list[tuple[history.Snapshot, str]] = []
    for _ in range(200):
        text = doc.text
        if text and rng.random() < 0.4:
            at = rng.randrange(len(text))
            doc.edit("local", at=at, delete=min(len(text) - at, rng.randint(1, 5)))
        else:
            doc.edit("local", at=rng.randint(0, len(text)), insert=rng.choice(["x", "yz ", "ü", "𝄞"]))
        seen.append((history.snapshot_of(doc), doc.text))
    state = doc.encode_state()
    runs = timeline.order(state, "content", doc.text)
    assert runs is not None
    for snap, text in seen:
        assert timeline.text_at(runs, snap.sv, snap.ds) == text
        assert Document.text_of(ystructs.cut(state, snap.sv, snap.ds)) == text


def test_compare_marks_insertions_and_deletions_by_client():
    a, b = Document("d", 10), Document("d", 20)
    type_into(a, "one two three")
    sync(a, b)
    old = history.snapshot_of(a)
    b.edit("local", at=4, delete=4)  # "two " goes
    type_into(b, " four")
    sync(a, b)
    new = history.snapshot_of(a)
    runs = History(a).runs()
    assert runs is not None
    spans = [(s.op, s.text, s.client) for s in timeline.compare(runs, (old.sv, old.ds), (new.sv, new.ds))]
    assert spans == [("=", "one ", 10), ("-", "two ", 10), ("=", "three", 10), ("+", " four", 20)]
