"""One replica of one document: a pycrdt ``Doc`` whose text is the root
``Text`` named ``content``, behind a causal gate. The document keeps its
deleted content (``skip_gc``), and two more roots hold its history
(``crdt.history``).

Rules kept here:

* pycrdt is never handed an update before the updates it builds on (Yrs
  diverges otherwise); early updates wait in a bounded buffer.
* Every change is applied inside a transaction with an origin, so undo in any
  replica only ever reverts its own author's edits.
* The observer only captures the bytes of each transaction; it never touches
  the document it observes (pycrdt raises "Already mutably borrowed").
* Positions given to pycrdt ``Text`` count UTF-8 bytes; Python positions count
  code points. :func:`utf8_offset` converts.
"""

from __future__ import annotations

import hashlib
from bisect import bisect_right
from collections.abc import Callable, Hashable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from pycrdt import Array, Doc, Map, Text, TransactionEvent

from crdt.errors import LocalProtocolError, RemoteProtocolError, is_crdt_error
from crdt.yupdate import (
    DeleteRanges,
    StateVector,
    UpdateInfo,
    decode_state_vector,
    delete_set_of,
    encode_state_vector,
    parse_update,
)

TEXT_NAME = "content"
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

Origin = Hashable
_EMPTY_UPDATE = b"\x00\x00"  # no structs, no deletions


@dataclass(frozen=True, slots=True)
class Change:
    """A transaction that changed the replica: the bytes it integrated, as a
    v1 update, and who caused it."""

    update: bytes
    origin: Origin


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


def _fingerprint(doc: Doc[Text], text: str) -> tuple[str, StateVector, list[tuple[int, int, int]]]:
    return text, decode_state_vector(doc.get_state()), delete_set_of(doc.get_update(doc.get_state()))


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


def utf8_offset(text: str, index: int) -> int:
    """The pycrdt (UTF-8 byte) position of code-point position *index*."""
    return len(text[:index].encode("utf-8"))


class Document:
    """A document replica. Not thread-safe: pycrdt documents belong to the
    thread that made them."""

    def __init__(self, name: str, client_id: int) -> None:
        if not 0 < client_id < 2**32:
            raise LocalProtocolError("client id must be a 32-bit positive integer")
        self.name = name
        # Deleted content is kept: every version of the history stays readable (crdt.history).
        self._doc: Doc[Any] = Doc(client_id=client_id, skip_gc=True)
        self._text: Text = self._doc.get(TEXT_NAME, type=Text)
        self._captured: list[bytes] = []
        self._sv: StateVector | None = None
        self._pending: list[_Pending] = []
        self._pending_bytes = 0
        self._digest: bytes | None = None
        self._deletes: dict[int, tuple[list[int], list[int]]] | None = None  # client -> (starts, ends)
        self.size = 0  # bytes of the updates integrated so far (see MAX_DOCUMENT_BYTES)
        self.refused = 0  # buffered updates dropped because the CRDT refused them
        self.generation = 0  # grows with every change: lets callers cache what they derive
        self._subscription = self._doc.observe(self._on_transaction)

    # -- reading -----------------------------------------------------------

    @property
    def text(self) -> str:
        return str(self._text)

    @property
    def client_id(self) -> int:
        """The client id this replica authors its own changes with."""
        return int(self._doc.client_id)

    def state_vector(self) -> StateVector:
        if self._sv is None:
            self._sv = decode_state_vector(self._doc.get_state())
        return dict(self._sv)

    def encode_state_vector(self) -> bytes:
        return self._doc.get_state()

    def encode_state(self) -> bytes:
        """The whole document as one update."""
        return self._doc.get_update()

    def diff(self, remote_state_vector: bytes) -> bytes:
        """What a replica at *remote_state_vector* lacks, as one update.
        The state vector is validated first: pycrdt must not see garbage."""
        decode_state_vector(remote_state_vector)
        return self._doc.get_update(remote_state_vector)

    def digest(self) -> bytes:
        """16-byte hash of the name, state vector *and* delete set, both in
        canonical form: deletions leave the state vector unchanged, and
        pycrdt's state-vector bytes are in hash-map order."""
        if self._digest is None:
            h = hashlib.blake2b(digest_size=16)
            h.update(self.name.encode())
            h.update(b"\0")
            h.update(encode_state_vector(self.state_vector()))
            for client, clock, length in self.delete_set():
                h.update(b"%d:%d:%d;" % (client, clock, length))
            self._digest = h.digest()
        return self._digest

    def delete_set(self) -> DeleteRanges:
        """Every range this replica has deleted, sorted and merged."""
        # An update against our own state vector holds no structs, only the
        # complete delete set: the cheap way to read it.
        return delete_set_of(self._doc.get_update(self._doc.get_state()))

    def covers(self, ends: Iterable[tuple[int, int]], deletes: Iterable[tuple[int, int, int]]) -> bool:
        """True when this replica has every client up to the clock given and
        has deleted every range given (what an IHAVE names)."""
        sv = self.state_vector() if self._sv is None else self._sv
        if any(sv.get(client, 0) < clock for client, clock in ends):
            return False
        ranges = None
        for client, clock, length in deletes:
            if ranges is None:
                ranges = self._delete_index()
            starts, stops = ranges.get(client, ((), ()))
            i = bisect_right(starts, clock) - 1  # the merged range that starts at or before clock
            if i < 0 or stops[i] < clock + length:
                return False
        return True

    def _delete_index(self) -> dict[int, tuple[list[int], list[int]]]:
        if self._deletes is None:
            index: dict[int, tuple[list[int], list[int]]] = {}
            for client, clock, length in self.delete_set():
                starts, stops = index.setdefault(client, ([], []))
                starts.append(clock)
                stops.append(clock + length)
            self._deletes = index
        return self._deletes

    def pending_count(self) -> int:
        return len(self._pending)

    def pending_from(self, origin: Origin) -> bool:
        return any(p.origin == origin for p in self._pending)

    def pending_count_from(self, origin: Origin) -> int:
        return sum(1 for p in self._pending if p.origin == origin)

    # -- writing -----------------------------------------------------------

    def load(self, updates: Iterable[bytes]) -> None:
        """Apply updates read back from the local store, in stored order.
        They were integrated here before, so they are causal by construction."""
        for update in updates:
            self._doc.apply_update(update)
            self.size += len(update)
        self._captured.clear()
        self._sv = None
        self._digest = None
        self._deletes = None
        self.generation += 1

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

    def edit(self, origin: Origin, *, insert: str = "", at: int = 0, delete: int = 0) -> list[Change]:
        """Author a change here: delete *delete* code points at code-point
        position *at*, then insert *insert* there."""
        current = self.text
        if not 0 <= at <= len(current) or delete < 0 or at + delete > len(current):
            raise LocalProtocolError("edit outside the text")
        start = utf8_offset(current, at)
        with self._doc.transaction(origin=origin):
            if delete:
                end = utf8_offset(current, at + delete)
                del self._text[start:end]
            if insert:
                self._text.insert(start, insert)
        return self._take(origin)

    # -- the other roots (history, authors) ----------------------------------

    def root_array(self, name: str) -> list[Any]:
        root: Array[Any] = self._doc.get(name, type=Array)
        return list(root.to_py() or [])

    def root_map(self, name: str) -> dict[str, Any]:
        root: Map[Any] = self._doc.get(name, type=Map)
        value = root.to_py()
        return dict(value) if isinstance(value, dict) else {}

    def write_root_array(self, name: str, write: Callable[[Array[Any]], None], origin: Origin) -> list[Change]:
        """Change the root array *name* in one transaction authored here."""
        root = self._doc.get(name, type=Array)
        with self._doc.transaction(origin=origin):
            write(root)
        return self._take(origin)

    def write_root_map(self, name: str, write: Callable[[Map[Any]], None], origin: Origin) -> list[Change]:
        root = self._doc.get(name, type=Map)
        with self._doc.transaction(origin=origin):
            write(root)
        return self._take(origin)

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
        scratch: Doc[Text] = Doc(client_id=client_id, skip_gc=True)
        text = scratch.get(TEXT_NAME, type=Text)
        scratch.apply_update(self._doc.get_update())
        current = self.text
        captured: list[bytes] = []
        subscription = scratch.observe(lambda event: captured.append(bytes(event.update)))
        with scratch.transaction():
            for at, delete, insert in reversed(edits):
                start = utf8_offset(current, at)
                if delete:
                    del text[start : utf8_offset(current, at + delete)]
                if insert:
                    text.insert(start, insert)
        scratch.unobserve(subscription)
        changes: list[Change] = []
        for update in captured:
            changes += self.receive(update, origin)
        return changes

    @staticmethod
    def text_of(update: bytes) -> str:
        """The text of a document that *update* builds from nothing."""
        doc: Doc[Text] = Doc(skip_gc=True)
        text = doc.get(TEXT_NAME, type=Text)
        doc.apply_update(update)
        return str(text)

    # -- internals ---------------------------------------------------------

    def _apply(self, update: bytes, info: UpdateInfo, origin: Origin, sv: StateVector) -> list[Change]:
        """Apply one ready update (a buffered one, now released)."""
        if info.is_known(sv):
            return []
        if _overlaps(info, sv):
            self._check_on_scratch(update)
        return self._apply_run([update], origin, _after(sv, info))

    def _apply_run(self, run: list[bytes], origin: Origin, after: StateVector) -> list[Change]:
        """Apply ready updates, in order, in one transaction. *after* is the
        state vector they lead to: ready means every cause is here, so Yrs
        integrates every struct and the state vector follows from the
        updates' ranges (reading it back from pycrdt costs more)."""
        try:
            with self._doc.transaction(origin=origin):
                for update in run:
                    self._doc.apply_update(update)
        except BaseException as exc:  # pycrdt raises ValueError/RuntimeError, and PanicException (a BaseException)
            if not is_crdt_error(exc):
                raise
            self._captured.clear()
            self._sv = None
            raise RemoteProtocolError(f"update refused by the CRDT: {exc}") from exc
        self._sv = dict(after)
        return self._take(origin)

    def _check_on_scratch(self, update: bytes) -> None:
        """Apply *update* to a copy, then replay the copy the way the store
        would (state, then the new delta): refuse what does not survive."""
        try:
            scratch: Doc[Text] = Doc(skip_gc=True)
            scratch.get(TEXT_NAME, type=Text)
            base = self._doc.get_update()
            scratch.apply_update(base)
            deltas: list[bytes] = []
            subscription = scratch.observe(lambda event: deltas.append(bytes(event.update)))
            scratch.apply_update(update)
            scratch.unobserve(subscription)
            replay: Doc[Text] = Doc(skip_gc=True)
            replayed = replay.get(TEXT_NAME, type=Text)
            replay.apply_update(base)
            for delta in deltas:
                parse_update(delta)  # what we would store and push must be readable
                replay.apply_update(delta)
            same = _fingerprint(replay, str(replayed)) == _fingerprint(scratch, str(scratch.get(TEXT_NAME, type=Text)))
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

    def _take(self, origin: Origin) -> list[Change]:
        captured, self._captured = self._captured, []
        self.size += sum(len(update) for update in captured)
        return [Change(update, origin) for update in captured if update != _EMPTY_UPDATE]

    def _on_transaction(self, event: TransactionEvent) -> None:
        # Runs inside the write transaction: capture bytes, touch nothing.
        self._captured.append(bytes(event.update))
        self._sv = None
        self._digest = None
        self._deletes = None
        self.generation += 1
