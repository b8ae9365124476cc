"""One replica of one document: its pycrdt state (:class:`crdt.ydoc.YDoc`)
behind a causal gate, which decides when an update from the network may be
applied.

Rules kept here:

* pycrdt is never handed an update before the updates it builds on (Yrs
  diverges otherwise); early updates wait in a bounded buffer.
* An update that starts inside what this replica has of a client is tried on
  a copy first (:func:`crdt.ytext.survives_reload`) and refused if the copy
  does not survive a reload.
* No document grows past MAX_DOCUMENT_BYTES: an update that would take it
  there is refused whole, before it is parsed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from pycrdt import merge_updates

from crdt import ytext
from crdt.errors import LocalProtocolError, RemoteProtocolError, is_crdt_error
from crdt.ydoc import Change as Change  # the core imports Change from here, with Document
from crdt.ydoc import Origin, YDoc
from crdt.yupdate import StateVector, UpdateInfo, parse_update, simple_span

# An update that arrives ahead of its causes waits here. The bounds keep a
# peer that sends only orphans from growing memory without limit; past them
# the sender is told to resynchronise (see BufferFull).
MAX_PENDING_UPDATES = 1_000
MAX_PENDING_BYTES = 8 * 1024 * 1024
# Largest document, counted as the bytes of the updates it was built from. A
# book is a few MB of text; this stops a peer or browser from filling the
# disk and memory through one document, and keeps a whole-document sync
# within one 16 MiB frame.
MAX_DOCUMENT_BYTES = 12 * 1024 * 1024


class BufferFull(RemoteProtocolError):
    """Too many updates are waiting for their causes; resync the sender."""


class Overlaps(RemoteProtocolError):
    """The update starts inside what this replica has; resync the sender."""


class DocumentTooLarge(RemoteProtocolError):
    """The update would take the document past MAX_DOCUMENT_BYTES: it is
    refused whole, and the sender is told by how much it is over."""

    def __init__(self, name: str, over: int, limit: int = MAX_DOCUMENT_BYTES) -> None:
        super().__init__(f"document too large: {over} bytes over the limit of {limit} bytes")
        self.name = name
        self.over = over
        self.limit = limit


# A batch this long is first tried merged (one parse instead of one per update).
_MERGE_AT_LEAST = 8


def _after(sv: StateVector, info: UpdateInfo) -> StateVector:
    """The state vector once *info*'s update is applied on top of *sv*."""
    after = dict(sv)
    for client, (_, end) in info.ranges.items():
        if after.get(client, 0) < end:
            after[client] = end
    return after


def _overlaps(info: UpdateInfo, sv: StateVector) -> bool:
    return any(start < sv.get(client, 0) < end for client, (start, end) in info.ranges.items())


@dataclass(slots=True)
class _Pending:
    update: bytes
    info: UpdateInfo
    origin: Origin


class Document(YDoc):
    """A document replica. Not thread-safe: pycrdt documents belong to the
    thread that made them."""

    def __init__(self, name: str, client_id: int) -> None:
        super().__init__(name, client_id)
        self._pending: list[_Pending] = []
        self._pending_bytes = 0
        self.refused = 0  # buffered updates dropped because the CRDT refused them

    # -- the causal gate -----------------------------------------------------

    def pending_count(self) -> int:
        return len(self._pending)

    def pending_from(self, origin: Origin) -> bool:
        return any(p.origin == origin for p in self._pending)

    def pending_count_from(self, origin: Origin) -> int:
        return sum(1 for p in self._pending if p.origin == origin)

    def receive(self, update: bytes, origin: Origin) -> list[Change]:
        """Apply an update from the network once its causes are here.

        Returns the changes integrated (this update and any buffered ones it
        released), in order. Raises :class:`RemoteProtocolError` for a
        malformed update and :class:`BufferFull` when it cannot wait.
        """
        changes, error = self.receive_many([update], origin)
        if error is not None:
            raise error
        return changes

    def receive_many(self, updates: Sequence[bytes], origin: Origin) -> tuple[list[Change], RemoteProtocolError | None]:
        """Apply updates from one sender, in order, each once its causes are
        here; consecutive ready updates share one transaction (one change to
        store and send on, not one per keystroke).

        Stops at the first update that is refused and returns the changes of
        those before it with the error (the sender's connection is then
        closed); ``(changes, None)`` when all were taken.

        An update that starts inside what this replica already has of a
        client and runs past it is common (relays race each other) and Yrs
        keeps only its unknown part; but if the client id was reused with
        other content (a broken or hostile client) that part can be garbage
        that no replica can load again. Such an update is tried on a scratch
        copy first and refused with :class:`Overlaps` if the result does not
        survive a reload; the sender is then asked for an exact diff.
        """
        if len(updates) >= _MERGE_AT_LEAST:
            merged = self._receive_merged(updates, origin)
            if merged is not None:
                return merged, None
        changes: list[Change] = []
        run: list[bytes] = []
        sv = self.state_vector()  # as it will be once the run is applied
        size = self.size
        error: RemoteProtocolError | None = None
        try:
            for update in updates:
                if size + len(update) > MAX_DOCUMENT_BYTES:  # before parsing: a refused paste costs nothing
                    raise DocumentTooLarge(self.name, size + len(update) - MAX_DOCUMENT_BYTES)
                info = parse_update(update)
                ranges = info.ranges
                if not ranges and not info.deletes:
                    continue
                # info.is_ready, is_known and _overlaps in one pass: this runs per keystroke.
                ready = True
                for client, clock in info.needs.items():
                    if sv.get(client, 0) < clock:
                        ready = False
                        break
                if not ready:
                    self._wait(update, info, origin)
                    continue
                fresh = bool(info.deletes)
                overlap = False
                for client, (start, end) in ranges.items():
                    have = sv.get(client, 0)
                    if have < end:
                        fresh = True
                        overlap = overlap or start < have
                if not fresh:
                    continue
                if overlap:
                    if run:
                        batch, run = run, []
                        changes += self._apply_run(batch, origin, sv)
                    self._check_on_scratch(update)
                    changes += self._apply_run([update], origin, _after(sv, info))
                    sv = self.state_vector()
                else:
                    run.append(update)
                    for client, (_, end) in ranges.items():
                        if sv.get(client, 0) < end:
                            sv[client] = end
                size += len(update)
        except RemoteProtocolError as exc:
            error = exc
        if run:
            try:
                changes += self._apply_run(run, origin, sv)
            except RemoteProtocolError as exc:
                error = error or exc
        if self._pending and changes:
            changes.extend(self._drain_pending())
        return changes, error

    def _receive_merged(self, updates: Sequence[bytes], origin: Origin) -> list[Change] | None:
        """The common case of a burst, at the cost of one parse: the updates
        merged (by Yrs, which refuses malformed ones) are one update that is
        whole, ready and new. Anything else (a refused or waiting update, one
        that overlaps what is here, a document that would grow too large)
        returns None, and the updates go one by one, each refused or kept
        waiting on its own."""
        if self._pending or self.size + sum(len(u) for u in updates) > MAX_DOCUMENT_BYTES:
            return None
        # Each client's items must follow one another without overlapping:
        # Yrs's merge keeps one of two items that reuse a clock, and the
        # replica would then disagree with what it stores (a client id
        # reused with other content is refused on its own, below).
        ends: dict[int, int] = {}
        for update in updates:
            span = simple_span(update)
            if span is None:
                return None
            if span is True:
                continue
            client, start, end = span  # type: ignore[misc]
            if ends.get(client, start) != start:
                return None
            ends[client] = end
        try:
            merged = merge_updates(*updates)
            info = parse_update(merged)
        except BaseException as exc:  # pycrdt raises ValueError, or PanicException (a BaseException)
            if isinstance(exc, RemoteProtocolError) or is_crdt_error(exc):
                return None
            raise
        sv = self.state_vector()
        if any(sv.get(client, 0) < clock for client, clock in info.needs.items()) or _overlaps(info, sv):
            return None
        if info.is_known(sv):
            return []
        try:
            return self._apply_run([merged], origin, _after(sv, info))
        except RemoteProtocolError:
            return None

    def _wait(self, update: bytes, info: UpdateInfo, origin: Origin) -> None:
        if len(self._pending) >= MAX_PENDING_UPDATES or self._pending_bytes + len(update) > MAX_PENDING_BYTES:
            raise BufferFull(f"{self.name}: too many updates waiting for their causes")
        self._pending.append(_Pending(update, info, origin))
        self._pending_bytes += len(update)

    def drop_pending(self, origin: Origin) -> int:
        """Forget the buffered updates of *origin* (its link closed and it will
        resynchronise); return how many were dropped."""
        kept = [p for p in self._pending if p.origin != origin]
        dropped = len(self._pending) - len(kept)
        self._pending = kept
        self._pending_bytes = sum(len(p.update) for p in kept)
        return dropped

    def edit_as(self, client_id: int, edits: Sequence[tuple[int, int, str]], origin: Origin) -> list[Change]:
        """Apply *edits* ((at, delete, insert), in code points of the current
        text, in increasing order, not overlapping) as one change authored by
        *client_id* (a fresh id, so that the change can be attributed to
        someone other than this replica)."""
        if not 0 < client_id < 2**32:
            raise LocalProtocolError("client id must be a 32-bit positive integer")
        if client_id in self.state_vector():
            raise LocalProtocolError("edit_as needs a client id this document has never seen")
        if not edits:
            return []
        changes: list[Change] = []
        for update in ytext.edits_as(self._doc.get_update(), self.text, client_id, edits):
            changes += self.receive(update, origin)
        return changes

    # -- internals ---------------------------------------------------------

    def _apply(self, update: bytes, info: UpdateInfo, origin: Origin, sv: StateVector) -> list[Change]:
        """Apply one ready update (a buffered one, now released)."""
        if info.is_known(sv):
            return []
        if _overlaps(info, sv):
            self._check_on_scratch(update)
        return self._apply_run([update], origin, _after(sv, info))

    def _check_on_scratch(self, update: bytes) -> None:
        """Apply *update* to a copy, then replay the copy the way the store
        would (state, then the new delta): refuse what does not survive."""
        try:
            same = ytext.survives_reload(self._doc.get_update(), update)
        except RemoteProtocolError as exc:
            raise Overlaps(f"{self.name}: overlapping update leaves unreadable data: {exc}") from exc
        except BaseException as exc:
            if not is_crdt_error(exc):
                raise
            raise Overlaps(f"{self.name}: overlapping update does not survive a reload: {exc}") from exc
        if not same:
            raise Overlaps(f"{self.name}: overlapping update does not survive a reload")

    def _drain_pending(self) -> list[Change]:
        changes: list[Change] = []
        progressed = True
        while progressed and self._pending:
            progressed = False
            sv = self.state_vector()
            for item in list(self._pending):
                if item.info.is_ready(sv):
                    self._pending.remove(item)
                    self._pending_bytes -= len(item.update)
                    try:
                        changes.extend(self._apply(item.update, item.info, item.origin, sv))
                    except RemoteProtocolError:
                        # Its sender is not the one calling now: drop it, keep
                        # the changes of the update that released it.
                        self.refused += 1
                    sv = self.state_vector()
                    progressed = True
        return changes
