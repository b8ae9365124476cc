"""The whole peer, sans-IO: the replication node, every document's browser
session and history, and the glue between them.

The shell hands this object what comes in (frames from browsers and peers,
links opening and closing, what people ask through the API) with the time,
and performs the effects it returns; it arms one timer, for
:meth:`Engine.next_deadline`. Everything that decides anything happens
here, so the simulator (``tests/sim``) runs all of it.

Rules kept here:

1. Frames that arrive from one browser before the engine next runs are
   handled together (``crdt.browsers``): each is checked on its own,
   consecutive updates become one change (one store write, one push, one
   frame to the other browsers).
2. Every change, whoever made it, goes one way: to the store, to the other
   browsers of the document, and into the push batch. The batch is pushed
   when the engine next runs, the changes of one document from one origin
   merged into one update (in the order this replica applied them, so the
   merge is causal). Changes from peers reach the browsers the same way:
   all those of one turn as one frame per browser, sent before anything
   sent at once afterwards.
3. A browser is told its frames are processed (``Acknowledge``) only once
   none of its updates waits for its causes (``crdt.browsers``); the shell
   then says "saved" when the store has them on disk.
4. Cursors that came through a link are dropped when the link is lost,
   unless a shuffle closed it (its peer is alive); every cursor not renewed
   in time expires.
5. What browsers of this peer type is grouped into editing sessions, which
   become versions in the history (``crdt.history``).
7. A document with no browser, nothing waiting on it and no traffic for
   ``unload_after`` is unloaded (and the least recently used of those
   beyond ``max_loaded``, sooner): the shell is told (:class:`Unload`),
   makes its writes durable, and hands it back (:meth:`Engine.unloaded`);
   if it was used meanwhile it stays. Unloaded, only its summary is kept
   (``crdt.replicas`` rule 0); it is loaded again when a browser, the API
   or a link needs it.
6. Backpressure instead of disconnects (``crdt.browsers``): a browser that
   runs ahead of the causes of its updates is not read from until they
   arrive; if they do not come in time, or its updates cannot wait, it is
   resynchronised in-band (the y-websocket protocol lets the peer send sync
   step 1 at any time).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, replace

from pycrdt import merge_updates

from crdt import history, meta
from crdt.access import Access
from crdt.browsers import BrowserEffect, BrowserId, Browsers, CloseBrowser, SendBrowser
from crdt.document import Change, Document
from crdt.effects import AwarenessIn, DocChanged, DocCreated, LinkId, LinkLost
from crdt.effects import Effect as NodeEffect
from crdt.errors import LocalProtocolError, MeshpadError, RemoteProtocolError
from crdt.meta import FORGOTTEN_KEY
from crdt.node import Config, Node
from crdt.registry import Registry
from crdt.replicas import Summary
from crdt.session import AwarenessOut, Changed, DocumentSession, Send
from crdt.session import Effect as SessionEffect

# How often cursors that were not renewed are swept away.
AWARENESS_SWEEP_SECONDS = 5.0
# The close code an editor is sent when its document is deleted (the
# browser shows the reason and stops reconnecting).
CLOSE_DELETED = 4410


class DocumentGone(MeshpadError):
    """The document is in the Trash, or was deleted forever."""


class NameTaken(LocalProtocolError):
    """Another live document has that name."""


@dataclass(frozen=True, slots=True)
class Store:
    """Write this change of *name* to the store. A *relayed* change came
    from another peer: no browser here waits for it to be saved, so the
    shell may commit it later (anti-entropy restores it after a crash)."""

    name: str
    update: bytes
    relayed: bool = False


@dataclass(frozen=True, slots=True)
class Created:
    """*name* is a new document: give it a row in the store."""

    name: str


@dataclass(frozen=True, slots=True)
class Unload:
    """*name* is idle: make its writes durable, then call ``unloaded``."""

    name: str


@dataclass(frozen=True, slots=True)
class Forget:
    """*name* was deleted forever: remove it from the store."""

    name: str


Effect = NodeEffect | BrowserEffect | Store | Created | Forget | Unload
# How often idle documents are looked for (rule 7).
UNLOAD_SWEEP_SECONDS = 1.0


class Engine:
    def __init__(
        self,
        peer_id: bytes,
        listen: str,
        rng: random.Random,
        new_client_id: Callable[[], int],
        wall: Callable[[], float],
        config: Config | None = None,
        documents: dict[str, Document] | None = None,
        session_gap: float = history.SESSION_GAP,
        summaries: dict[str, Summary] | None = None,
        access: Access | None = None,
    ) -> None:
        """*documents* are loaded; *summaries* are those that are not;
        *access* is the space's rights (``crdt.access``)."""
        self.node = Node(peer_id, listen, rng, new_client_id, config, documents, relay=False, access=access)
        self.access = access
        self.config = self.node.config
        self.node.replicas.unloaded.update(summaries or {})
        self.rng = rng
        self.new_client_id = new_client_id
        self.wall = wall  # seconds since the epoch, for the history
        self.session_gap = session_gap
        self.sessions: dict[str, DocumentSession] = {}
        self.recorders: dict[str, history.Recorder] = {}
        self.histories: dict[str, history.History] = {}
        self.browsers = Browsers(self.session, self._session_effects)
        if access is not None:
            self.browsers.read_only = lambda: access.my_role not in ("admin", "writer")
        self._to_push: dict[tuple[str, object], list[bytes]] = {}  # (document, origin) -> updates (rule 2)
        # Documents whose sessions hold changes from peers (rule 2), in the
        # order they came: a set of strings would flush in an order that
        # changes with the process's hash seed, and a simulated run would not
        # replay from its seed alone.
        self._holding: dict[str, None] = {}
        self._next_sweep: float | None = None
        self._node_due = 0.0  # when the node's timers are next due (from next_deadline)
        self._node_touched = True  # the node was called since _node_due was read
        self.registry = Registry()
        self._unloading: dict[str, float] = {}  # (7) document -> when it was asked
        self._next_unload = 0.0
        for key, summary in self.node.replicas.unloaded.items():
            self.registry.set(key, summary.meta)
        for key, doc in self.node.documents.items():
            doc.life_changed = False
            if key != FORGOTTEN_KEY:
                self.registry.set(key, meta.read(doc))
        tombs = self.node.documents.get(FORGOTTEN_KEY)
        self._forget_at_start = self.registry.add_tombstones(meta.tombstones(tombs).values()) if tombs else []

    @property
    def peer_hex(self) -> str:
        return self.node.peer_id.hex()

    @property
    def frames_refused(self) -> int:
        return self.browsers.frames_refused

    @frames_refused.setter
    def frames_refused(self, value: int) -> None:
        self.browsers.frames_refused = value

    @property
    def documents(self) -> dict[str, Document]:
        return self.node.documents

    def session(self, name: str) -> DocumentSession:
        session = self.sessions.get(name)
        if session is None:
            session = self.sessions[name] = DocumentSession(self.node.document(name))
        return session

    # -- documents ---------------------------------------------------------------

    def create(self, name: str, now: float) -> list[Effect]:
        """A document made here: it spreads with a round on every link."""
        self.session(name)
        if name != FORGOTTEN_KEY:
            self.registry.set(name, meta.Meta())
        self._node_touched = True
        return [Created(name), *self.node.create(name, now)]

    def start(self, now: float) -> list[Effect]:
        """What loading found to do: documents deleted forever whose data a
        crash left behind."""
        effects: list[Effect] = []
        for key in self._forget_at_start:
            effects += self._drop(key, now)
        self._forget_at_start = []
        return effects

    # -- a document's life (crdt.meta) --------------------------------------------

    def delete(self, key: str, by: history.Author, now: float) -> list[Effect]:
        """Move *key* to the Trash, on every peer."""
        doc = self.session(key).document
        delete_id = f"{self.peer_hex[:8]}.{self.rng.getrandbits(48):012x}"
        changes = meta.trash(doc, delete_id, by.name, self.peer_hex, self.wall())
        return self.end_session(key, now) + self._session_effects(key, self.session(key).changed(changes), now)

    def undelete(self, key: str, by: history.Author, now: float) -> list[Effect]:
        """Bring *key* back from the Trash, on every peer."""
        session = self.session(key)
        changes = meta.restore(session.document, by.name, self.peer_hex, self.wall())
        return self._session_effects(key, session.changed(changes), now)

    def rename(self, key: str, new: str, now: float) -> list[Effect]:
        """Raises NameTaken when a live document other than *key* has *new*."""
        holder = self.registry.resolve(new)
        if holder is not None and holder != key:
            raise NameTaken(f"a document named {new!r} already exists")
        old = self.registry.name(key)
        if old == new:
            return []
        session = self.session(key)
        changes = meta.rename(session.document, key, old, new, self.wall())
        return self._session_effects(key, session.changed(changes), now)

    def forget(self, key: str, by: history.Author, now: float) -> list[Effect]:
        """Delete *key* forever, on every peer: only its tombstone stays."""
        effects: list[Effect] = [] if FORGOTTEN_KEY in self.node.documents else self.create(FORGOTTEN_KEY, now)
        tombs = self.session(FORGOTTEN_KEY)
        changes = meta.forget(tombs.document, key, self.registry.name(key), by.name, self.peer_hex, self.wall())
        return effects + self._session_effects(FORGOTTEN_KEY, tombs.changed(changes), now)

    # -- (7) loading and unloading ---------------------------------------------------

    def load(self, key: str) -> list[Effect]:
        """*key* is needed (a browser, the API): load it if it is not."""
        return self._node_effects(self.node.load(key), 0.0)

    def needs_load(self, key: str) -> bool:
        return self.node.replicas.needs_load(key)

    def loaded(self, key: str, updates: list[bytes], now: float) -> list[Effect]:
        """What the store holds of *key*, read back. Raises what decoding
        raises (the shell then calls :meth:`load_failed`)."""
        if not self.node.replicas.needs_load(key):
            return []  # deleted forever while it was read
        doc = Document(key, self.new_client_id())
        doc.load(updates)
        doc.life_changed = False
        self.node.replicas.used[key] = now
        return self._node_effects(self.node.loaded(doc, now), now)

    def load_failed(self, key: str, now: float) -> list[Effect]:
        return self._node_effects(self.node.load_failed(key, now), now)

    def unloaded(self, key: str, now: float) -> bool:
        """(7) The shell made *key*'s writes durable: drop it from memory,
        unless it was used since it was asked. True when it was dropped."""
        asked = self._unloading.pop(key, None)
        doc = self.node.documents.get(key)
        if asked is None or doc is None or not self._idle(key) or self.node.replicas.used.get(key, 0.0) > asked:
            return False
        found = self.registry.metas.get(key, meta.Meta())
        if found.deleted is not None:
            found = replace(found, changed_after_delete=meta.text_hash(doc.text) != found.deleted.text_hash)
            self.registry.set(key, found)
        self.node.replicas.unload(key, Summary(doc.digest(), doc.encode_state_vector(), found, len(doc.text)))
        self.sessions.pop(key, None)
        self.histories.pop(key, None)
        return True

    def _idle(self, key: str) -> bool:
        """Nothing here needs *key* in memory."""
        session = self.sessions.get(key)
        node = self.node
        return not (
            key == FORGOTTEN_KEY
            or (session is not None and (session.connections or session.holding))
            or key in self.recorders
            or key in self._holding
            or any(k == key for k, _ in self._to_push)
            or node.replicas.busy(key)
            or node.parked(key)
            or key in node.antientropy.fetches.wants
            or node.push.awaits(key)
            or any(key in link.syncing or key in link.announce for link in node.links.values())
        )

    def _sweep(self, now: float) -> list[Effect]:
        """(7) Unload what is idle."""
        used = self.node.replicas.used
        candidates = [key for key in self.node.documents if key not in self._unloading and self._idle(key)]
        candidates.sort(key=lambda k: used.get(k, 0.0))
        over = len(self.node.documents) - len(self._unloading) - self.config.max_loaded
        effects: list[Effect] = []
        for key in candidates:
            if over > 0 or now - used.get(key, 0.0) >= self.config.unload_after:
                self._unloading[key] = now
                effects.append(Unload(key))
                over -= 1
        return effects

    def trash(self) -> list[tuple[str, str, meta.Deletion, bool]]:
        """The Trash, latest first: (key, name, deletion, changed after it)."""
        out = []
        for entry in self.registry.trash():
            doc = self.node.documents.get(entry.key)
            changed = entry.changed_after_delete if doc is None else meta.text_hash(doc.text) != entry.deleted.text_hash
            out.append((entry.key, entry.name, entry.deleted, changed))
        return out

    def gone(self, key: str) -> str | None:
        """Why browsers may not open *key*, or None."""
        if key in self.node.replicas.forgotten:
            return "this document was deleted forever"
        deleted = self.registry.metas.get(key)
        if deleted is not None and deleted.deleted is not None:
            return f"this document was deleted by {deleted.deleted.who}"
        return None

    def _life(self, key: str, now: float) -> list[Effect]:
        """*key*'s life roots changed: the registry follows."""
        doc = self.node.documents.get(key)
        if doc is None or not doc.life_changed:
            return []
        doc.life_changed = False
        if key == FORGOTTEN_KEY:
            effects: list[Effect] = []
            for forgotten in self.registry.add_tombstones(meta.tombstones(doc).values()):
                effects += self._drop(forgotten, now)
            return effects
        before = self.registry.metas.get(key)
        after = meta.read(doc)
        self.registry.set(key, after)
        if after.deleted is not None and (before is None or before.deleted is None):
            return self._close_browsers(key, f"this document was deleted by {after.deleted.who}")
        return []

    def _close_browsers(self, key: str, reason: str) -> list[Effect]:
        session = self.sessions.get(key)
        if session is None:
            return []
        return [CloseBrowser(conn, reason, CLOSE_DELETED) for conn in sorted(session.connections)]

    def _drop(self, key: str, now: float) -> list[Effect]:
        """*key* was deleted forever: everything of it goes."""
        if key == FORGOTTEN_KEY:
            return []
        effects = self._close_browsers(key, "this document was deleted forever")
        self.sessions.pop(key, None)
        self.recorders.pop(key, None)
        self.histories.pop(key, None)
        self._holding.pop(key, None)
        for push_key in [k for k in self._to_push if k[0] == key]:
            del self._to_push[push_key]
        self.registry.drop(key)
        self._node_touched = True
        return effects + self._node_effects(self.node.drop(key, now), now) + [Forget(key)]

    def author(self, name: str, edits: list[tuple[int, int, str]], by: history.Author, now: float) -> list[Effect]:
        """Text this peer puts in (an import): one change under a fresh
        client id, recorded for *by*."""
        session = self.session(name)
        doc = session.document
        client = self.fresh_client_id(doc)
        changes = history.record_authors(doc, {client: by}) + doc.edit_as(client, edits, "local")
        return self._session_effects(name, session.changed(changes), now)

    def import_update(self, name: str, update: bytes, session: DocumentSession, now: float) -> list[Effect]:
        """A whole document's state brought in here (a move from another space):
        one change, stored and pushed like an edit of this peer."""
        return self._session_effects(name, session.apply(update, "local"), now)

    def name_version(self, name: str, label: str, by: history.Author, now: float) -> tuple[str, list[Effect]]:
        effects = self.end_session(name, now)
        version_id, changes = history.name_version(self.session(name).document, label, by, self.wall())
        return version_id, effects + self._session_effects(name, self.session(name).changed(changes), now)

    def restore(self, name: str, version_id: str, by: history.Author, now: float) -> tuple[str, list[Effect]]:
        """Raises VersionNotFound, VersionNotHeld."""
        effects = self.end_session(name, now)
        session = self.session(name)
        doc = session.document
        restored, changes = history.restore(doc, version_id, by, self.wall(), self.fresh_client_id(doc))
        return restored, effects + self._session_effects(name, session.changed(changes), now)

    def history(self, name: str) -> history.History:
        found = self.histories.get(name)
        doc = self.node.documents[name]
        if found is None or found.doc is not doc:
            found = self.histories[name] = history.History(doc)
        return found

    def fresh_client_id(self, doc: Document) -> int:
        known = doc.state_vector()
        while True:
            client = self.new_client_id()
            if client not in known:
                return client

    def end_session(self, name: str, now: float) -> list[Effect]:
        """Close the editing session open on *name*: its version is written."""
        recorder = self.recorders.pop(name, None)
        if recorder is None:
            return []
        session = self.session(name)
        return self._session_effects(name, session.changed(recorder.close(session.document, self.wall())), now)

    # -- browsers ----------------------------------------------------------------

    def connect(self, name: str, now: float) -> tuple[BrowserId, list[Effect]]:
        """A browser opened *name* (made if new): its id and the first frames.
        Raises DocumentGone for a document in the Trash or deleted forever."""
        gone = self.gone(name)
        if gone is not None:
            raise DocumentGone(gone)
        if self.node.replicas.needs_load(name):
            raise LocalProtocolError(f"{name} is not loaded: load it first")
        self.node.replicas.used[name] = now
        effects = [] if name in self.node.documents else self.create(name, now)
        conn = self.browsers.open(name)
        return conn, effects + self._session_effects(name, self.session(name).connect(conn), now)

    def frame(self, conn: BrowserId, data: bytes, now: float) -> list[Effect]:
        """One frame from a browser: taken with the others that came with it
        when the engine next runs (rule 1)."""
        return self.browsers.frame(conn, data, now)

    def disconnect(self, conn: BrowserId, now: float) -> list[Effect]:
        browser, effects = self.browsers.close(conn, now)
        if browser is None:
            return effects
        return effects + self._session_effects(browser.name, self.session(browser.name).disconnect(conn), now)

    # -- peers -------------------------------------------------------------------

    def link_opened(
        self, link: LinkId, outbound: bool, address: str, now: float, remote_id: bytes | None = None
    ) -> list[Effect]:
        return self._node_effects(self.node.link_opened(link, outbound, address, now, remote_id), now)

    def link_closed(self, link: LinkId, now: float, reason: str | None = None) -> list[Effect]:
        return self._node_effects(self.node.link_closed(link, now, reason), now)

    def peer_frame(self, link: LinkId, data: bytes, now: float) -> list[Effect]:
        """One message from a link. Raises RemoteProtocolError (the shell then
        closes the link)."""
        return self._node_effects(self.node.receive(link, data, now), now)

    def join(self, address: str, now: float) -> list[Effect]:
        return self._node_effects(self.node.join(address, now), now)

    def dial_failed(self, address: str, now: float, reason: str | None = None) -> list[Effect]:
        return self._node_effects(self.node.dial_failed(address, now, reason), now)

    # -- timers ------------------------------------------------------------------

    def tick(self, now: float) -> list[Effect]:
        """Run what is due: the frames read (rule 1), the push batch (rule 2),
        the node's timers, the cursor sweep, the sessions that ended."""
        effects: list[Effect] = self.browsers.read_all(now)
        if now >= self._node_due:
            effects += self._node_effects(self.node.tick(now), now)
        if self._next_sweep is None:
            self._next_sweep = now + AWARENESS_SWEEP_SECONDS
        elif now >= self._next_sweep:
            self._next_sweep = now + AWARENESS_SWEEP_SECONDS
            for name, session in list(self.sessions.items()):
                effects += self._session_effects(name, session.expire_remote(now), now)
        effects += self.browsers.tick(now)
        if now >= self._next_unload:
            self._next_unload = now + UNLOAD_SWEEP_SECONDS
            effects += self._sweep(now)
        wall = self.wall()
        for name in [n for n, r in self.recorders.items() if r.due(wall)]:
            effects += self.end_session(name, now)
        return effects + self.flush(now)

    def flush(self, now: float) -> list[Effect]:
        """(2) Send the changes from peers to the browsers, and push what
        changed, since the last flush."""
        effects: list[Effect] = []
        while self._holding:
            name = next(iter(self._holding))
            del self._holding[name]
            session = self.sessions.get(name)
            if session is not None:
                effects += self._session_effects(name, session.flush(), now)
        if self._to_push:
            self._node_touched = True
        while self._to_push:
            to_push, self._to_push = self._to_push, {}
            for (name, origin), updates in to_push.items():
                update = updates[0] if len(updates) == 1 else merge_updates(*updates)
                effects += self.node.local_change(name, update, origin, now)
        return effects

    def next_deadline(self, now: float) -> float:
        if self.browsers.to_read or self._to_push or self._holding:
            return now
        if self._node_touched:
            self._node_due = self.node.next_deadline(now)
            self._node_touched = False
        soonest = self._node_due
        if self._next_sweep is not None:
            soonest = min(soonest, max(now, self._next_sweep))
        soonest = min(soonest, self.browsers.next_deadline(), max(now, self._next_unload))
        if self.recorders:
            wall = self.wall()
            for recorder in self.recorders.values():
                deadline = recorder.deadline()
                if deadline is not None:
                    soonest = min(soonest, now + max(0.0, deadline - wall))
        return soonest

    # -- glue --------------------------------------------------------------------

    def _node_effects(self, effects: list[NodeEffect], now: float) -> list[Effect]:
        """The node's effects, with those about documents done here."""
        self._node_touched = True  # the node was just called: its deadline may have moved
        out: list[Effect] = []
        for effect in effects:
            if isinstance(effect, DocChanged):
                out += self._changed(effect.name, Change(effect.update, effect.origin), now)
            elif isinstance(effect, DocCreated):
                self.session(effect.name)
                if effect.name != FORGOTTEN_KEY:
                    self.registry.setdefault(effect.name)
                out.append(Created(effect.name))
            elif isinstance(effect, AwarenessIn):
                session = self.session(effect.name)
                try:
                    found = session.receive_remote_awareness(effect.update, ("peer", effect.link), now)
                except RemoteProtocolError as exc:
                    out.append(self.node.table.close_id(effect.link, f"protocol error: {exc}"))
                    continue
                out += self._session_effects(effect.name, found, now)
            elif isinstance(effect, LinkLost):
                if not effect.planned:
                    for name, session in list(self.sessions.items()):
                        out += self._session_effects(name, session.expire_remote(now, via=("peer", effect.link)), now)
            else:
                out.append(effect)
        return out

    def _changed(self, name: str, change: Change, now: float) -> list[Effect]:
        """(2) A change made elsewhere and integrated here."""
        session = self.sessions.get(name)
        if session is None:
            self._queue_push(name, change.origin, change.update)
            stored = Store(name, change.update, _from_peer(change.origin))
            return [stored, *self.browsers.release(name), *self._life(name, now)]
        self._holding[name] = None  # sent to its browsers with the others of this turn, at the flush
        return self._session_effects(name, session.changed([change], hold=True), now)

    def _queue_push(self, name: str, origin: object, update: bytes) -> None:
        """(2) Changes from a peer link are not pushed back to it; every
        other origin (browsers, this peer) is one: all of a document's local
        changes make one push."""
        key = origin if isinstance(origin, tuple) else "local"
        self._to_push.setdefault((name, key), []).append(update)

    def _session_effects(self, name: str, effects: list[SessionEffect], now: float) -> list[Effect]:
        out: list[Effect] = []
        for effect in effects:
            if isinstance(effect, Send):
                out.append(SendBrowser(effect.connection, effect.data))
            elif isinstance(effect, Changed):
                self.node.replicas.used[name] = now
                out.append(Store(name, effect.update, _from_peer(effect.origin)))
                self._queue_push(name, effect.origin, effect.update)
                if isinstance(effect.origin, int):  # (5) typed in a browser of this peer
                    out += self._note(name, effect.origin, effect.update, now)
                out += self.browsers.release(name)
                out += self._life(name, now)
            elif isinstance(effect, AwarenessOut):
                exclude = effect.via[1] if isinstance(effect.via, tuple) else None
                self._node_touched = True
                out += self.node.local_awareness(name, effect.update, exclude, now)
        return out

    def _note(self, name: str, conn: BrowserId, update: bytes, now: float) -> list[Effect]:
        recorder = self.recorders.get(name)
        if recorder is None:
            recorder = self.recorders[name] = history.Recorder(self.peer_hex, gap=self.session_gap)
        session = self.session(name)
        try:
            changes = recorder.note(session.document, update, session.people_of(conn), self.wall())
        except MeshpadError:
            return []
        return self._session_effects(name, session.changed(changes), now) if changes else []


def _from_peer(origin: object) -> bool:
    return isinstance(origin, tuple) and origin[:1] == ("peer",)
