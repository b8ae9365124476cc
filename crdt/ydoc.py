"""The pycrdt state under one document replica: a ``Doc`` whose text is the
root ``Text`` named ``content`` (two more roots hold its history,
``crdt.history``), the changes it makes, and what is read from it.

This class applies what it is given, in the order given. Deciding *when* an
update from the network may be applied (the causal gate) is the business of
:class:`crdt.document.Document`, which builds on it.

Rules kept here:

* Deleted content is kept (``skip_gc``): every version of the history stays
  readable.
* Every change is applied inside a transaction with an origin, so undo in any
  replica only ever reverts its own author's edits.
* The observer only captures the bytes of each transaction; it never touches
  the document it observes (pycrdt raises "Already mutably borrowed"). Each
  transaction bumps :attr:`YDoc.generation` and drops what was read (state
  vector, digest, delete index).
* The digest covers the state vector *and* the delete set, both in canonical
  form.
"""

from __future__ import annotations

import hashlib
import weakref
from bisect import bisect_right
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass
from typing import Any

from pycrdt import Array, Doc, Map, Text, TransactionEvent

from crdt import ytext
from crdt.errors import LocalProtocolError, RemoteProtocolError, is_crdt_error
from crdt.ytext import TEXT_NAME, utf8_offset
from crdt.yupdate import DeleteRanges, StateVector, decode_state_vector, delete_set_of, encode_state_vector

Origin = Hashable
# The roots that hold a document's life (``crdt.meta``): a change to any of
# them sets :attr:`YDoc.life_changed`, so the registry reads them only then.
LIFE_ROOTS = ("meshpad:meta", "meshpad:names", "meshpad:deletes", "meshpad:restores", "meshpad:forgotten")
_EMPTY_UPDATE = b"\x00\x00"  # no structs, no deletions


@dataclass(frozen=True, slots=True)
class Change:
    """A transaction that changed the replica: the bytes it integrated, as a
    v1 update, and who caused it."""

    update: bytes
    origin: Origin


def _weakly(method: Callable[[Any], None]) -> Callable[[Any], None]:
    """An observer that calls *method* while its object lives. pycrdt holds
    observers from Rust, where Python's collector cannot see a cycle (YDoc →
    Doc → observer → YDoc): a strong one would keep every YDoc ever made,
    and an unloaded document would never leave memory."""
    ref = weakref.WeakMethod(method)

    def observe(event: Any) -> None:
        bound = ref()
        if bound is not None:
            bound(event)

    return observe


def _drop(subscriptions: list[Any]) -> None:
    """pycrdt's own observer of a Doc holds the Doc (from Rust, out of the
    collector's sight): only dropping the subscriptions lets the Doc go."""
    for subscription in subscriptions:
        subscription.drop()


class YDoc:
    """A document's pycrdt state. Not thread-safe: pycrdt documents belong to
    the thread that made them."""

    def __init__(self, name: str, client_id: int) -> None:
        if not 0 < client_id < 2**32:
            raise LocalProtocolError("client id must be a 32-bit positive integer")
        self.name = name
        # Deleted content is kept: every version of the history stays readable (crdt.history).
        self._doc: Doc[Any] = Doc(client_id=client_id, skip_gc=True)
        self._text: Text = self._doc.get(TEXT_NAME, type=Text)
        self._captured: list[bytes] = []
        self._sv: StateVector | None = None
        self._digest: bytes | None = None
        self._deletes: dict[int, tuple[list[int], list[int]]] | None = None  # client -> (starts, ends)
        self.size = 0  # bytes of the updates integrated so far (see crdt.document.MAX_DOCUMENT_BYTES)
        self.generation = 0  # grows with every change: lets callers cache what they derive
        self._subscription = self._doc.observe(_weakly(self._on_transaction))
        self.life_changed = False
        self._life = [self._doc.get(root, type=Map).observe(_weakly(self._on_life)) for root in LIFE_ROOTS]
        weakref.finalize(self, _drop, [self._subscription, *self._life]).atexit = False

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

    @staticmethod
    def text_of(update: bytes) -> str:
        """The text of a document that *update* builds from nothing."""
        return ytext.text_of(update)

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

    # -- internals ---------------------------------------------------------

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

    def _take(self, origin: Origin) -> list[Change]:
        captured, self._captured = self._captured, []
        self.size += sum(len(update) for update in captured)
        return [Change(update, origin) for update in captured if update != _EMPTY_UPDATE]

    def _on_life(self, event: object) -> None:
        self.life_changed = True  # inside the transaction: a flag, nothing more

    def _on_transaction(self, event: TransactionEvent) -> None:
        # Runs inside the write transaction: capture bytes, touch nothing.
        self._captured.append(bytes(event.update))
        self._sv = None
        self._digest = None
        self._deletes = None
        self.generation += 1
