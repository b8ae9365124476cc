"""The storage port: what the core needs from durable storage, and an
in-memory implementation for tests and the simulator.

A store keeps, per document, a log of updates ordered by a sequence number
(never by wall clock) and at most one snapshot that replaces a prefix of that
log. Writes arrive in batches; a batch is durable as a whole or not at all.
Every implementation passes the contract suite in ``tests/store/contract.py``.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from crdt.compaction import merge_log

# Compact a document once its log holds this many updates since the snapshot:
# loading stays fast and the compaction itself stays a few milliseconds.
COMPACT_AFTER_UPDATES = 500


@dataclass(frozen=True, slots=True)
class Write:
    """One entry of a write batch. ``update`` appends to the document's log;
    ``length`` (code points) and ``at`` (seconds since the epoch, display
    only) refresh its listing. A write with neither creates the document. A
    *forget* write removes the document and everything stored of it. ``text``
    (the document's whole text) replaces what the search index holds of it:
    derived data, refreshed now and then, never needed to load a document."""

    name: str
    update: bytes | None = None
    length: int | None = None
    at: float = 0.0
    forget: bool = False
    text: str | None = None


@dataclass(frozen=True, slots=True)
class DocumentInfo:
    name: str
    length: int
    created_at: float
    updated_at: float


class Store(Protocol):
    def documents(self) -> list[DocumentInfo]:
        """Every document, sorted by name."""

    def load(self, name: str) -> list[bytes]:
        """The document's snapshot (if any) then its logged updates, in order.
        An unknown document loads as ``[]``. Raises StoreCorrupt if stored
        data cannot be read back."""

    def write(self, batch: Sequence[Write]) -> list[str]:
        """Make the batch durable, atomically. Returns the names of documents
        whose log has grown past COMPACT_AFTER_UPDATES."""

    def compact(self, name: str) -> None:
        """Replace the document's snapshot and log by one verified snapshot."""

    def search(self, text: str) -> list[str]:
        """The documents whose indexed text contains *text*, as literal
        text, ignoring case; *text* of fewer than SEARCH_MIN_CHARS
        characters matches nothing."""

    def indexed(self) -> dict[str, int]:
        """Every document the search index holds, with the
        :func:`text_fingerprint` of the text it holds."""

    def close(self) -> None: ...


# The shortest text searched for inside documents (the index is made of
# trigrams; one or two characters would match nearly every document).
SEARCH_MIN_CHARS = 3


def text_fingerprint(text: str) -> int:
    """What the search index keeps to tell that a text changed."""
    return zlib.crc32(text.encode("utf-8", "surrogatepass")) ^ (len(text) << 32)


@dataclass(slots=True)
class _MemoryDoc:
    info: DocumentInfo
    snapshot: bytes | None = None
    log: list[tuple[int, bytes]] = field(default_factory=list)


class MemoryStore:
    """A Store in a dict. Survives "restarts" of the objects that use it, not
    of the process: for tests and the simulator."""

    def __init__(self) -> None:
        self._docs: dict[str, _MemoryDoc] = {}
        self._seq = 0
        self._last_batch: list[tuple[str, int]] = []
        self._texts: dict[str, str] = {}  # the search index: name -> text, lower case
        self._fingerprints: dict[str, int] = {}
        self.closed = False

    def documents(self) -> list[DocumentInfo]:
        return [self._docs[n].info for n in sorted(self._docs)]

    def load(self, name: str) -> list[bytes]:
        doc = self._docs.get(name)
        if doc is None:
            return []
        head = [doc.snapshot] if doc.snapshot is not None else []
        return head + [data for _, data in doc.log]

    def write(self, batch: Sequence[Write]) -> list[str]:
        self._last_batch = []
        grown: list[str] = []
        for w in batch:
            if w.forget:
                self._docs.pop(w.name, None)
                self._texts.pop(w.name, None)
                self._fingerprints.pop(w.name, None)
                continue
            if w.text is not None:
                self._texts[w.name] = w.text.lower()
                self._fingerprints[w.name] = text_fingerprint(w.text)
            doc = self._docs.get(w.name)
            if doc is None:
                doc = self._docs[w.name] = _MemoryDoc(DocumentInfo(w.name, 0, w.at, w.at))
            info = doc.info
            if w.update is not None:
                self._seq += 1
                doc.log.append((self._seq, w.update))
                self._last_batch.append((w.name, self._seq))
                if len(doc.log) > COMPACT_AFTER_UPDATES and w.name not in grown:
                    grown.append(w.name)
            if w.update is not None or w.length is not None:
                length = info.length if w.length is None else w.length
                doc.info = DocumentInfo(info.name, length, info.created_at, max(info.updated_at, w.at))
        return grown

    def compact(self, name: str) -> None:
        doc = self._docs.get(name)
        if doc is None:
            return
        snapshot = merge_log(name, self.load(name))
        doc.snapshot = snapshot
        doc.log = []

    def search(self, text: str) -> list[str]:
        if len(text) < SEARCH_MIN_CHARS:
            return []
        lowered = text.lower()  # as SQLite's trigram tokenizer folds case
        return sorted(name for name, indexed in self._texts.items() if lowered in indexed)

    def indexed(self) -> dict[str, int]:
        return dict(self._fingerprints)

    def tear_last_write(self) -> None:
        """Forget the last batch, as a crash in the middle of it would."""
        for name, seq in self._last_batch:
            doc = self._docs[name]
            doc.log = [(s, d) for s, d in doc.log if s != seq]
        self._last_batch = []

    def close(self) -> None:
        self.closed = True
