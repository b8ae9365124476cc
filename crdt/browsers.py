"""The browser connections of a peer, sans-IO: frames in, acknowledgements
and backpressure out.

Owns: every browser connection (its document, the frames read and not yet
handled, how many it has had handled, whether it is being resynchronised),
the browsers whose updates wait for their causes (per document), and those
not read from (since when). What a frame does to a document is the
session's (``crdt.session``); the engine hands each batch to it.

Rules kept here (numbered as in ``crdt.engine``):

1. Frames that arrive from one browser before the engine next runs are one
   batch, at most ``INBOX_BATCH`` of them (well under what a document may
   hold waiting, so that a batch of updates that all wait pauses the
   browser instead of overflowing); a browser that already waits for causes
   is read ``PAUSE_PENDING`` frames at a time. A refused frame closes that
   connection; the frames before it still count.
3. A browser is told its frames are processed (:class:`Acknowledge`) only
   once none of its updates waits for its causes, and never while it is
   being resynchronised until its answer (a sync step 2) is in.
6. Backpressure instead of disconnects: a browser with ``PAUSE_PENDING``
   updates waiting is not read from (:class:`PauseBrowser`) until they fall
   under half of it. One whose causes have not come after ``RESYNC_AFTER``,
   or whose updates cannot wait, is resynchronised in-band: its waiting
   updates are dropped and it gets a sync step 1, whose answer carries every
   cause. It is never closed for it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from crdt import ywire
from crdt.document import BufferFull, DocumentTooLarge
from crdt.session import DocumentSession
from crdt.session import Effect as SessionEffect

INBOX_BATCH = 256
PAUSE_PENDING = 16
RESYNC_AFTER = 3.0

BrowserId = int
_STEP2 = bytes([ywire.MESSAGE_SYNC, ywire.SYNC_STEP2])
_EMPTY_UPDATE_FRAME = 5  # sync, step 2, length 2, an update with no structs and no deletes


def _carries_change(frame: bytes) -> bool:
    return len(frame) >= 2 and frame[0] == ywire.MESSAGE_SYNC and frame[1] in (ywire.SYNC_UPDATE, ywire.SYNC_STEP2)


@dataclass(frozen=True, slots=True)
class SendBrowser:
    conn: BrowserId
    data: bytes


@dataclass(frozen=True, slots=True)
class CloseBrowser:
    conn: BrowserId
    reason: str
    code: int | None = None  # None: 1008 for a protocol error, else 1000


@dataclass(frozen=True, slots=True)
class PauseBrowser:
    """Stop reading from this browser (rule 6)."""

    conn: BrowserId


@dataclass(frozen=True, slots=True)
class ResumeBrowser:
    conn: BrowserId


@dataclass(frozen=True, slots=True)
class Acknowledge:
    """The first *frames* frames of a browser connection are integrated: once
    what was written to the store before this effect is on disk, say so."""

    conn: BrowserId
    frames: int


BrowserEffect = SendBrowser | CloseBrowser | PauseBrowser | ResumeBrowser | Acknowledge


@dataclass(slots=True)
class Browser:
    name: str
    inbox: list[bytes] = field(default_factory=list)
    received: int = 0  # frames handled
    # (6) Resynchronised: some of its updates were dropped, so nothing is
    # acknowledged until its answer (a sync step 2, which carries them) is in.
    resyncing: bool = False


class Browsers:
    def __init__(
        self,
        session: Callable[[str], DocumentSession],
        integrate: Callable[[str, list[SessionEffect], float], list[Any]],
    ) -> None:
        """*session* gives a document's session; *integrate* turns what a
        session did into the engine's effects."""
        self.session = session
        self.integrate = integrate
        self.by_id: dict[BrowserId, Browser] = {}
        self._next = 0
        self._to_read: list[BrowserId] = []  # (1) browsers with frames waiting
        self._held: dict[str, set[BrowserId]] = {}  # (3) per document, browsers with updates waiting
        self._paused: dict[BrowserId, float] = {}  # (6) browsers not read from, since when
        self.frames_refused = 0
        # A reader's peer takes no change from its browsers (crdt.access).
        self.read_only: Callable[[], bool] = lambda: False
        self.changes_refused = 0

    def open(self, name: str) -> BrowserId:
        self._next += 1
        self.by_id[self._next] = Browser(name)
        return self._next

    def frame(self, conn: BrowserId, data: bytes, now: float) -> list[Any]:
        """(1) One frame: taken with the others that came with it when the
        engine next runs."""
        browser = self.by_id.get(conn)
        if browser is None:
            return []
        browser.inbox.append(data)
        if len(browser.inbox) == 1:
            self._to_read.append(conn)
        elif len(browser.inbox) >= (PAUSE_PENDING if conn in self._held.get(browser.name, ()) else INBOX_BATCH):
            return self.read(conn, now)
        return []

    def close(self, conn: BrowserId, now: float) -> tuple[Browser | None, list[Any]]:
        """The connection is gone: what was read before it closed still
        counts. Returns the browser (None if unknown) and the effects."""
        effects = self.read(conn, now)
        browser = self.by_id.pop(conn, None)
        if browser is not None:
            self._held.get(browser.name, set()).discard(conn)
            self._paused.pop(conn, None)
        return browser, effects

    @property
    def to_read(self) -> bool:
        return bool(self._to_read)

    def read_all(self, now: float) -> list[Any]:
        effects: list[Any] = []
        while self._to_read:
            reading, self._to_read = self._to_read, []
            for conn in reading:
                effects += self.read(conn, now)
        return effects

    def read(self, conn: BrowserId, now: float) -> list[Any]:
        browser = self.by_id.get(conn)
        if browser is None or not browser.inbox:
            return []
        frames, browser.inbox = browser.inbox, []
        if self.read_only():
            kept = [f for f in frames if not _carries_change(f)]
            self.changes_refused += sum(1 for f in frames if f not in kept and len(f) > _EMPTY_UPDATE_FRAME)
            browser.received += len(frames) - len(kept)
            frames = kept
            if not frames:
                return [Acknowledge(conn, browser.received)]
        session = self.session(browser.name)
        found, error = session.receive_many(conn, frames)
        effects = self.integrate(browser.name, found, now)
        browser.received += len(frames)
        if browser.resyncing and error is None and any(f[:2] == _STEP2 for f in frames):
            browser.resyncing = False
        if isinstance(error, BufferFull):
            # (6) Its updates cannot all wait: ask it for an exact diff
            # instead of closing it.
            effects += self.resync(conn)
        elif error is not None:
            self.frames_refused += 1
            browser.received -= len(frames)
            if isinstance(error, DocumentTooLarge):
                return [*effects, CloseBrowser(conn, str(error), ywire.CLOSE_TOO_LARGE)]
            return [*effects, CloseBrowser(conn, f"protocol error: {error}")]
        waiting = session.document.pending_count_from(conn)
        if waiting:
            self._held.setdefault(browser.name, set()).add(conn)
            if waiting >= PAUSE_PENDING and conn not in self._paused:
                self._paused[conn] = now
                effects.append(PauseBrowser(conn))
        else:
            self._held.get(browser.name, set()).discard(conn)
            if not browser.resyncing:
                effects.append(Acknowledge(conn, browser.received))
        return effects

    def resync(self, conn: BrowserId) -> list[Any]:
        """(6) Drop what the browser has waiting and ask it for what this
        replica lacks: its answer (sync step 2) carries every cause."""
        browser = self.by_id.get(conn)
        if browser is None:
            return []
        doc = self.session(browser.name).document
        doc.drop_pending(conn)
        browser.resyncing = True
        self._held.get(browser.name, set()).discard(conn)
        effects: list[Any] = [SendBrowser(conn, ywire.encode_sync_step1(doc.encode_state_vector()))]
        if self._paused.pop(conn, None) is not None:
            effects.append(ResumeBrowser(conn))
        return effects

    def release(self, name: str) -> list[Any]:
        """(3, 6) Browsers whose waiting updates a change of *name* let in."""
        held = self._held.get(name)
        if not held:
            return []
        doc = self.session(name).document
        effects: list[Any] = []
        for conn in sorted(held):
            browser = self.by_id.get(conn)
            if browser is None:
                held.discard(conn)
                continue
            waiting = doc.pending_count_from(conn)
            if conn in self._paused and waiting < PAUSE_PENDING // 2:
                del self._paused[conn]
                effects.append(ResumeBrowser(conn))
            if not waiting:
                held.discard(conn)
                if not browser.resyncing:
                    effects.append(Acknowledge(conn, browser.received))
        return effects

    def tick(self, now: float) -> list[Any]:
        """(6) Resynchronise the browsers whose causes did not come in time."""
        effects: list[Any] = []
        for conn in [c for c, since in self._paused.items() if now - since >= RESYNC_AFTER]:
            effects += self.resync(conn)
        return effects

    def next_deadline(self) -> float:
        return min((since + RESYNC_AFTER for since in self._paused.values()), default=float("inf"))
