"""The engine (crdt.engine): batching, acknowledgements, and backpressure
instead of disconnects, for browsers and for peer links."""

from __future__ import annotations

import random

from pycrdt import Doc, Text

from crdt import peerwire as pw
from crdt import ywire
from crdt.browsers import (
    PAUSE_PENDING,
    RESYNC_AFTER,
    Acknowledge,
    CloseBrowser,
    PauseBrowser,
    ResumeBrowser,
    SendBrowser,
)
from crdt.document import MAX_PENDING_UPDATES
from crdt.effects import PauseLink, ResumeLink, SendPeer
from crdt.engine import Engine, Store
from crdt.replicas import PAUSE_PENDING as LINK_PAUSE


def engine() -> Engine:
    ids = iter(range(1000, 100_000))
    return Engine(b"\x01" * 16, "a:1", random.Random(1), lambda: next(ids), lambda: 1_700_000_000.0)


def typing(n: int, client: int = 77) -> tuple[list[bytes], str]:
    """A browser's first *n* keystrokes, each as an update."""
    source = Doc(client_id=client)
    text = source.get("content", type=Text)
    log: list[bytes] = []
    source.observe(lambda event: log.append(bytes(event.update)))
    for i in range(n):
        text.insert(i, "ab"[i % 2])
    return log, str(text)


def run(e: Engine, now: float) -> list:
    """What the engine does once the shell's timer fires."""
    return e.tick(now)


def test_a_browser_ahead_of_its_causes_is_paused_then_resumed_not_closed():
    e = engine()
    ahead, _ = e.connect("d", 0.0)
    updates, final = typing(PAUSE_PENDING + 10)
    for update in updates[1:]:  # everything but the first keystroke, which the rest build on
        e.frame(ahead, ywire.encode_sync_update(update), 0.0)
    effects = run(e, 0.0)
    assert PauseBrowser(ahead) in effects and not any(isinstance(x, (CloseBrowser, Acknowledge)) for x in effects)
    # The cause comes, through another browser of the same person (say a second tab).
    other, _ = e.connect("d", 0.1)
    e.frame(other, ywire.encode_sync_update(updates[0]), 0.1)
    effects = run(e, 0.1)
    assert ResumeBrowser(ahead) in effects
    assert Acknowledge(ahead, len(updates) - 1) in effects  # all its frames are in now
    assert e.documents["d"].text == final


def test_causes_that_never_come_resync_the_browser_in_band():
    e = engine()
    ahead, _ = e.connect("d", 0.0)
    updates, final = typing(PAUSE_PENDING + 5)
    for update in updates[1:]:
        e.frame(ahead, ywire.encode_sync_update(update), 0.0)
    assert PauseBrowser(ahead) in run(e, 0.0)
    assert e.next_deadline(0.0) <= RESYNC_AFTER
    effects = run(e, RESYNC_AFTER)
    step1 = [x for x in effects if isinstance(x, SendBrowser) and x.conn == ahead]
    assert step1 and isinstance(ywire.decode_message(step1[0].data), ywire.SyncStep1)
    assert ResumeBrowser(ahead) in effects and not any(isinstance(x, CloseBrowser) for x in effects)
    # Nothing was acknowledged for the dropped updates...
    assert not any(isinstance(x, Acknowledge) for x in effects)
    # ...until the browser's answer, which carries them all, is in.
    source = Doc(client_id=77)
    for update in updates:
        source.apply_update(update)
    e.frame(ahead, ywire.encode_sync_step2(source.get_update()), RESYNC_AFTER)
    effects = run(e, RESYNC_AFTER)
    assert Acknowledge(ahead, len(updates)) in effects
    assert e.documents["d"].text == final


def test_a_burst_is_one_store_write_and_its_frames_are_acknowledged():
    e = engine()
    conn, _ = e.connect("d", 0.0)
    updates, final = typing(50)
    for update in updates:
        assert e.frame(conn, ywire.encode_sync_update(update), 0.0) == []
    assert e.next_deadline(0.0) == 0.0  # taken when the engine next runs
    effects = run(e, 0.0)
    text_writes = [x for x in effects if isinstance(x, Store) and 77 in _clients(x.update)]
    assert len(text_writes) == 1 and Acknowledge(conn, 50) in effects
    assert e.documents["d"].text == final


def test_a_link_ahead_of_its_causes_is_paused_then_resumed():
    e = engine()
    now = 0.0
    e.link_opened(5, False, "b", now)
    e.peer_frame(5, pw.encode(pw.Hello(pw.VERSION, b"\x02" * 16, "b:1", 9)), now)
    e.link_opened(6, False, "c", now)
    e.peer_frame(6, pw.encode(pw.Hello(pw.VERSION, b"\x03" * 16, "c:1", 9)), now)
    updates, final = typing(LINK_PAUSE + 4)
    effects = []
    for update in updates[1:]:
        effects += e.peer_frame(5, pw.encode(pw.Update("d", update)), now)
    assert PauseLink(5) in effects
    effects = e.peer_frame(6, pw.encode(pw.Update("d", updates[0])), now)
    assert ResumeLink(5) in effects
    assert e.documents["d"].text == final


def test_a_link_waiting_for_causes_a_browser_brings_is_resumed_at_once():
    e = engine()
    e.link_opened(5, False, "b", 0.0)
    e.peer_frame(5, pw.encode(pw.Hello(pw.VERSION, b"\x02" * 16, "b:1", 9)), 0.0)
    updates, final = typing(LINK_PAUSE + 4)
    effects = []
    for update in updates[1:]:
        effects += e.peer_frame(5, pw.encode(pw.Update("d", update)), 0.0)
    assert PauseLink(5) in effects
    # The cause is typed here (the same person in a browser of this peer):
    # the link is read again now, not when stuck_after runs out.
    browser, _ = e.connect("d", 0.1)
    e.frame(browser, ywire.encode_sync_update(updates[0]), 0.1)
    effects = run(e, 0.1)
    assert ResumeLink(5) in effects
    assert e.documents["d"].text == final
    # Nothing waits any more: no sync is asked for later.
    later = e.tick(3.0)
    assert not any(isinstance(x, SendPeer) and isinstance(pw.decode(x.data), pw.SyncStep1) for x in later)


def test_a_long_burst_ahead_of_its_causes_pauses_the_browser_before_anything_overflows():
    """A browser that sends more updates than a document may hold waiting,
    all ahead of their causes, in one burst (the shell reads frames as they
    come until told to pause)."""
    e = engine()
    ahead, _ = e.connect("d", 0.0)
    updates, _ = typing(MAX_PENDING_UPDATES + 200)
    effects: list = []
    for update in updates[1:]:
        effects += e.frame(ahead, ywire.encode_sync_update(update), 0.0)
        if PauseBrowser(ahead) in effects:
            break
    effects += run(e, 0.0)
    assert PauseBrowser(ahead) in effects, "never paused"
    resynced_or_closed = [x for x in effects if isinstance(x, (SendBrowser, CloseBrowser)) and x.conn == ahead]
    assert not resynced_or_closed
    assert e.documents["d"].pending_count() < MAX_PENDING_UPDATES


def test_a_link_whose_causes_never_come_is_asked_for_a_diff_not_closed():
    e = engine()
    e.link_opened(5, False, "b", 0.0)
    e.peer_frame(5, pw.encode(pw.Hello(pw.VERSION, b"\x02" * 16, "b:1", 9)), 0.0)
    updates, _ = typing(LINK_PAUSE + 4)
    for update in updates[1:]:
        e.peer_frame(5, pw.encode(pw.Update("d", update)), 0.0)
    effects = e.tick(2.5)  # past stuck_after (2 s), well before the link would count as dead
    assert ResumeLink(5) in effects
    asks = [pw.decode(x.data) for x in effects if isinstance(x, SendPeer) and x.link == 5]
    assert any(isinstance(m, pw.SyncStep1) and m.name == "d" for m in asks)
    assert 5 in e.node.links and not e.node.links[5].closing


def _clients(update: bytes) -> set[int]:
    from crdt.yupdate import parse_update

    return set(parse_update(update).ranges)
