"""The catalog of documents: what the documents list shows, and what the
store holds about each document besides its updates.

Owns: every stored document's row (name, length, when made and changed),
the documents that cannot be read (they are listed, never replicated), and
which stored lengths are stale.

Rules kept here:

1. A document gets its row in the store when it is first made or arrives,
   before its first update.
2. A document's length is read from its text at most every
   ``LENGTHS_EVERY`` seconds (reading the text is O(length), too dear per
   edit) and rides with the next commit; the list reads it live meanwhile.
   A crash can leave a stored length stale, so loading recomputes it.
3. A document that cannot be read from the store, or does not decode, is
   kept out of replication (peers would otherwise repair it with their own
   copy, and what the store holds would be lost) and reported.
4. The search index (``Store.search``) holds each document's text as of
   its last indexing: the text of a changed document is indexed at most
   every ``TEXTS_EVERY`` seconds (an FTS5 rewrite of a 100 KB text costs
   tens of milliseconds of the store thread), before it leaves memory,
   when the peer stops, and before every search (so a search sees every
   change made or received before it). It rides with the next commit. At
   start, every document's text is checked against the index's
   fingerprint and indexed again where they differ (a crash, or a store
   written by a Meshpad that kept no index). A search never loads a
   document.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping

from crdt import history as hist
from crdt.document import Document
from crdt.errors import StoreError, is_crdt_error
from crdt.store import DocumentInfo, Store, Write, text_fingerprint
from server.storage import StoreThread

log = logging.getLogger(__name__)

# Seconds between two refreshes of the stored lengths of changed documents.
LENGTHS_EVERY = 1.0
# Seconds between two indexings of the texts of changed documents (rule 4).
TEXTS_EVERY = 5.0


class Catalog:
    def __init__(self, clock: Callable[[], float]) -> None:
        self.clock = clock  # seconds since the epoch
        self.rows: dict[str, DocumentInfo] = {}
        self.damaged: dict[str, str] = {}  # (3) name -> why it cannot be read
        self.dirty: set[str] = set()  # (2) documents whose stored length is stale
        self.unindexed: set[str] = set()  # (4) documents whose indexed text is stale
        self._texts_due = 0.0  # (4) wall time of the next indexing

    @property
    def stale(self) -> bool:
        """Whether a length or an indexed text waits to be stored (2, 4)."""
        return bool(self.dirty or self.unindexed)

    def load(
        self, infos: list[DocumentInfo], logs: Mapping[str, list[bytes] | StoreError], store_path: str,
        new_client_id: Callable[[], int], store: StoreThread | None = None, indexed: Mapping[str, int] | None = None,
    ) -> dict[str, Document]:  # fmt: skip
        """The documents read from the store (rule 3 for those that fail).
        Given the *store* and what its search index holds (*indexed*), the
        text of each document the index lacks or holds stale is indexed
        (rule 4)."""
        documents: dict[str, Document] = {}
        for info in infos:
            self.rows[info.name] = info
            loaded = logs[info.name]
            if isinstance(loaded, StoreError):
                self.damaged[info.name] = str(loaded)
                log.error("document %r cannot be read and will not be replicated: %s", info.name, loaded)
                continue
            doc = Document(info.name, new_client_id())
            try:
                doc.load(loaded)
            except BaseException as exc:  # pycrdt panics are BaseExceptions
                if not is_crdt_error(exc):
                    raise
                self.damaged[info.name] = f"{store_path}: document {info.name!r} does not decode: {exc}"
                log.error("%s", self.damaged[info.name])
                continue
            documents[info.name] = doc
            text = doc.text
            if store is not None and indexed is not None and indexed.get(info.name) != text_fingerprint(text):
                store.write(Write(info.name, text=text, at=info.updated_at), urgent=False)
            length = len(text)  # (2) a crash can leave the stored length stale
            if length != info.length:
                self.rows[info.name] = DocumentInfo(info.name, length, info.created_at, info.updated_at)
        return documents

    def register(self, store: StoreThread, name: str) -> None:
        """(1) A new document's row."""
        now = self.clock()
        self.rows[name] = DocumentInfo(name, 0, now, now)
        store.write(Write(name, at=now))

    def forget(self, store: StoreThread, name: str) -> None:
        """*name* was deleted forever: its row and every update go."""
        self.rows.pop(name, None)
        self.damaged.pop(name, None)
        self.dirty.discard(name)
        self.unindexed.discard(name)
        store.write(Write(name, forget=True))

    def changed(self, store: StoreThread, name: str, update: bytes, urgent: bool) -> None:
        """Store a change of *name*."""
        if name not in self.rows:
            self.register(store, name)
        now = self.clock()
        store.write(Write(name, update, at=now), urgent)
        info = self.rows[name]
        self.rows[name] = DocumentInfo(name, info.length, info.created_at, now)
        self.dirty.add(name)
        self.unindexed.add(name)

    def flush_lengths(self, store: StoreThread, documents: Mapping[str, Document]) -> None:
        """(2) Store the new length of every changed document."""
        now = self.clock()
        for name in self.dirty:
            doc = documents.get(name)
            if doc is None:
                continue
            length = len(doc.text)
            info = self.rows[name]
            self.rows[name] = DocumentInfo(name, length, info.created_at, info.updated_at)
            store.write(Write(name, length=length, at=now), urgent=False)  # rides with the next commit
        self.dirty.clear()
        if now >= self._texts_due:
            self.flush_texts(store, documents)

    def flush_texts(self, store: StoreThread, documents: Mapping[str, Document]) -> None:
        """(4) Index the text of every changed document in memory."""
        now = self.clock()
        self._texts_due = now + TEXTS_EVERY
        for name in self.unindexed:
            doc = documents.get(name)
            if doc is not None:
                store.write(Write(name, text=doc.text, at=now), urgent=False)
        self.unindexed.clear()

    async def search(self, store: StoreThread, documents: Mapping[str, Document], text: str) -> set[str]:
        """The keys of the documents whose text contains *text* (literal,
        ignoring case), up to date with every change made so far (rule 4)."""
        self.flush_texts(store, documents)
        return set(await store.call(lambda s: s.search(text)))

    def info(
        self, name: str, documents: Mapping[str, Document], recorders: Mapping[str, hist.Recorder],
        history: Callable[[str], hist.History],
    ) -> DocumentInfo:  # fmt: skip
        """What the documents list shows. The last change is the time the
        history gives (the same on every peer): this peer's open editing
        session, else the newest version; the time the change reached this
        peer only for a document without versions."""
        info = self.rows[name]
        doc = documents.get(name)
        if doc is None:
            return info
        length = len(doc.text) if name in self.dirty else info.length
        changed = info.updated_at
        recorder = recorders.get(name)
        if recorder is not None and recorder.session is not None:
            changed = recorder.session.last
        else:
            versions = history(name).versions()
            if versions:
                changed = versions[0].at
        return DocumentInfo(name, length, info.created_at, changed)


def load_some(store: Store, names: list[str]) -> dict[str, list[bytes] | StoreError]:
    """These documents' stored updates (run on the store thread)."""
    logs: dict[str, list[bytes] | StoreError] = {}
    for name in names:
        try:
            logs[name] = store.load(name)
        except StoreError as exc:
            logs[name] = exc
    return logs
