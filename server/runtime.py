"""The peer's runtime: the shell around ``crdt.engine``. It loads the
documents, performs the engine's effects (one ``perform``), arms its one
timer, and keeps what only a shell can: the store thread, the catalog of
documents (``server.catalog``), and each browser connection's outbox and
acknowledgements.

Every browser connection has a bounded outbox drained by its own writer;
when the outbox is full the connection is closed (the client resynchronises
when it reconnects), so a slow browser cannot make the peer hold unbounded
memory or stall the others. Peer links are the ``network``'s
(``server.peering``).
"""

from __future__ import annotations

import asyncio
import logging
import random
import secrets
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Protocol

from pycrdt import merge_updates

from crdt import history as hist
from crdt import meta, ywire
from crdt.access import Access
from crdt.browsers import Acknowledge, CloseBrowser, PauseBrowser, ResumeBrowser, SendBrowser
from crdt.document import Document
from crdt.effects import (
    CloseLink,
    Dial,
    InviteUsed,
    KeysChanged,
    Load,
    PauseLink,
    PeersChanged,
    Refused,
    ResumeLink,
    RosterChanged,
    SendPeer,
)
from crdt.engine import Created, DocumentGone, Effect, Engine, Forget, NameTaken, Unload
from crdt.engine import Store as StoreChange
from crdt.errors import MeshpadError, StoreError, is_crdt_error
from crdt.names import validate_name
from crdt.node import Config, Node
from crdt.replicas import Summary
from crdt.session import DocumentSession, merge_update_frames
from crdt.store import DocumentInfo, Store
from server.catalog import LENGTHS_EVERY, Catalog, load_some
from server.outbox import Outbox
from server.storage import StoreThread

log = logging.getLogger(__name__)

# Documents read from the store in one call while starting.
LOAD_CHUNK = 256

# Peers remembered as found on the local network (the oldest mark goes first).
LAN_PEERS_LIMIT = 256

# Frames waiting to be written to one browser. A browser that falls this far
# behind is disconnected; on reconnect it gets one sync instead of a backlog.
OUTBOX_LIMIT = 4096


class DocumentExists(MeshpadError):
    pass


class DocumentNotFound(MeshpadError):
    """No live document has that name; *moved_to* names the one that had it."""

    def __init__(self, message: str, moved_to: str | None = None) -> None:
        super().__init__(message)
        self.moved_to = moved_to


__all__ = ["DocumentExists", "DocumentGone", "DocumentNotFound", "NameTaken", "Runtime"]


class DocumentDamaged(StoreError):
    pass


class Network(Protocol):
    """Where the peer links' effects go (``server.peering.Peering``)."""

    def send(self, link: int, data: bytes) -> None: ...
    def dial(self, address: str) -> None: ...
    def close(self, link: int, reason: str) -> None: ...
    def pause(self, link: int, paused: bool) -> None: ...


def summarise(doc: Document) -> Summary:
    """What the engine keeps of a document it does not hold in memory."""
    found = meta.read(doc)
    return Summary(doc.digest(), doc.encode_state_vector(), found, len(doc.text))


def _documents(store: Store) -> list[DocumentInfo]:
    return store.documents()


def merged_log(store: Store, key: str) -> list[bytes]:
    """*key*'s stored updates as one (run on the store thread)."""
    updates = store.load(key)
    return [merge_updates(*updates)] if len(updates) > 1 else updates


def new_client_id() -> int:
    """A fresh random 32-bit Yjs client id: never reused across restarts."""
    return secrets.randbelow(2**32 - 1) + 1


@dataclass(eq=False)
class Connection:
    id: int
    name: str
    wants_acks: bool
    outbox: Outbox = field(default_factory=lambda: Outbox(max_frames=OUTBOX_LIMIT, coalesce=merge_update_frames))
    acked: int = 0
    # (frame count, ticket that must be durable before it is acknowledged)
    waiting: deque[tuple[int, int]] = field(default_factory=deque)
    remote: str = ""  # the browser's address, for the log
    # Cleared while the engine waits for the causes of its updates (backpressure).
    readable: asyncio.Event = field(default_factory=asyncio.Event)

    def __post_init__(self) -> None:
        self.readable.set()

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
        config: Config | None = None,
        session_gap: float = hist.SESSION_GAP,
        save_peers: Callable[[list[tuple[str, str]]], None] = lambda peers: None,
        on_commit: Callable[[float], None] | None = None,
        access: Access | None = None,
        on_space: Callable[[object], None] = lambda effect: None,
    ) -> None:
        self._open_store = open_store
        self.access = access  # the space this runtime replicates (crdt.access)
        self._on_space = on_space
        self._peer_id = peer_id
        self._listen = listen
        self._clock = clock
        self._config = config
        self._session_gap = session_gap
        self._save_peers = save_peers
        self._on_commit = on_commit  # each store commit's duration (server.metrics)
        # Changes integrated here and handed to the store, by where they came
        # from: "peer" (a link) or "local" (a browser of this peer, this peer).
        self.updates_applied: dict[str, int] = {"peer": 0, "local": 0}
        # Browser WebSocket frames and their payload bytes, by direction.
        self.browser_frames: dict[str, int] = {"in": 0, "out": 0}
        self.browser_bytes: dict[str, int] = {"in": 0, "out": 0}
        self.store_thread: StoreThread | None = None
        self.engine: Engine | None = None
        self.network: Network | None = None
        self.documents = Catalog(clock)
        self.catalog = self.documents.rows
        self.damaged = self.documents.damaged
        self.connections: dict[int, Connection] = {}
        self._lengths_due = 0.0  # loop time when the next stale lengths are stored
        self._acks_pending: set[Connection] = set()
        self._durable_waiters: list[tuple[int, asyncio.Future[None]]] = []
        self._timer: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None  # the loop it started on
        self._stopping = False
        self._loads: dict[str, list[asyncio.Future[None]]] = {}  # documents being loaded -> who waits
        self._tasks: set[asyncio.Task[None]] = set()
        # Peers of this network whose announcement was heard on the local
        # network (server.discovery): peer id hex -> the address dialled, if any.
        self.lan_peers: OrderedDict[str, str | None] = OrderedDict()

    # -- life cycle --------------------------------------------------------

    async def start(self) -> None:
        """Read the store: the documents most recently changed, up to the
        bound on documents in memory, stay loaded; of the others only a
        summary is kept (``crdt.replicas`` rule 0)."""
        loop = self._loop = asyncio.get_running_loop()
        self.store_thread = StoreThread(self._open_store(), loop, self._on_durable, self._on_commit)
        self.store_thread.start()
        infos: list[DocumentInfo] = await self.store_thread.call(_documents)
        indexed = await self.store_thread.call(lambda store: store.indexed())  # server.catalog rule 4
        bound = (self._config or Config()).max_loaded
        keep = {i.name for i in sorted(infos, key=lambda i: -i.updated_at)[:bound]} | {meta.FORGOTTEN_KEY}
        documents: dict[str, Document] = {}
        summaries: dict[str, Summary] = {}
        for start in range(0, len(infos), LOAD_CHUNK):
            chunk = infos[start : start + LOAD_CHUNK]
            names = [info.name for info in chunk]
            logs = await self.store_thread.call(partial(load_some, names=names))
            loaded = self.documents.load(chunk, logs, self.store_path(), new_client_id, self.store_thread, indexed)
            for name, doc in loaded.items():
                if name in keep:
                    documents[name] = doc
                else:
                    summaries[name] = summarise(doc)
        self.engine = Engine(
            self._peer_id(), self._listen, random.Random(secrets.randbits(64)), new_client_id, self._clock,
            self._config, documents, self._session_gap, summaries, self.access,
        )  # fmt: skip
        self.engine.node.blocked.update(self.damaged)
        for key in self.damaged:
            self.engine.registry.set(key, meta.Meta())  # listed, and reported when opened
        self.perform(self.engine.start(self.now()))

    async def stop(self) -> None:
        self._stopping = True
        if self._timer is not None:
            self._timer.cancel()
        for task in list(self._tasks):
            task.cancel()
        engine = self.core
        now = self.now()
        for conn in list(self.connections.values()):
            self._perform(engine.disconnect(conn.id, now))
            conn.close("peer shutting down")
        for name in list(engine.recorders):
            self._perform(engine.end_session(name, now))  # what was typed gets its version before the peer goes
        self._perform(engine.flush(now))
        self._flush_lengths()
        self.documents.flush_texts(self.store, engine.documents)
        if self.store_thread is not None:
            await self.store_thread.stop()

    def store_path(self) -> str:
        return str(getattr(self.store.store, "path", "the store"))

    @property
    def store(self) -> StoreThread:
        assert self.store_thread is not None, "runtime not started"
        return self.store_thread

    @property
    def core(self) -> Engine:
        assert self.engine is not None, "runtime not started"
        return self.engine

    @property
    def gossip(self) -> Node:
        return self.core.node

    @property
    def writable(self) -> bool:
        """Whether this peer may change the space's documents (a reader's, or a
        removed member's, may not)."""
        return self.access is None or self.access.my_role in ("admin", "writer")

    def import_state(self, key: str, update: bytes) -> None:
        """Integrate *update* (a whole document's state, from another space)
        into *key* as a change made here."""
        engine = self.core
        session = engine.session(key)
        self.perform(engine.import_update(key, update, session, self.now()))

    @property
    def sessions(self) -> dict[str, DocumentSession]:
        return self.core.sessions

    @property
    def peer_hex(self) -> str:
        return self.core.peer_hex

    @property
    def frames_refused(self) -> int:
        return self.core.frames_refused

    def now(self) -> float:
        return (self._loop or asyncio.get_running_loop()).time()

    def wall(self) -> float:
        """Seconds since the epoch (UTC): the times the history records."""
        return self._clock()

    # -- the one perform, the one timer ------------------------------------------

    def perform(self, effects: list[Effect]) -> None:
        self._perform(effects)
        self._arm()

    def _perform(self, effects: list[Effect]) -> None:
        network = self.network
        for effect in effects:
            if isinstance(effect, SendBrowser):
                conn = self.connections.get(effect.conn)
                if conn is not None:
                    self._count_browser("out", effect.data)
                    conn.send(effect.data)
            elif isinstance(effect, SendPeer):
                if network is not None:
                    network.send(effect.link, effect.data)
            elif isinstance(effect, StoreChange):
                self.updates_applied["peer" if effect.relayed else "local"] += 1
                self._store(effect.name, effect.update, urgent=not effect.relayed)
            elif isinstance(effect, Acknowledge):
                self._acknowledge(effect.conn, effect.frames)
            elif isinstance(effect, Created):
                if effect.name not in self.catalog:
                    self._register(effect.name)
            elif isinstance(effect, Forget):
                self.documents.forget(self.store, effect.name)
            elif isinstance(effect, Load):
                self._spawn(self._load(effect.name))
            elif isinstance(effect, Unload):
                self._spawn(self._unload(effect.name))
            elif isinstance(effect, CloseBrowser):
                self._close_browser(effect)
            elif isinstance(effect, Dial):
                if network is not None and not self._stopping:
                    network.dial(effect.address)
            elif isinstance(effect, CloseLink):
                if network is not None:
                    network.close(effect.link, effect.reason)
            elif isinstance(effect, PeersChanged):
                self._save_peers(effect.peers)
            elif isinstance(effect, (PauseBrowser, ResumeBrowser)):
                conn = self.connections.get(effect.conn)
                if conn is not None:
                    (conn.readable.clear if isinstance(effect, PauseBrowser) else conn.readable.set)()
            elif isinstance(effect, (PauseLink, ResumeLink)) and network is not None:
                network.pause(effect.link, isinstance(effect, PauseLink))
            elif isinstance(effect, (RosterChanged, KeysChanged, InviteUsed, Refused)):
                self._on_space(effect)

    def _arm(self) -> None:
        if self._stopping or self.engine is None:
            return
        loop = self._loop or asyncio.get_running_loop()
        now = loop.time()
        if self._timer is not None and self._timer.when() <= now:
            return  # due already: it re-arms when it fires (a burst of frames asks once)
        when = self.engine.next_deadline(now)
        if self.documents.stale:
            when = min(when, self._lengths_due)
        if self._timer is not None:
            if self._timer.when() <= when:
                return
            self._timer.cancel()
        self._timer = loop.call_at(when, self._fire)

    def _fire(self) -> None:
        self._timer = None
        now = self.now()
        self._perform(self.core.tick(now))
        if now >= self._lengths_due:
            self._flush_lengths()
        self._arm()

    # -- peers found on the local network (server.discovery) --------------------

    def found_on_lan(self, peer_id: bytes, address: str | None) -> None:
        """A peer of this network announced itself on the local network:
        mark it as found there and, given an *address*, dial it as ``POST
        /api/peers`` does (``server.discovery`` decides when to)."""
        peer_hex = peer_id.hex()
        if address is None and peer_hex in self.lan_peers:
            self.lan_peers.move_to_end(peer_hex)
        else:
            self.lan_peers[peer_hex] = address
            self.lan_peers.move_to_end(peer_hex)
        while len(self.lan_peers) > LAN_PEERS_LIMIT:
            self.lan_peers.popitem(last=False)
        if address is not None and self.engine is not None and not self._stopping:
            self.perform(self.core.join(address, self.now()))

    def found_on_lan_at(self, peer_hex: str | None, address: str) -> bool:
        """Whether the Peers page's row of *peer_hex* (or of *address*, for
        a peer whose id is not known yet) was found on the local network."""
        if peer_hex is not None and peer_hex in self.lan_peers:
            return True
        return peer_hex is None and address in self.lan_peers.values()

    # -- documents ---------------------------------------------------------

    # Names are what people and the API use; the engine and the store know a
    # document by its key (crdt.meta). These methods take names.

    def exists(self, name: str) -> bool:
        return self.core.registry.resolve(name) is not None

    def key(self, name: str) -> str:
        """The key of the live document called *name*. Raises
        DocumentNotFound (with the name it has now, if it was renamed)."""
        key = self.core.registry.resolve(name)
        if key is not None:
            return key
        moved = self.core.registry.moved(name)
        raise DocumentNotFound(
            f"no document named {name!r}" + (f": it is now called {self.core.registry.name(moved)!r}" if moved else ""),
            self.core.registry.name(moved) if moved else None,
        )

    def name_of(self, key: str) -> str:
        return self.core.registry.name(key)

    def names(self) -> list[str]:
        """Every live document's name, sorted."""
        return sorted(self.core.registry.live())

    def check_readable(self, name: str) -> None:
        """Raise DocumentDamaged if *name* is in the store but cannot be read."""
        key = self.core.registry.resolve(name) or name
        if key in self.damaged:
            raise DocumentDamaged(self.damaged[key])

    def key_for(self, name: str) -> str:
        """The key of *name*, live, or the key a new document of that name gets."""
        validate_name(name)
        return self.core.registry.resolve(name) or self.core.registry.new_key(name, self.core.rng)

    async def session(self, name: str) -> DocumentSession:
        """The session of *name*, creating the document if it is new."""
        key = self.key_for(name)
        new = not self.core.node.replicas.holds(key)
        session = await self.session_of(key)
        if new and key != name:
            # Its key could not be its name (taken by a document in the
            # Trash, a tombstone, an old name): the name goes in the document.
            self.perform(self.core.rename(key, name, self.now()))
        return session

    # -- loading and unloading (crdt.engine rule 7) ----------------------------------

    def _spawn(self, coro: Any) -> None:
        if self._stopping:
            coro.close()
            return
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def loaded(self, key: str) -> None:
        """Return once *key* is in memory (loading it if it is not).
        Raises DocumentDamaged if it cannot be read."""
        while self.core.needs_load(key):
            future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._loads.setdefault(key, []).append(future)
            self.perform(self.core.load(key))
            await future
        if key in self.damaged:
            raise DocumentDamaged(self.damaged[key])

    async def _load(self, key: str) -> None:
        """Read *key* off the loop (the log, merged into one update), then
        hand it to the engine in one step: nothing sees it half loaded."""
        try:
            try:
                merged = await self.store.call(lambda store: merged_log(store, key))
                effects = self.core.loaded(key, merged, self.now())
            except (StoreError, BaseException) as exc:
                if not isinstance(exc, StoreError) and not is_crdt_error(exc):
                    raise
                self.damaged[key] = f"{self.store_path()}: document {key!r} cannot be read: {exc}"
                log.error("%s", self.damaged[key])
                effects = self.core.load_failed(key, self.now())
            self.perform(effects)
        finally:
            for future in self._loads.pop(key, []):
                if not future.done():
                    future.set_result(None)

    async def _unload(self, key: str) -> None:
        """Make every write durable (the length too), then let the engine
        drop *key* from memory."""
        self._flush_lengths()
        self.documents.flush_texts(self.store, self.core.documents)
        await self.durable()
        if self.engine is not None and not self._stopping:
            self.core.unloaded(key, self.now())

    async def session_of(self, key: str) -> DocumentSession:
        if key in self.damaged:
            raise DocumentDamaged(self.damaged[key])
        await self.loaded(key)
        gone = self.core.gone(key)
        if gone is not None:
            raise DocumentGone(gone)
        if key not in self.core.documents:
            self.perform(self.core.create(key, self.now()))
        return self.core.session(key)

    async def create(self, name: str, text: str = "") -> DocumentSession:
        validate_name(name)
        if self.exists(name):
            raise DocumentExists(f"document {name!r} already exists")
        session = await self.session(name)
        key = self.key(name)
        if text:
            # Text this peer brings in (an import) is attributed to the peer.
            self.perform(self.core.author(key, [(0, 0, text)], hist.Author("", "", self.peer_hex), self.now()))
        return session

    def name_version(self, name: str, label: str, by: hist.Author) -> str:
        version_id, effects = self.core.name_version(self.key(name), label, by, self.now())
        self.perform(effects)
        return version_id

    def restore(self, name: str, version_id: str, by: hist.Author) -> str:
        restored, effects = self.core.restore(self.key(name), version_id, by, self.now())
        self.perform(effects)
        return restored

    # -- a document's life ---------------------------------------------------------

    async def delete(self, name: str, by: hist.Author) -> str:
        """Move *name* to the Trash; returns its key."""
        key = self.key(name)
        await self.session_of(key)
        self.perform(self.core.delete(key, by, self.now()))
        await self.durable()
        return key

    def trash(self) -> list[tuple[str, str, meta.Deletion, bool]]:
        return self.core.trash()

    def trashed(self, name: str) -> str:
        """The key of the document in the Trash called *name*."""
        key = self.core.registry.trashed(name)
        if key is None:
            raise DocumentNotFound(f"no document named {name!r} in the Trash")
        return key

    async def undelete(self, name: str, by: hist.Author) -> str:
        """Bring *name* back from the Trash; returns its name, live."""
        key = self.trashed(name)
        await self.loaded(key)
        if key not in self.core.documents:
            self.perform(self.core.create(key, self.now()))
        self.perform(self.core.undelete(key, by, self.now()))
        await self.durable()
        return self.name_of(key)

    async def forget(self, name: str, by: hist.Author) -> None:
        """Delete *name* forever (it must be in the Trash)."""
        key = self.trashed(name)
        await self.loaded(meta.FORGOTTEN_KEY)
        self.perform(self.core.forget(key, by, self.now()))
        await self.durable()

    async def rename(self, name: str, new: str) -> str:
        """Raises NameTaken, InvalidName, DocumentNotFound; returns the key."""
        validate_name(new)
        key = self.key(name)
        await self.session_of(key)
        self.perform(self.core.rename(key, new, self.now()))
        await self.durable()
        return key

    def history(self, name: str) -> hist.History:
        return self.core.history(self.key(name))

    def recorder(self, name: str) -> hist.Recorder | None:
        return self.core.recorders.get(self.key(name))

    @property
    def recorders(self) -> dict[str, hist.Recorder]:
        return self.core.recorders

    def _register(self, name: str) -> None:
        self.documents.register(self.store, name)

    def info(self, name: str) -> DocumentInfo:
        """What the documents list shows (``server.catalog``), by name."""
        key = self.key(name)
        found = self.documents.info(key, self.core.documents, self.core.recorders, self.core.history)
        return DocumentInfo(name, found.length, found.created_at, found.updated_at)

    def _store(self, name: str, update: bytes, urgent: bool) -> None:
        self.documents.changed(self.store, name, update, urgent)

    def _flush_lengths(self) -> None:
        """Store the new length of changed documents, at most every
        LENGTHS_EVERY seconds."""
        if not self.documents.stale:
            return
        if self.engine is not None and not self._stopping:
            self._lengths_due = self.now() + LENGTHS_EVERY
        self.documents.flush_lengths(self.store, self.core.documents)

    async def durable(self) -> None:
        """Return once every write queued so far is on disk."""
        ticket = self.store.last_ticket
        if self.store.durable_ticket >= ticket:
            return
        self.store.expedite()
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._durable_waiters.append((ticket, future))
        await future

    # -- browser connections ---------------------------------------------------

    def attach(self, key: str, wants_acks: bool, remote: str = "") -> Connection:
        """A browser connection to the document *key* (``session_of`` first).
        Raises DocumentGone."""
        conn_id, effects = self.core.connect(key, self.now())
        conn = Connection(conn_id, key, wants_acks, remote=remote)
        self.connections[conn.id] = conn
        self.perform(effects)
        return conn

    def detach(self, conn: Connection) -> None:
        effects = self.core.disconnect(conn.id, self.now())  # what was read before it closed still counts
        self.connections.pop(conn.id, None)
        self._acks_pending.discard(conn)
        self.perform(effects)

    def receive(self, conn: Connection, frame: bytes) -> None:
        """One frame from a browser (the engine takes the ones that came
        together as one batch)."""
        self._count_browser("in", frame)
        self.perform(self.core.frame(conn.id, frame, self.now()))

    def _count_browser(self, direction: str, frame: bytes) -> None:
        self.browser_frames[direction] += 1
        self.browser_bytes[direction] += len(frame)

    def _close_browser(self, effect: CloseBrowser) -> None:
        conn = self.connections.get(effect.conn)
        if conn is None:
            return
        log.warning("closing browser connection to %r from %s: %s", conn.name, conn.remote, effect.reason)
        conn.close(effect.reason, effect.code)

    def _acknowledge(self, conn_id: int, frames: int) -> None:
        conn = self.connections.get(conn_id)
        if conn is None or not conn.wants_acks:
            return
        conn.waiting.append((frames, self.store.last_ticket))
        self.store.expedite()  # the ticket may be a relayed write's: it must not wait
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
        """Acknowledge frames whose writes are durable."""
        durable = self.store.durable_ticket
        top = 0
        while conn.waiting and conn.waiting[0][1] <= durable:
            top = conn.waiting.popleft()[0]
        if top > conn.acked:
            conn.acked = top
            saved = ywire.encode_saved(top)
            self._count_browser("out", saved)
            conn.send(saved)
        if not conn.waiting:
            self._acks_pending.discard(conn)
