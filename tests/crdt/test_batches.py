"""Updates that arrive together: Document.receive_many and
DocumentSession.receive_many apply them as one change, and stop at the first
one refused without losing those before it."""

from __future__ import annotations

import random

from pycrdt import Doc, Text

from crdt import ywire
from crdt.document import Document
from crdt.errors import RemoteProtocolError
from crdt.session import Changed, DocumentSession, Send, merge_update_frames
from crdt.ytext import TEXT_NAME


def typing(n: int, client_id: int = 7) -> tuple[list[bytes], str]:
    """n keystroke updates, each building on the one before."""
    source = Doc(client_id=client_id)
    text = source.get(TEXT_NAME, type=Text)
    log: list[bytes] = []
    source.observe(lambda event: log.append(bytes(event.update)))
    for i in range(n):
        text.insert(len(text) if i % 3 else 0, "abc"[i % 3])
    return log, str(text)


def test_a_batch_is_one_change_with_the_same_result() -> None:
    log, final = typing(50)
    doc = Document("batch", client_id=1)
    changes, error = doc.receive_many(log, origin="browser")
    assert error is None
    assert doc.text == final
    assert len(changes) == 1 and changes[0].origin == "browser"
    reloaded = Document("reloaded", client_id=2)
    reloaded.load([changes[0].update])
    assert reloaded.text == final
    assert reloaded.state_vector() == doc.state_vector() == {7: 50}


def test_a_refused_update_keeps_the_ones_before_it_and_drops_the_rest() -> None:
    log, _ = typing(10)
    doc = Document("batch", client_id=1)
    changes, error = doc.receive_many([*log[:4], b"\x01\xff", *log[4:]], origin="browser")
    assert isinstance(error, RemoteProtocolError)
    assert doc.state_vector() == {7: 4}
    assert len(changes) == 1
    expected = Document("expected", client_id=3)
    for update in log[:4]:
        expected.receive(update, origin="x")
    assert doc.text == expected.text


def test_shuffled_batches_wait_for_their_causes() -> None:
    log, final = typing(60)
    for seed in range(5):
        order = log[:]
        random.Random(seed).shuffle(order)
        doc = Document("batch", client_id=1)
        updates = []
        for i in range(0, len(order), 7):
            changes, error = doc.receive_many(order[i : i + 7], origin="peer")
            assert error is None
            updates += [c.update for c in changes]
        assert doc.pending_count() == 0
        assert doc.text == final
        replay = Document("replay", client_id=2)
        replay.load(updates)  # what was stored replays with plain pycrdt: causal order
        assert replay.text == final


def test_bursts_that_wait_overlap_or_delete_give_the_same_result_as_one_by_one() -> None:
    """Bursts long enough to be tried merged: out of order (some wait),
    resent in part (they overlap what is here), and with deletions."""
    source = Doc(client_id=7)
    text = source.get(TEXT_NAME, type=Text)
    log: list[bytes] = []
    source.observe(lambda event: log.append(bytes(event.update)))
    rng = random.Random(3)
    for i in range(300):
        if len(text) > 5 and i % 4 == 0:
            start = rng.randrange(len(text) - 2)
            del text[start : start + 2]
        else:
            text.insert(rng.randrange(len(text) + 1), "xyz"[i % 3])
    final = str(text)
    for seed in range(5):
        rng = random.Random(seed)
        doc = Document("burst", client_id=1)
        stored: list[bytes] = []
        i = 0
        while i < len(log):
            size = rng.randrange(8, 40)
            burst = log[max(0, i - rng.randrange(0, 10)) : i + size]  # starts inside what was sent
            if rng.random() < 0.3:
                burst = burst[::-1]
            changes, error = doc.receive_many(burst, origin="peer")
            assert error is None
            stored += [c.update for c in changes]
            i += size
        assert doc.pending_count() == 0
        assert doc.text == final
        replay = Document("replay", client_id=2)
        replay.load(stored)
        assert replay.text == final


def _writer(client_id: int, rng: random.Random) -> list[bytes]:
    """Twelve transactions of one to three random keystrokes."""
    source = Doc(client_id=client_id)
    text = source.get(TEXT_NAME, type=Text)
    log: list[bytes] = []
    source.observe(lambda event: log.append(bytes(event.update)))
    for _ in range(12):
        with source.transaction():
            for _ in range(rng.randrange(1, 4)):
                if len(text) > 3 and rng.random() < 0.3:
                    start = rng.randrange(len(text) - 1)
                    del text[start : start + 1]
                else:
                    text.insert(rng.randrange(len(text) + 1), rng.choice("abcdefg"))
    return log


def test_a_burst_that_reuses_a_client_id_stores_what_the_replica_holds() -> None:
    """Two writers under one client id (a broken or hostile browser): a
    burst of both must leave the replica equal to what it stores. Merged,
    Yrs keeps one of two items that share a clock (seed 376 did)."""
    for seed in (95, 376, 506):
        rng = random.Random(seed)
        first, second = _writer(7, rng), _writer(7, rng)
        burst = first[: rng.randrange(2, 10)] + second[: rng.randrange(2, 10)]
        if rng.random() < 0.3:
            rng.shuffle(burst)
        doc = Document("reused", client_id=1)
        changes, _ = doc.receive_many(burst, origin="browser")
        stored = Document("stored", client_id=2)
        stored.load([c.update for c in changes])
        assert stored.text == doc.text, f"seed {seed}"


def test_session_batch_sends_one_frame_to_the_others_and_keeps_message_order() -> None:
    log, final = typing(20)
    session = DocumentSession(Document("s", client_id=1))
    session.connect(1)
    session.connect(2)
    query = b"\x03"  # awareness query between two runs of updates
    frames = [ywire.encode_sync_update(u) for u in log[:10]] + [query] + [ywire.encode_sync_update(u) for u in log[10:]]
    effects, error = session.receive_many(1, frames)
    assert error is None
    assert session.document.text == final
    assert [type(e) for e in effects] == [Changed, Send, Changed, Send]
    assert all(e.connection == 2 for e in effects if isinstance(e, Send))


def test_session_batch_stops_at_a_bad_frame() -> None:
    log, _ = typing(6)
    session = DocumentSession(Document("s", client_id=1))
    session.connect(1)
    frames = [ywire.encode_sync_update(u) for u in log[:3]] + [b"\x00\x09"] + [ywire.encode_sync_update(log[3])]
    effects, error = session.receive_many(1, frames)
    assert isinstance(error, RemoteProtocolError)
    assert session.document.state_vector() == {7: 3}
    assert sum(isinstance(e, Changed) for e in effects) == 1


def test_queued_update_frames_merge_into_one_and_other_frames_keep_their_place() -> None:
    log, final = typing(40)
    awareness = b"\x01\x05\x01\x07\x01\x02{}"
    updates = [ywire.encode_sync_update(u) for u in log]
    frames = [*updates[:25], awareness, *updates[25:]]
    merged = merge_update_frames(frames)
    assert len(merged) == 3 and merged[1] == awareness
    browser = Doc()
    text = browser.get(TEXT_NAME, type=Text)
    for frame in (merged[0], merged[2]):
        message = ywire.decode_message(frame)
        assert isinstance(message, ywire.SyncUpdate)
        browser.apply_update(message.update)
    assert str(text) == final
    single = [ywire.encode_sync_update(log[0])]
    assert merge_update_frames(single) == single  # a lone frame is sent as it was
