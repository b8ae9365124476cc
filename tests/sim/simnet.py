"""A deterministic network of whole peers (``crdt.engine.Engine``) in one
process, each with a browser per document it edits.

Virtual time, one seeded ``random.Random`` for everything: the network delays,
drops, duplicates and reorders frames (HELLO, which opens every link, is
never reordered), partitions and heals, and crash-restarts peers, which come
back from their store (a ``MemoryStore`` that loses writes younger than
``commit_lag``, like a group commit interrupted by a crash) with fresh client
ids and the peers they remembered. Edits are typed in the browsers (pycrdt
replicas speaking the y-websocket protocol to their peer's engine), so the
engine's glue runs as in a real peer: batching, fan-out to browsers,
acknowledgements, cursors, editing sessions and versions. A browser keeps
its text while its peer is down and sends what the peer lacks when it is
back, as a real one does.

The network layer (virtual time, the link table, the fault profile) is
``nodenet``'s, which says why this is a network of its own.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

import nodenet
from nodenet import Routes, Timeline
from pycrdt import Doc, Text

from crdt import history, ywire
from crdt.browsers import CloseBrowser, PauseBrowser, ResumeBrowser, SendBrowser
from crdt.document import Document
from crdt.effects import CloseLink, Dial, Load, PauseLink, PeersChanged, ResumeLink, SendPeer
from crdt.engine import CLOSE_DELETED, Created, DocumentGone, Engine, Forget, NameTaken, Store, Unload
from crdt.meta import FORGOTTEN_KEY
from crdt.node import Config, Node
from crdt.store import MemoryStore, Write
from crdt.ytext import utf8_offset
from crdt.yupdate import decode_state_vector, delete_set_of
from server.storage import RELAYED_COMMIT_DELAY


@dataclass
class Faults(nodenet.Faults):
    """The network's faults (``nodenet.Faults``), and the store's: a crash
    loses the writes younger than ``commit_lag``."""

    commit_lag: float = 0.010


SESSION_GAP = 8.0  # editing sessions end (and become versions) within a run


class SimBrowser:
    """A browser's copy of one document (pycrdt, collecting deleted content
    as Yjs does) and its connection to its peer."""

    def __init__(self, name: str, client_id: int, person: str) -> None:
        self.name = name
        self.doc: Doc = Doc(client_id=client_id)
        self.text = self.doc.get("content", type=Text)
        self.person = person
        self.conn: int | None = None
        self.outgoing: list[bytes] = []
        self.paused = False  # the peer does not read it (backpressure): what it sends waits
        self.unread: list[bytes] = []
        self._remote = False
        self.doc.observe(self._on_update)

    def _on_update(self, event: Any) -> None:
        if not self._remote:
            self.outgoing.append(ywire.encode_sync_update(bytes(event.update)))

    def hello(self) -> list[bytes]:
        """What a y-websocket client sends when it connects."""
        state = f'{{"user":{{"name":"{self.person}","color":"#336699"}}}}'
        entry = ywire.AwarenessEntry(self.doc.client_id, 1, state)
        return [ywire.encode_sync_step1(self.doc.get_state()), ywire.encode_awareness([entry])]

    def receive(self, frame: bytes) -> list[bytes]:
        """A frame from the peer; returns the frames it answers with."""
        message = ywire.decode_message(frame)
        if isinstance(message, ywire.SyncStep1):
            return [ywire.encode_sync_step2(self.doc.get_update(message.state_vector))]
        if isinstance(message, (ywire.SyncStep2, ywire.SyncUpdate)):
            self._remote = True
            try:
                self.doc.apply_update(message.update)
            finally:
                self._remote = False
        return []

    def edit(self, rng: random.Random) -> list[bytes]:
        """A random insert or delete; returns the frames it sends."""
        text = str(self.text)
        if text and rng.random() < 0.3:
            at = rng.randrange(len(text))
            n = min(len(text) - at, rng.randint(1, 4))
            del self.text[utf8_offset(text, at) : utf8_offset(text, at + n)]
        else:
            word = rng.choice(["a", "bc", "déf", "😀", "\n", "xyz "])
            self.text.insert(utf8_offset(text, rng.randint(0, len(text))), word)
        return self.take()

    def append(self, text: str) -> list[bytes]:
        self.text.insert(len(str(self.text).encode()), text)
        return self.take()

    def take(self) -> list[bytes]:
        out, self.outgoing = self.outgoing, []
        return out


@dataclass
class SimPeer:
    index: int
    address: str
    store: MemoryStore = field(default_factory=MemoryStore)
    engine: Engine | None = None
    browsers: dict[str, SimBrowser] = field(default_factory=dict)
    peers_file: list[tuple[str, str]] = field(default_factory=list)
    # Writes not committed yet, each with the time it is handed to the store
    # (what server.storage does: at once if urgent, with every write held
    # before it; a relayed one when the relayed timer runs out).
    unflushed: list[tuple[float, Write]] = field(default_factory=list)
    relayed_due: float | None = None
    timer_at: float | None = None
    epoch: int = 0  # bumps on every restart: stale timers and frames are ignored
    # Links the engine does not read (backpressure): their frames wait, in order.
    paused: dict[int, list[bytes]] = field(default_factory=dict)

    @property
    def node(self) -> Node | None:
        return self.engine.node if self.engine is not None else None

    @property
    def up(self) -> bool:
        return self.engine is not None


class SimNetwork(Timeline):
    def __init__(self, seed: int, n: int, faults: Faults | None = None, config: Config | None = None) -> None:
        super().__init__()
        self.seed = seed
        self.rng = random.Random(seed)
        self.faults = faults or Faults()
        self.config = config or Config()
        self.peers = [SimPeer(i, f"n{i}:7400") for i in range(n)]
        self._peer_ids = [bytes([i % 256, i // 256]) + bytes(14) for i in range(n)]
        self.links = Routes()  # link id -> (owner index, other index, other side's link id)
        self.partition: dict[int, int] | None = None  # node -> group
        self.delivered = 0
        self.carried: dict[tuple[int, int], int] = {}  # bytes delivered, by (from, to)
        # History: versions named (document, id, node, time), and those whose
        # node crashed before it could store them.
        self.named: list[tuple[str, str, int, float]] = []
        self.at_risk: set[str] = set()
        self.loads = 0
        self.unloads = 0
        for peer in self.peers:
            self._boot(peer)

    def run_until(self, t: float) -> None:
        self.advance(t)

    # -- peers ---------------------------------------------------------------

    def _boot(self, peer: SimPeer) -> None:
        docs: dict[str, Document] = {}
        for info in peer.store.documents():
            doc = Document(info.name, self._client_id())
            doc.load(peer.store.load(info.name))
            docs[info.name] = doc
        engine = Engine(
            self._peer_ids[peer.index], peer.address, random.Random(self.rng.random()), self._client_id,
            lambda: 1_700_000_000 + self.now, self.config, docs, session_gap=SESSION_GAP,
        )  # fmt: skip
        engine.node.restore_peers(peer.peers_file)
        peer.engine = engine
        peer.epoch += 1
        peer.timer_at = None
        self._perform(peer, engine.start(self.now))
        for browser in list(peer.browsers.values()):
            self._connect(peer, browser)  # a browser reconnects by itself
        self._arm(peer)

    def _client_id(self) -> int:
        return self.rng.randrange(1, 2**32)

    def join(self, i: int, j: int) -> None:
        self._perform(self.peers[i], self._engine(i).join(self.peers[j].address, self.now))

    def _engine(self, i: int) -> Engine:
        engine = self.peers[i].engine
        assert engine is not None
        return engine

    def _node(self, i: int) -> Node:
        return self._engine(i).node

    # -- browsers ------------------------------------------------------------

    def browser(self, i: int, name: str) -> SimBrowser:
        """Node i's browser of *name*, opened (and connected) on first use."""
        peer = self.peers[i]
        browser = peer.browsers.get(name)
        if browser is None:
            self.ensure_loaded(i, name)
            browser = peer.browsers[name] = SimBrowser(name, self._client_id(), f"person-{i}")
            if peer.engine is not None:
                self._connect(peer, browser)
                self.run_until(self.now)  # the sync with the peer, before the first keystroke
        return browser

    def _connect(self, peer: SimPeer, browser: SimBrowser) -> None:
        engine = peer.engine
        assert engine is not None
        try:
            browser.conn, effects = engine.connect(browser.name, self.now)
        except DocumentGone:
            del peer.browsers[browser.name]  # the editor says so, and stops (its edits stay in it)
            return
        browser.paused, browser.unread = False, []
        self._perform(peer, effects)
        self._typed(peer, browser, browser.hello() + browser.take())

    def _typed(self, peer: SimPeer, browser: SimBrowser, frames: list[bytes]) -> None:
        engine = peer.engine
        if engine is None or browser.conn is None:
            return  # the peer is down: the browser keeps the edit, and sends it on reconnecting
        if browser.paused:
            browser.unread += frames
            return
        effects = []
        for frame in frames:
            effects += engine.frame(browser.conn, frame, self.now)
        self._perform(peer, effects)

    def edit(self, i: int, name: str) -> None:
        """A random insert or delete, typed in node i's browser of *name*
        (none if node i has it in the Trash, or forgot it)."""
        peer = self.peers[i]
        if peer.engine is not None and peer.engine.gone(name) is not None and name not in peer.browsers:
            return
        browser = self.browser(i, name)
        if name in peer.browsers:
            self._typed(peer, browser, browser.edit(self.rng))

    # -- a document's life ------------------------------------------------------

    def _person(self, i: int) -> history.Author:
        return history.Author(f"person-{i}", "#000000", self._peer_ids[i].hex())

    def delete(self, i: int, key: str) -> bool:
        self.ensure_loaded(i, key)
        engine = self._engine(i)
        if not engine.registry.is_live(key) or key not in engine.documents:
            return False
        self._perform(self.peers[i], engine.delete(key, self._person(i), self.now))
        return True

    def undelete(self, i: int, key: str) -> bool:
        self.ensure_loaded(i, key)
        engine = self._engine(i)
        if not engine.registry.is_trashed(key) or key not in engine.documents:
            return False
        self._perform(self.peers[i], engine.undelete(key, self._person(i), self.now))
        return True

    def rename(self, i: int, key: str, new: str) -> bool:
        self.ensure_loaded(i, key)
        engine = self._engine(i)
        if not engine.registry.is_live(key) or key not in engine.documents:
            return False
        try:
            self._perform(self.peers[i], engine.rename(key, new, self.now))
        except NameTaken:
            return False
        return True

    def forget(self, i: int, key: str) -> bool:
        self.ensure_loaded(i, FORGOTTEN_KEY)
        engine = self._engine(i)
        if not engine.registry.is_trashed(key):
            return False
        self._perform(self.peers[i], engine.forget(key, self._person(i), self.now))
        return True

    def author(self, i: int, name: str, text: str) -> None:
        """Node i's browser appends *text* to *name* (creating it)."""
        browser = self.browser(i, name)
        self._typed(self.peers[i], browser, browser.append(text))

    def name_version(self, i: int, name: str, label: str) -> str:
        """Node i names the current state of *name*."""
        by = history.Author(f"person-{i}", "#%06x" % (i * 40503 % 0xFFFFFF), self._peer_ids[i].hex())
        self.ensure_loaded(i, name)
        self._node(i).document(name)
        version_id, effects = self._engine(i).name_version(name, label, by, self.now)
        self._perform(self.peers[i], effects)
        self.named.append((name, version_id, i, self.now))
        return version_id

    def restore(self, i: int, name: str, version_id: str) -> bool:
        """Node i restores a version of *name*, if it can open it."""
        by = history.Author(f"person-{i}", "#000000", self._peer_ids[i].hex())
        self.ensure_loaded(i, name)
        try:
            _, effects = self._engine(i).restore(name, version_id, by, self.now)
        except (history.VersionNotFound, history.VersionNotHeld, KeyError):
            return False
        self._perform(self.peers[i], effects)
        return True

    def crash(self, i: int) -> None:
        peer = self.peers[i]
        if not peer.up:
            return
        # Writes not yet committed are lost with the process.
        peer.unflushed = [(t, w) for t, w in peer.unflushed if self.now - t >= self.faults.commit_lag]
        lag = self.faults.commit_lag
        self.at_risk.update(v for (_, v, node, at) in self.named if node == i and self.now - at < lag)
        self._flush(peer, force=True)
        peer.engine = None
        peer.relayed_due = None
        peer.paused.clear()
        for browser in peer.browsers.values():
            browser.conn = None
        peer.epoch += 1
        for link_id, (owner, other, other_link) in list(self.links.items()):
            if owner == i:
                del self.links[link_id]
                # The kernel resets the dead process's connections: the other
                # side hears of it after one network delay.
                self.at(self.now + self.faults.min_delay, lambda o=other, ol=other_link: self._closed(o, ol))

    def restart(self, i: int) -> None:
        if not self.peers[i].up:
            self._boot(self.peers[i])

    def set_partition(self, groups: list[list[int]] | None) -> None:
        self.partition = None if groups is None else {n: g for g, members in enumerate(groups) for n in members}

    def _reachable(self, a: int, b: int) -> bool:
        return self.partition is None or self.partition.get(a) == self.partition.get(b)

    # -- effects -------------------------------------------------------------

    def _perform(self, peer: SimPeer, effects: list[Any]) -> None:
        if peer.engine is None:
            return
        answers: list[tuple[SimBrowser, list[bytes]]] = []
        resumed: list[tuple[int, list[bytes]]] = []
        for e in effects:
            if isinstance(e, SendPeer):
                self._send(peer.index, e.link, e.data)
            elif isinstance(e, Store):
                self._write(peer, Write(e.name, e.update, at=self.now), urgent=not e.relayed)
            elif isinstance(e, Created):
                self._write(peer, Write(e.name, at=self.now), urgent=True)
            elif isinstance(e, Load):
                self._load(peer, e.name)
            elif isinstance(e, Unload):
                self._unload(peer, e.name)
            elif isinstance(e, Forget):
                self._write(peer, Write(e.name, forget=True, at=self.now), urgent=True)
            elif isinstance(e, CloseBrowser):
                browser = next((b for b in peer.browsers.values() if b.conn == e.conn), None)
                if browser is not None and e.code == CLOSE_DELETED:
                    del peer.browsers[browser.name]
            elif isinstance(e, SendBrowser):
                browser = next((b for b in peer.browsers.values() if b.conn == e.conn), None)
                if browser is not None:
                    answers.append((browser, browser.receive(e.data)))
            elif isinstance(e, Dial):
                self._dial(peer.index, e.address)
            elif isinstance(e, CloseLink):
                self._close(peer.index, e.link)
            elif isinstance(e, PeersChanged):
                peer.peers_file = list(e.peers)
            elif isinstance(e, (PauseBrowser, ResumeBrowser)):
                browser = next((b for b in peer.browsers.values() if b.conn == e.conn), None)
                if browser is not None:
                    browser.paused = isinstance(e, PauseBrowser)
                    if not browser.paused:
                        answers.append((browser, browser.unread))
                        browser.unread = []
            elif isinstance(e, PauseLink):
                peer.paused.setdefault(e.link, [])
            elif isinstance(e, ResumeLink):
                resumed.append((e.link, peer.paused.pop(e.link, [])))
        for browser, frames in answers:
            self._typed(peer, browser, frames)
        for link, frames in resumed:  # read now, in the order they came
            for data in frames:
                self._read(peer, link, data)
        self._flush(peer)
        self._arm(peer)

    def ensure_loaded(self, i: int, name: str) -> None:
        """Load *name* on node i now if it is not (the shell awaits it)."""
        peer = self.peers[i]
        engine = peer.engine
        if engine is None or not engine.needs_load(name):
            return
        engine.load(name)
        updates = peer.store.load(name) + [w.update for _, w in peer.unflushed if w.name == name and w.update]
        self.loads += 1
        self._perform(peer, engine.loaded(name, updates, self.now))

    def _load(self, peer: SimPeer, name: str) -> None:
        """Read *name* back, as the store thread does: after every write
        queued before (held or committed)."""
        epoch = peer.epoch

        def read() -> None:
            if peer.epoch != epoch or peer.engine is None:
                return
            updates = peer.store.load(name) + [w.update for _, w in peer.unflushed if w.name == name and w.update]
            self.loads += 1
            self._perform(peer, peer.engine.loaded(name, updates, self.now))

        self.at(self.now + 0.002, read)

    def _unload(self, peer: SimPeer, name: str) -> None:
        """Make the writes durable, then hand *name* back to be dropped."""
        epoch = peer.epoch
        peer.unflushed = [(min(t, self.now), w) for t, w in peer.unflushed]
        self._flush(peer)

        def done() -> None:
            if peer.epoch == epoch and peer.engine is not None and not peer.unflushed:
                self.unloads += peer.engine.unloaded(name, self.now)
            elif peer.epoch == epoch and peer.engine is not None:
                self.at(self.now + self.faults.commit_lag, done)

        self.at(self.now + self.faults.commit_lag, done)

    def _write(self, peer: SimPeer, write: Write, urgent: bool) -> None:
        if peer.relayed_due is not None and self.now >= peer.relayed_due:
            peer.relayed_due = None  # the relayed timer ran: what it held is handed over
        if urgent:
            peer.unflushed = [(min(t, self.now), w) for t, w in peer.unflushed]
            peer.relayed_due = None
            peer.unflushed.append((self.now, write))
        else:
            if peer.relayed_due is None:
                peer.relayed_due = self.now + RELAYED_COMMIT_DELAY
            peer.unflushed.append((peer.relayed_due, write))

    def _flush(self, peer: SimPeer, force: bool = False) -> None:
        due = [w for t, w in peer.unflushed if force or self.now - t >= self.faults.commit_lag]
        if due:
            peer.store.write(due)
            peer.unflushed = [
                (t, w) for t, w in peer.unflushed if not (force or self.now - t >= self.faults.commit_lag)
            ]
        if peer.unflushed:
            epoch = peer.epoch
            when = max(self.now, min(t for t, _ in peer.unflushed)) + self.faults.commit_lag
            self.at(when, lambda: peer.epoch == epoch and self._flush(peer))

    def _arm(self, peer: SimPeer) -> None:
        engine = peer.engine
        if engine is None:
            return
        when = engine.next_deadline(self.now)
        if peer.timer_at is not None and peer.timer_at <= when:
            return
        peer.timer_at = when
        epoch = peer.epoch

        def fire() -> None:
            if peer.epoch != epoch or peer.timer_at != when or peer.engine is None:
                return
            peer.timer_at = None
            self._perform(peer, peer.engine.tick(self.now))  # which arms the next timer

        self.at(when, fire)

    def _index_of(self, address: str) -> int | None:
        for peer in self.peers:
            if peer.address == address:
                return peer.index
        return None

    def _dial(self, i: int, address: str) -> None:
        j = self._index_of(address)
        delay = self.faults.dial_delay
        epoch_i = self.peers[i].epoch

        def connect() -> None:
            src, dst = self.peers[i], self.peers[j] if j is not None else None
            if src.epoch != epoch_i or src.engine is None:
                return
            if dst is None or dst.engine is None or not self._reachable(i, dst.index):
                # Refused at once when the host is there but nothing listens;
                # a partition looks like a connect timeout.
                wait = 0.0 if dst is None or dst.engine is None else 3.0

                def fail() -> None:
                    if src.epoch == epoch_i and src.engine is not None:
                        self._perform(src, src.engine.dial_failed(address, self.now))

                self.at(self.now + wait, fail)
                return
            a, b = self.links.open(i, dst.index)
            assert dst.engine is not None and src.engine is not None
            self._perform(dst, dst.engine.link_opened(b, False, f"n{i}", self.now))
            self._perform(src, src.engine.link_opened(a, True, address, self.now))

        self.at(self.now + delay, connect)

    def _send(self, i: int, link: int, data: bytes) -> None:
        route = self.links.get(link)
        if route is None:
            return
        _, j, other = route
        for delay in self.faults.delays(self.rng, data):
            epoch = self.peers[j].epoch
            self.at(self.now + delay, lambda e=epoch: self._deliver(i, j, other, data, e))

    def _deliver(self, i: int, j: int, link: int, data: bytes, epoch: int) -> None:
        peer = self.peers[j]
        if peer.epoch != epoch or peer.engine is None or link not in self.links or not self._reachable(i, j):
            return
        self.delivered += 1
        self.carried[i, j] = self.carried.get((i, j), 0) + len(data)
        if link in peer.paused:
            peer.paused[link].append(data)  # the engine is not reading this link
            return
        self._read(peer, link, data)

    def _read(self, peer: SimPeer, link: int, data: bytes) -> None:
        if peer.engine is None or link not in self.links:
            return
        if link in peer.paused:
            peer.paused[link].append(data)
            return
        try:
            effects = peer.engine.peer_frame(link, data, self.now)
        except Exception as exc:  # any error here is a bug the test must see
            raise AssertionError(f"seed {self.seed}: node {peer.index} failed on a frame: {exc!r}") from exc
        self._perform(peer, effects)

    def _close(self, i: int, link: int) -> None:
        route = self.links.pop(link, None)
        if route is None:
            return
        _, j, other = route
        self._closed(i, link)
        # Like a WebSocket close, it reaches the other side after every frame
        # sent before it; frames the other side sends meanwhile are lost.
        self.at(self.now + self.faults.close_delay, lambda: self._closed(j, other))

    def _closed(self, i: int, link: int) -> None:
        peer = self.peers[i]
        self.links.pop(link, None)
        peer.paused.pop(link, None)
        if peer.engine is not None:
            self._perform(peer, peer.engine.link_closed(link, self.now))

    # -- invariants ----------------------------------------------------------

    def fingerprints(
        self, only: list[int] | None = None
    ) -> dict[int, dict[str, tuple[str, dict[int, int], list[tuple[int, int, int]]]]]:
        """Each node's documents: text, state vector and delete set (every
        node, or those in *only*)."""
        out = {}
        for peer in self.peers if only is None else [self.peers[i] for i in only]:
            node = peer.node
            assert node is not None
            out[peer.index] = {
                name: (
                    doc.text,
                    decode_state_vector(doc.encode_state_vector()),
                    delete_set_of(doc.encode_state()),
                )
                for name, doc in sorted(node.documents.items())
            }
        return out

    def active_graph_connected(self) -> bool:
        edges: dict[int, set[int]] = {p.index: set() for p in self.peers}
        for link_id, (owner, other, _) in self.links.items():
            node = self._node(owner)
            link = node.links.get(link_id)
            if link is not None and link.ready:
                edges[owner].add(other)
        seen = {0}
        todo = [0]
        while todo:
            for nxt in edges[todo.pop()]:
                if nxt not in seen:
                    seen.add(nxt)
                    todo.append(nxt)
        return len(seen) == len(self.peers)
