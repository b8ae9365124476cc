"""The peer's runtime: the documents in memory, the browser connections, the
replication node, and the store thread. It performs the effects the core
returns; ``server.peering`` moves the peer links' bytes.

Every browser connection has a bounded outbox drained by its own writer task;
when the outbox is full the connection is closed (the client resynchronises
when it reconnects), so a slow browser cannot make the peer hold unbounded
memory or stall the others.
"""

from __future__ import annotations

import asyncio
import logging
import random
import secrets
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from pycrdt import merge_updates

from crdt import history, ywire
from crdt import node as core
from crdt.document import Document, DocumentTooLarge
from crdt.errors import MeshpadError, StoreError, is_crdt_error
from crdt.names import validate_name
from crdt.session import AwarenessOut, Changed, DocumentSession, Send, merge_update_frames
from crdt.session import Effect as SessionEffect
from crdt.store import DocumentInfo, Store, Write
from server.outbox import Outbox
from server.storage import StoreThread

log = logging.getLogger(__name__)

# Frames waiting to be written to one browser. A browser that falls this far
# behind is disconnected; on reconnect it gets one sync instead of a backlog.
OUTBOX_LIMIT = 4096
# Frames from one browser handled as one batch at most (see Runtime.receive).
INBOX_BATCH = 1024
# How often remote cursors that were not renewed are swept away.
AWARENESS_SWEEP_SECONDS = 5.0


class DocumentExists(MeshpadError):
    pass


class DocumentDamaged(StoreError):
    pass


def new_client_id() -> int:
    """A fresh random 32-bit Yjs client id: never reused across restarts."""
    return secrets.randbelow(2**32 - 1) + 1


@dataclass(eq=False)
class Connection:
    id: int
    name: str
    wants_acks: bool
    outbox: Outbox = field(default_factory=lambda: Outbox(max_frames=OUTBOX_LIMIT, coalesce=merge_update_frames))
    received: int = 0
    acked: int = 0
    # (frame count, ticket that must be durable before it is acknowledged)
    waiting: deque[tuple[int, int]] = field(default_factory=deque)
    inbox: list[bytes] = field(default_factory=list)  # frames read, not yet handled
    remote: str = ""  # the browser's address, for the log

    def send(self, data: bytes) -> None:
        self.outbox.put(data)

    def close(self, reason: str, code: int | None = None) -> None:
        self.outbox.close(reason, code)

    @property
    def close_reason(self) -> str | None:
        return self.outbox.close_reason


class Runtime:
    def __init__(
        self,
        open_store: Callable[[], Store],
        peer_id: Callable[[], bytes],
        listen: str,
        clock: Callable[[], float] = time.time,
        config: core.Config | None = None,
        session_gap: float = history.SESSION_GAP,
    ) -> None:
        self._open_store = open_store
        self._peer_id = peer_id
        self._listen = listen
        self._clock = clock
        self._config = config
        self.store_thread: StoreThread | None = None
        self.node: core.Node | None = None
        self.sessions: dict[str, DocumentSession] = {}
        self.catalog: dict[str, DocumentInfo] = {}
        self.damaged: dict[str, str] = {}
        self.connections: dict[int, Connection] = {}
        self._next_conn = 0
        self._dirty: set[str] = set()
        self._flush_scheduled = False
        self._acks_pending: set[Connection] = set()
        self._to_push: dict[str, list[bytes]] = {}  # local changes not yet pushed, per document
        self.frames_refused = 0
        # Set by server.peering: performs the node's network effects.
        self.network: Callable[[list[core.Effect]], None] = lambda effects: None
        self._sweeper: asyncio.TimerHandle | None = None
        # History: the editing session open on each document, and what each
        # document's history derives (cached until the document changes).
        self.session_gap = session_gap
        self.recorders: dict[str, history.Recorder] = {}
        self.histories: dict[str, history.History] = {}
        self._durable_waiters: list[tuple[int, asyncio.Future[None]]] = []

    # -- life cycle --------------------------------------------------------

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self.store_thread = StoreThread(self._open_store(), loop, self._on_durable)
        self.store_thread.start()
        infos, logs = await self.store_thread.call(_load_all)
        documents: dict[str, Document] = {}
        for info in infos:
            self.catalog[info.name] = info
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
                self.damaged[info.name] = f"{self.store_path()}: document {info.name!r} does not decode: {exc}"
                log.error("%s", self.damaged[info.name])
                continue
            documents[info.name] = doc
        self.node = core.Node(
            self._peer_id(), self._listen, random.Random(secrets.randbits(64)), new_client_id, self._config, documents
        )
        self.node.blocked.update(self.damaged)
        self._sweeper = loop.call_later(self._sweep_interval(), self._sweep_awareness)

    async def stop(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
        for conn in list(self.connections.values()):
            self._take_inbox(conn)
            conn.close("peer shutting down")
        for name in list(self.recorders):
            self.end_session(name)  # what was typed gets its version before the peer goes
        self._push()
        self._flush_lengths()
        if self.store_thread is not None:
            await self.store_thread.stop()

    def store_path(self) -> str:
        return str(getattr(self.store.store, "path", "the store"))

    @property
    def store(self) -> StoreThread:
        assert self.store_thread is not None, "runtime not started"
        return self.store_thread

    @property
    def gossip(self) -> core.Node:
        assert self.node is not None, "runtime not started"
        return self.node

    def now(self) -> float:
        return asyncio.get_running_loop().time()

    def wall(self) -> float:
        """Seconds since the epoch (UTC): the times the history records."""
        return self._clock()

    # -- documents ---------------------------------------------------------

    def exists(self, name: str) -> bool:
        return name in self.catalog

    def check_readable(self, name: str) -> None:
        """Raise DocumentDamaged if *name* is in the store but cannot be read."""
        if name in self.damaged:
            raise DocumentDamaged(self.damaged[name])

    async def session(self, name: str) -> DocumentSession:
        """The session of *name*, creating the document if it is new."""
        validate_name(name)
        self.check_readable(name)
        session = self.sessions.get(name)
        if session is None:
            new = name not in self.catalog
            session = self.sessions[name] = DocumentSession(self.gossip.document(name))
            if new:
                self._register(name)
                self.network(self.gossip.create(name))
        return session

    async def create(self, name: str, text: str = "") -> DocumentSession:
        validate_name(name)
        if name in self.catalog:
            raise DocumentExists(f"document {name!r} already exists")
        session = await self.session(name)
        if text:
            # Text this peer brings in (an import) is attributed to the peer.
            doc = session.document
            client = self.fresh_client_id(doc)
            changes = history.record_authors(doc, {client: history.Author("", "", self.peer_hex)})
            changes += doc.edit_as(client, [(0, 0, text)], "local")
            self.perform(name, session.changed(changes))
        return session

    def _register(self, name: str) -> None:
        now = self._clock()
        self.catalog[name] = DocumentInfo(name, 0, now, now)
        self.store.write(Write(name, at=now))

    def info(self, name: str) -> DocumentInfo:
        """What the documents list shows. The last change is the time the
        history gives (the same on every peer): this peer's open editing
        session, else the newest version; the time the change reached this
        peer only for a document without versions."""
        info = self.catalog[name]
        doc = self.gossip.documents.get(name)
        if doc is None:
            return info
        length = len(doc.text) if name in self._dirty else info.length
        changed = info.updated_at
        recorder = self.recorders.get(name)
        if recorder is not None and recorder.session is not None:
            changed = recorder.session.last
        else:
            versions = self.history(name).versions()
            if versions:
                changed = versions[0].at
        return DocumentInfo(name, length, info.created_at, changed)

    def _changed(self, name: str, update: bytes) -> None:
        if name not in self.catalog:
            self._register(name)
        now = self._clock()
        self.store.write(Write(name, update, at=now))
        info = self.catalog[name]
        self.catalog[name] = DocumentInfo(name, info.length, info.created_at, now)
        self._dirty.add(name)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._flush_lengths)

    # -- effects -------------------------------------------------------------

    def perform(self, name: str, effects: list[SessionEffect]) -> None:
        """Effects of a document session (browser side)."""
        for effect in effects:
            if isinstance(effect, Send):
                conn = self.connections.get(effect.connection)
                if conn is not None:
                    conn.send(effect.data)
            elif isinstance(effect, Changed):
                self._changed(name, effect.update)
                self._push_soon(name, effect.update)
                if isinstance(effect.origin, int):  # typed in a browser of this peer
                    self._note(name, effect.origin, effect.update)
            elif isinstance(effect, AwarenessOut):
                exclude = effect.via[1] if isinstance(effect.via, tuple) else None
                self.network(self.gossip.local_awareness(name, effect.update, exclude=exclude))

    def _push_soon(self, name: str, update: bytes) -> None:
        """Push local changes once per loop iteration, those of one document
        merged: fifty people typing into one document make one push per
        round of the loop, not fifty."""
        if not self._to_push:
            asyncio.get_running_loop().call_soon(self._push)
        self._to_push.setdefault(name, []).append(update)

    def _push(self) -> None:
        to_push, self._to_push = self._to_push, {}
        for name, updates in to_push.items():
            # In the order this replica applied them, so the merge is causal.
            update = updates[0] if len(updates) == 1 else merge_updates(*updates)
            pushes = self.gossip.local_change(name, update, None, self.now())
            if pushes:
                self.network(pushes)

    def perform_node(self, effects: list[core.Effect]) -> list[core.Effect]:
        """Handle the node's document effects; return the network ones."""
        network: list[core.Effect] = []
        for effect in effects:
            if isinstance(effect, core.DocChanged):
                session = self.sessions.get(effect.name)
                self._changed(effect.name, effect.update)
                if session is not None:
                    data = ywire.encode_sync_update(effect.update)
                    for conn_id in sorted(session.connections):
                        conn = self.connections.get(conn_id)
                        if conn is not None:
                            conn.send(data)
            elif isinstance(effect, core.DocCreated):
                if effect.name not in self.catalog:
                    self._register(effect.name)
            elif isinstance(effect, core.AwarenessIn):
                session = self.sessions.get(effect.name)
                if session is None:
                    session = self.sessions[effect.name] = DocumentSession(self.gossip.document(effect.name))
                try:
                    out = session.receive_remote_awareness(effect.update, core.peer_origin(effect.link), self.now())
                except MeshpadError as exc:
                    network.append(core.CloseLink(effect.link, f"protocol error: {exc}"))
                    continue
                self.perform(effect.name, out)
            elif isinstance(effect, core.PeersChanged):
                self.save_peers(effect.peers)
            else:
                network.append(effect)
        return network

    def save_peers(self, peers: list[tuple[str, str]]) -> None:
        """Overridden by the app: remember known peers in the data dir."""

    def link_closed(self, link: int) -> None:
        """Drop the cursors that came through a closed link, unless a shuffle
        closed it: its peer is alive, and its cursors are renewed along the
        other links (or expire by their timeout)."""
        closed = self.gossip.links.get(link)
        if closed is not None and closed.planned:
            return
        via = core.peer_origin(link)
        for name, session in self.sessions.items():
            self.perform(name, session.expire_remote(self.now(), via=via))

    def _sweep_awareness(self) -> None:
        now = self.now()
        for name, session in self.sessions.items():
            self.perform(name, session.expire_remote(now))
        wall = self._clock()
        for name in [n for n, r in self.recorders.items() if r.due(wall)]:
            self.end_session(name)
        self._sweeper = asyncio.get_running_loop().call_later(self._sweep_interval(), self._sweep_awareness)

    def _sweep_interval(self) -> float:
        return min(AWARENESS_SWEEP_SECONDS, max(0.2, self.session_gap / 2))

    # -- history -------------------------------------------------------------

    @property
    def peer_hex(self) -> str:
        return self.gossip.peer_id.hex()

    def history(self, name: str) -> history.History:
        """The history of a document this peer holds."""
        found = self.histories.get(name)
        doc = self.gossip.documents[name]
        if found is None or found.doc is not doc:
            found = self.histories[name] = history.History(doc)
        return found

    def fresh_client_id(self, doc: Document) -> int:
        known = doc.state_vector()
        while True:
            client = new_client_id()
            if client not in known:
                return client

    def _note(self, name: str, conn_id: int, update: bytes) -> None:
        session = self.sessions.get(name)
        if session is None:
            return
        recorder = self.recorders.get(name)
        if recorder is None:
            recorder = self.recorders[name] = history.Recorder(self.peer_hex, gap=self.session_gap)
        people = session.people_of(conn_id)
        changes = recorder.note(session.document, update, people, self._clock())
        if changes:
            self.perform(name, session.changed(changes))

    def end_session(self, name: str) -> None:
        """Close the editing session open on *name*, writing its version."""
        recorder = self.recorders.pop(name, None)
        session = self.sessions.get(name)
        if recorder is None or session is None:
            return
        changes = recorder.close(session.document, self._clock())
        if changes:
            self.perform(name, session.changed(changes))

    async def durable(self) -> None:
        """Return once every write queued so far is on disk."""
        ticket = self.store.last_ticket
        if self.store.durable_ticket >= ticket:
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._durable_waiters.append((ticket, future))
        await future

    def _flush_lengths(self) -> None:
        """Once per loop iteration, store the new length of changed documents
        (reading the text is O(length), too dear to do per edit)."""
        self._flush_scheduled = False
        now = self._clock()
        for name in self._dirty:
            doc = self.gossip.documents.get(name)
            if doc is None:
                continue
            length = len(doc.text)
            info = self.catalog[name]
            self.catalog[name] = DocumentInfo(name, length, info.created_at, info.updated_at)
            self.store.write(Write(name, length=length, at=now))
        self._dirty.clear()

    # -- browser connections ---------------------------------------------------

    def attach(self, name: str, wants_acks: bool, remote: str = "") -> Connection:
        self._next_conn += 1
        conn = Connection(self._next_conn, name, wants_acks, remote=remote)
        self.connections[conn.id] = conn
        self.perform(name, self.sessions[name].connect(conn.id))
        return conn

    def detach(self, conn: Connection) -> None:
        self._take_inbox(conn)  # what was read before the connection closed still counts
        self.connections.pop(conn.id, None)
        self._acks_pending.discard(conn)
        session = self.sessions.get(conn.name)
        if session is not None:
            self.perform(conn.name, session.disconnect(conn.id))

    def receive(self, conn: Connection, frame: bytes) -> None:
        """One frame from a browser. Frames that arrive together are handled
        together, once the reader has taken all that is buffered: their
        updates become one change (one store write, one push, one frame to
        the other browsers) instead of one per keystroke. A frame that is
        refused closes the connection; the frames before it still count."""
        conn.inbox.append(frame)
        if len(conn.inbox) == 1:
            asyncio.get_running_loop().call_soon(self._take_inbox, conn)
        elif len(conn.inbox) >= INBOX_BATCH:
            self._take_inbox(conn)

    def _take_inbox(self, conn: Connection) -> None:
        frames, conn.inbox = conn.inbox, []
        if not frames or conn.id not in self.connections:
            return
        effects, error = self.sessions[conn.name].receive_many(conn.id, frames)
        self.perform(conn.name, effects)
        if error is not None:
            self.frames_refused += 1
            log.warning("closing browser connection to %r from %s: %s", conn.name, conn.remote, error)
            if isinstance(error, DocumentTooLarge):
                conn.close(str(error), ywire.CLOSE_TOO_LARGE)
            else:
                conn.close(f"protocol error: {error}")
            return
        conn.received += len(frames)
        if conn.wants_acks:
            conn.waiting.append((conn.received, self.store.last_ticket))
            self._acks_pending.add(conn)
            self._send_acks(conn)

    def _on_durable(self, ticket: int) -> None:
        for conn in list(self._acks_pending):
            self._send_acks(conn)
        if self._durable_waiters:
            waiting, self._durable_waiters = self._durable_waiters, []
            for wanted, future in waiting:
                if wanted <= ticket:
                    if not future.done():
                        future.set_result(None)
                else:
                    self._durable_waiters.append((wanted, future))

    def _send_acks(self, conn: Connection) -> None:
        """Acknowledge frames whose writes are durable, unless an update of
        this connection still waits for its causes (then it is not stored)."""
        session = self.sessions.get(conn.name)
        if session is None or session.document.pending_from(conn.id):
            return
        durable = self.store.durable_ticket
        top = 0
        while conn.waiting and conn.waiting[0][1] <= durable:
            top = conn.waiting.popleft()[0]
        if top > conn.acked:
            conn.acked = top
            conn.send(ywire.encode_saved(top))
        if not conn.waiting:
            self._acks_pending.discard(conn)


def _load_all(store: Store) -> tuple[list[DocumentInfo], dict[str, list[bytes] | StoreError]]:
    """Every document's stored updates (run on the store thread)."""
    infos = store.documents()
    logs: dict[str, list[bytes] | StoreError] = {}
    for info in infos:
        try:
            logs[info.name] = store.load(info.name)
        except StoreError as exc:
            logs[info.name] = exc
    return infos, logs
