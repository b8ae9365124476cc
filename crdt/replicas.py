"""The document table: every document this peer holds, and what enters them
from links, sans-IO.

Owns: the documents, the ones that cannot be read back from the store
(*blocked*), the root digest over all of them, and the causal gate's
fallback for each document.

Rules kept here:

1. pycrdt only sees an update once its causes are local (``Document``'s
   gate). An update that waits ``stuck_after`` makes the peer ask a link for
   everything it lacks of that document; an update that cannot wait (the
   buffer is full) or starts inside what is here makes it ask the sending
   link for an exact diff.
0. The table holds every document, in one of three states: *loaded* (its
   replica is in memory), *unloaded* (only its summary is: digest, state
   vector, meta, length) or *loading*. Digests and asks read summaries;
   anything that needs the replica waits for it (``crdt.node``), so no
   message ever sees a half-loaded document.
2. A document a link names for the first time is created only if what it
   sent is valid: a refusal leaves nothing half made behind.
3. A blocked document is never created anew from a peer's data: that would
   bury the damaged copy.
4. Backpressure: a link with PAUSE_PENDING updates of one document waiting
   for causes (which are on their way on other links) is not read from
   until they come (reading resumes below half of it). If they have not come
   after ``stuck_after``, its waiting updates are dropped and it is asked for
   an exact diff: never closed.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable
from dataclasses import dataclass, field

from crdt import peerwire as pw
from crdt.document import BufferFull, Change, Document, Overlaps
from crdt.effects import (
    AwarenessIn,
    DocChanged,
    DocCreated,
    DocumentChanged,
    Effect,
    LinkId,
    PauseLink,
    ResumeLink,
    peer_origin,
)
from crdt.errors import RemoteProtocolError
from crdt.links import Link, Links
from crdt.meta import Meta
from crdt.yupdate import parse_update
from crdt.ywire import decode_awareness

PAUSE_PENDING = 32


@dataclass(frozen=True, slots=True)
class Summary:
    """What the table keeps of an unloaded document."""

    digest: bytes
    state_vector: bytes
    meta: Meta
    length: int


@dataclass(slots=True)
class Applied:
    """What an update from a link did to its document."""

    effects: list[Effect] = field(default_factory=list)
    changes: list[Change] = field(default_factory=list)
    fresh: bool = False  # it brought something (integrated now, or waiting for its causes)
    doc: Document | None = None  # None: refused, or the document is blocked


class Replicas:
    def __init__(
        self, links: Links, rng: random.Random, new_client_id: Callable[[], int], stuck_after: float,
        documents: dict[str, Document],
    ) -> None:  # fmt: skip
        self.links = links
        self.rng = rng
        self.new_client_id = new_client_id
        self.stuck_after = stuck_after
        self.documents = documents
        self.blocked: set[str] = set()
        self.forgotten: set[str] = set()  # deleted forever (crdt.meta): never made again
        self.unloaded: dict[str, Summary] = {}  # (0)
        self.loading: set[str] = set()  # (0) unloaded documents being read
        self._table = 0  # bumped when a document is loaded, unloaded or dropped
        self.used: dict[str, float] = {}  # when a link's message last named each document
        self._stuck: dict[str, float] = {}  # document -> when its oldest waiting update arrived
        self._paused: dict[LinkId, tuple[str, float]] = {}  # (4) link -> (document, since when)
        self._root: tuple[int, int, bytes] | None = None  # (documents, generations, digest)

    def document(self, name: str) -> Document:
        doc = self.documents.get(name)
        if doc is None:
            assert name not in self.unloaded, f"{name} is not loaded"
            doc = self.documents[name] = Document(name, self.new_client_id())
        return doc

    def refuses(self, name: str) -> str | None:
        """Why *name* is not served to links, or None."""
        if name in self.forgotten:
            return "deleted forever"
        if name in self.blocked:
            return "its stored copy cannot be read"
        return None

    def state_vector(self, name: str) -> bytes:
        """*name*'s state vector, encoded (empty for a document not held):
        asking for a document does not make it."""
        doc = self.documents.get(name)
        if doc is not None:
            return doc.encode_state_vector()
        summary = self.unloaded.get(name)
        return summary.state_vector if summary is not None else b"\x00"

    # -- (0) the states ---------------------------------------------------------------

    def holds(self, name: str) -> bool:
        return name in self.documents or name in self.unloaded

    def held(self) -> list[str]:
        """Every document held, loaded or not, sorted."""
        return sorted([*self.documents, *self.unloaded])

    def digest_of(self, name: str) -> bytes | None:
        doc = self.documents.get(name)
        if doc is not None:
            return doc.digest()
        summary = self.unloaded.get(name)
        return summary.digest if summary is not None else None

    def needs_load(self, name: str) -> bool:
        return name in self.unloaded

    def loaded(self, doc: Document) -> None:
        """*doc*, read back from the store, replaces its summary."""
        self.unloaded.pop(doc.name, None)
        self.loading.discard(doc.name)
        self.documents[doc.name] = doc
        self._table += 1

    def unload(self, name: str, summary: Summary) -> None:
        del self.documents[name]
        self.unloaded[name] = summary
        self._table += 1

    def busy(self, name: str) -> bool:
        """Something here waits on *name* (its causes, a paused link)."""
        doc = self.documents.get(name)
        return (
            (doc is not None and doc.pending_count() > 0)
            or name in self._stuck
            or any(paused_on == name for paused_on, _ in self._paused.values())
        )

    def drop(self, name: str) -> list[Effect]:
        """*name* is deleted forever: forget it, and what waits for it."""
        self.forgotten.add(name)
        self.used.pop(name, None)
        self.blocked.discard(name)
        self.documents.pop(name, None)
        self.unloaded.pop(name, None)
        self.loading.discard(name)
        self._table += 1
        self._stuck.pop(name, None)
        effects: list[Effect] = []
        for link_id, (paused_on, _) in list(self._paused.items()):
            if paused_on == name:
                del self._paused[link_id]
                effects.append(ResumeLink(link_id))
        return effects

    def root_digest(self) -> bytes:
        """Hash over every document's digest, cached until any of them changes."""
        key = (
            len(self.documents) + len(self.unloaded) + self._table,
            sum(d.generation for d in self.documents.values()),
        )
        if self._root is None or self._root[:2] != key:
            h = hashlib.blake2b(digest_size=pw.HASH_BYTES)
            for name in self.held():
                digest = self.digest_of(name)
                assert digest is not None
                h.update(digest)
            self._root = (*key, h.digest())
        return self._root[2]

    def apply(self, link: Link, name: str, update: bytes, now: float) -> Applied:
        """An update from *link* to *name*. Raises RemoteProtocolError for
        an invalid one (the link is then closed)."""
        if self.refuses(name):
            return Applied()
        created = name not in self.documents
        if created:
            parse_update(update)  # (2)
        doc = self.document(name)
        origin = peer_origin(link.id)
        applied = Applied([DocCreated(name)] if created else [], doc=doc)
        waiting = doc.pending_count()
        try:
            applied.changes = doc.receive(update, origin)
        except (BufferFull, Overlaps):
            if created:
                del self.documents[name]
                return Applied()
            # (1) Too much waiting, or an update that starts inside what we
            # have: drop what this link buffered, ask it for an exact diff.
            doc.drop_pending(origin)
            step1 = pw.SyncStep1(name, doc.encode_state_vector(), False)
            applied.effects.append(self.links.send(link, pw.encode(step1), now))
            applied.doc = None
            return applied
        except RemoteProtocolError:
            if created:
                del self.documents[name]  # (2)
            raise
        if doc.pending_count():
            self._stuck.setdefault(name, now)
        else:
            self._stuck.pop(name, None)
        applied.fresh = bool(applied.changes) or doc.pending_count() > waiting
        if link.id not in self._paused and doc.pending_count_from(origin) >= PAUSE_PENDING:
            self._paused[link.id] = (name, now)
            applied.effects.append(PauseLink(link.id))
        if applied.changes and self._paused:
            applied.effects += self.resume(name)
        return applied

    def resume(self, name: str) -> list[Effect]:
        """(4) Links whose waiting updates a change of *name* let in, from
        a link or from this peer's browsers."""
        doc = self.documents.get(name)
        if doc is None:
            return []
        if not doc.pending_count():
            self._stuck.pop(name, None)  # nothing waits any more: no sync to ask for
        if not self._paused:
            return []
        effects: list[Effect] = []
        for link_id, (paused_on, _) in list(self._paused.items()):
            if paused_on == name and doc.pending_count_from(peer_origin(link_id)) < PAUSE_PENDING // 2:
                del self._paused[link_id]
                effects.append(ResumeLink(link_id))
        return effects

    def on_awareness(self, link: Link, msg: pw.Awareness, now: float) -> list[Effect]:
        decode_awareness(msg.update)  # refused here, at the boundary, if malformed
        if msg.name not in self.documents:
            return []
        return [AwarenessIn(msg.name, msg.update, link.id)]

    # -- events -------------------------------------------------------------------

    def on_changed(self, event: DocumentChanged, now: float) -> list[Effect]:
        return [DocChanged(event.name, change.update, change.origin) for change in event.changes]

    def on_gone(self, link: Link) -> None:
        """What the closed link left waiting is dropped (it would resend it)."""
        self._paused.pop(link.id, None)
        origin = peer_origin(link.id)
        for name in list(self._stuck):
            doc = self.documents[name]
            doc.drop_pending(origin)
            if doc.pending_count() == 0:
                del self._stuck[name]

    # -- timers -------------------------------------------------------------------

    def tick(self, now: float) -> list[Effect]:
        ready = self.links.ready()
        effects: list[Effect] = []
        for link_id, (name, since) in list(self._paused.items()):
            if now - since < self.stuck_after:
                continue
            # (4) The causes did not come: drop what it sent early, ask it for an exact diff.
            del self._paused[link_id]
            effects.append(ResumeLink(link_id))
            doc = self.documents.get(name)
            link = self.links.get(link_id)
            if doc is not None and link is not None and link.live:
                doc.drop_pending(peer_origin(link_id))
                step1 = pw.SyncStep1(name, doc.encode_state_vector(), False)
                effects.append(self.links.send(link, pw.encode(step1), now))
        for name, since in list(self._stuck.items()):
            if now - since >= self.stuck_after and ready:
                # (1) The causes never came: ask a link for everything we lack.
                self._stuck[name] = now
                step1 = pw.SyncStep1(name, self.documents[name].encode_state_vector(), False)
                effects.append(self.links.send(self.rng.choice(ready), pw.encode(step1), now))
        return effects

    def next_deadline(self) -> float:
        stuck = min((since + self.stuck_after for since in self._stuck.values()), default=float("inf"))
        return min(stuck, min((since + self.stuck_after for _, since in self._paused.values()), default=float("inf")))
