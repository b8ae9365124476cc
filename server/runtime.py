"""The peer's runtime: the documents in memory, the browser connections, and
the store thread. It performs the effects the core returns.

Every browser connection has a bounded outbox drained by its own writer task;
when the outbox is full the connection is closed (the client resynchronises
when it reconnects), so a slow browser cannot make the peer hold unbounded
memory or stall the others.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from crdt import ywire
from crdt.document import Document
from crdt.errors import MeshpadError
from crdt.names import validate_name
from crdt.session import Changed, DocumentSession, Effect, Send
from crdt.store import DocumentInfo, Store, Write
from server.storage import StoreThread

log = logging.getLogger(__name__)

# Frames waiting to be written to one browser. A browser that falls this far
# behind is disconnected; on reconnect it gets one sync instead of a backlog.
OUTBOX_LIMIT = 4096


class DocumentExists(MeshpadError):
    pass


@dataclass(eq=False)
class Connection:
    id: int
    name: str
    wants_acks: bool
    wakeup: asyncio.Event = field(default_factory=asyncio.Event)
    outbox: deque[bytes] = field(default_factory=deque)
    close_reason: str | None = None
    received: int = 0
    acked: int = 0
    # (frame count, ticket that must be durable before it is acknowledged)
    waiting: deque[tuple[int, int]] = field(default_factory=deque)

    def send(self, data: bytes) -> None:
        if self.close_reason is not None:
            return
        if len(self.outbox) >= OUTBOX_LIMIT:
            self.close("too slow: outbox full")
            return
        self.outbox.append(data)
        self.wakeup.set()

    def close(self, reason: str) -> None:
        if self.close_reason is None:
            self.close_reason = reason
            self.wakeup.set()


class Runtime:
    def __init__(self, open_store: Callable[[], Store], clock: Callable[[], float] = time.time) -> None:
        self._open_store = open_store
        self._clock = clock
        self.store_thread: StoreThread | None = None
        self.sessions: dict[str, DocumentSession] = {}
        self.catalog: dict[str, DocumentInfo] = {}
        self.connections: dict[int, Connection] = {}
        self._loading: dict[str, asyncio.Future[DocumentSession]] = {}
        self._next_conn = 0
        self._dirty: set[str] = set()
        self._flush_scheduled = False
        self._acks_pending: set[Connection] = set()
        self.frames_refused = 0

    # -- life cycle --------------------------------------------------------

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self.store_thread = StoreThread(self._open_store(), loop, self._on_durable)
        self.store_thread.start()
        for info in await self.store_thread.call(lambda s: s.documents()):
            self.catalog[info.name] = info

    async def stop(self) -> None:
        for conn in list(self.connections.values()):
            conn.close("peer shutting down")
        self._flush_lengths()
        if self.store_thread is not None:
            await self.store_thread.stop()

    @property
    def store(self) -> StoreThread:
        assert self.store_thread is not None, "runtime not started"
        return self.store_thread

    # -- documents ---------------------------------------------------------

    def exists(self, name: str) -> bool:
        return name in self.catalog

    async def session(self, name: str, *, create: bool = True) -> DocumentSession:
        """The in-memory session of *name*, loading it from the store once."""
        validate_name(name)
        found = self.sessions.get(name)
        if found is not None:
            return found
        if not create and name not in self.catalog:
            raise KeyError(name)
        loading = self._loading.get(name)
        if loading is None:
            loading = asyncio.get_running_loop().create_future()
            self._loading[name] = loading
            try:
                updates = await self.store.call(lambda s: s.load(name))
                document = Document(name, client_id=secrets.randbelow(2**32 - 1) + 1)
                document.load(updates)
                session = DocumentSession(document)
                self.sessions[name] = session
                if name not in self.catalog:
                    self._register(name)
                loading.set_result(session)
            except BaseException as exc:
                loading.set_exception(exc)
                loading.exception()  # waiters (if any) get it; none is not an error
                raise
            finally:
                del self._loading[name]
            return session
        return await asyncio.shield(loading)

    async def create(self, name: str, text: str = "") -> DocumentSession:
        validate_name(name)
        if name in self.catalog or name in self._loading:
            raise DocumentExists(f"document {name!r} already exists")
        session = await self.session(name)
        if text:
            self.perform(name, session.changed(session.document.edit("local", insert=text)))
        return session

    def _register(self, name: str) -> None:
        now = self._clock()
        self.catalog[name] = DocumentInfo(name, 0, now, now)
        self.store.write(Write(name, at=now))

    def info(self, name: str) -> DocumentInfo:
        session = self.sessions.get(name)
        info = self.catalog[name]
        if session is not None and name in self._dirty:
            return DocumentInfo(name, len(session.document.text), info.created_at, info.updated_at)
        return info

    # -- effects -------------------------------------------------------------

    def perform(self, name: str, effects: list[Effect]) -> None:
        for effect in effects:
            if isinstance(effect, Send):
                conn = self.connections.get(effect.connection)
                if conn is not None:
                    conn.send(effect.data)
            elif isinstance(effect, Changed):
                now = self._clock()
                self.store.write(Write(name, effect.update, at=now))
                info = self.catalog[name]
                self.catalog[name] = DocumentInfo(name, info.length, info.created_at, now)
                self._dirty.add(name)
                if not self._flush_scheduled:
                    self._flush_scheduled = True
                    asyncio.get_running_loop().call_soon(self._flush_lengths)

    def _flush_lengths(self) -> None:
        """Once per loop iteration, store the new length of changed documents
        (reading the text is O(length), too dear to do per edit)."""
        self._flush_scheduled = False
        now = self._clock()
        for name in self._dirty:
            session = self.sessions.get(name)
            if session is None:
                continue
            length = len(session.document.text)
            info = self.catalog[name]
            self.catalog[name] = DocumentInfo(name, length, info.created_at, info.updated_at)
            self.store.write(Write(name, length=length, at=now))
        self._dirty.clear()

    # -- browser connections ---------------------------------------------------

    def attach(self, name: str, wants_acks: bool) -> Connection:
        self._next_conn += 1
        conn = Connection(self._next_conn, name, wants_acks)
        self.connections[conn.id] = conn
        self.perform(name, self.sessions[name].connect(conn.id))
        return conn

    def detach(self, conn: Connection) -> None:
        self.connections.pop(conn.id, None)
        self._acks_pending.discard(conn)
        session = self.sessions.get(conn.name)
        if session is not None:
            self.perform(conn.name, session.disconnect(conn.id))

    def receive(self, conn: Connection, frame: bytes) -> None:
        """One frame from a browser. Raises RemoteProtocolError on bad input;
        the caller closes that connection."""
        session = self.sessions[conn.name]
        effects = session.receive(conn.id, frame)
        self.perform(conn.name, effects)
        conn.received += 1
        if conn.wants_acks:
            conn.waiting.append((conn.received, self.store.last_ticket))
            self._acks_pending.add(conn)
            self._send_acks(conn)

    def _on_durable(self, ticket: int) -> None:
        for conn in list(self._acks_pending):
            self._send_acks(conn)

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
