"""A deterministic network of peers that each hold several spaces: one
``crdt.engine.Engine`` per space a peer is in (a *unit*), each with its
space's ``crdt.access.Access``, as ``server/spaces.py`` runs them.

Virtual time and the fault profile are ``nodenet``'s (``Timeline``,
``Faults``: drops, duplicates, reordering; HELLO is never reordered), with
partitions by peer and crash-restarts of whole peers: every unit of a
crashed peer goes down at once, and comes back from what it stored: its
documents (a ``MemoryStore`` whose relayed writes wait
``RELAYED_COMMIT_DELAY`` before they are committed, and are lost in a
crash), its roster ops and its keys (stored when the effects say so, as the
shell does).

A unit's address is ``p<peer>/s<space>``: a link joins two units of one
space. There is no Noise channel here (``remote_id`` is None: HELLO's peer
id is the one checked), so :meth:`SpaceNet.cross_link` can open a link
between units of two spaces, which HELLO's space field must refuse.

Everything random comes from the seed: peer ids, signing keys, space keys,
invite tokens, client ids, the faults.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from nodenet import Faults, Routes, Timeline

from crdt import history
from crdt import peerwire as pw
from crdt import roster as rs
from crdt.access import Access, Invite, SpaceKey, token_hash
from crdt.document import Document
from crdt.effects import CloseLink, Dial, KeysChanged, Load, PeersChanged, Refused, RosterChanged, SendPeer
from crdt.engine import Created, Engine, Forget, Store, Unload
from crdt.node import Config
from crdt.store import MemoryStore, Write
from server.storage import RELAYED_COMMIT_DELAY

WALL0 = 1_700_000_000.0


@dataclass
class Space:
    index: int
    space_id: bytes
    create_op: bytes
    key: SpaceKey  # the current key (the newest made)


@dataclass
class Unit:
    """One space's engine on one peer, and what it stored."""

    peer: int
    space: int
    address: str
    store: MemoryStore = field(default_factory=MemoryStore)
    ops: list[bytes] = field(default_factory=list)  # roster ops, parents first
    keys: dict[bytes, SpaceKey] = field(default_factory=dict)
    token: bytes = b""
    join_to: str | None = None  # the address it joined through (dialled again on restart)
    peers_file: list[tuple[str, str]] = field(default_factory=list)
    engine: Engine | None = None
    access: Access | None = None  # kept after a crash: what it had stored
    unflushed: list[tuple[float, Write]] = field(default_factory=list)
    timer_at: float | None = None
    epoch: int = 0

    @property
    def up(self) -> bool:
        return self.engine is not None


@dataclass
class Peer:
    index: int
    peer_id: bytes
    seed: bytes  # its Ed25519 private key
    signer: rs.Signer
    units: dict[int, Unit] = field(default_factory=dict)
    up: bool = True


class SpaceNet(Timeline):
    def __init__(self, seed: int, n: int, faults: Faults | None = None, *, gate: bool = True,
                 config: Config | None = None) -> None:  # fmt: skip
        """*gate* off runs the engines without their Access (every peer may
        do everything): the control run that shows the checks can fail."""
        super().__init__()
        self.seed = seed
        self.rng = random.Random(seed)
        self.faults = faults or Faults()
        self.gate = gate
        self.config = config or Config()
        self.peers: list[Peer] = []
        for i in range(n):
            peer_id = self.rng.randbytes(16)
            key = self.rng.randbytes(32)
            self.peers.append(Peer(i, peer_id, key, rs.Signer(key, peer_id)))
        self.spaces: list[Space] = []
        self.units: dict[str, Unit] = {}
        self.links = Routes()  # link id -> (owner address, other address, other side's link id)
        self.partition: dict[int, int] | None = None
        self.closes: list[tuple[float, str, str, str]] = []  # (when, closing unit, other unit, reason)
        self.refused: list[tuple[str, Refused]] = []
        self.clients: dict[int, int] = {}  # client id -> the space whose unit drew it
        self.drawn_by: dict[int, str] = {}  # client id -> the unit that drew it
        # What was delivered to each unit: (when sent, from, message type).
        self.delivered_to: dict[str, list[tuple[float, str, str]]] = {}

    def wall(self) -> float:
        return WALL0 + self.now

    # -- spaces and members --------------------------------------------------------

    def create_space(self, admin: int, name: str) -> int:
        peer = self.peers[admin]
        roster, create = rs.Roster.create(peer.signer, name, f"person-{admin}", self.wall())
        k = len(self.spaces)
        space = Space(k, roster.space_id, create, SpaceKey(0, b"", self.rng.randbytes(32)))
        self.spaces.append(space)
        unit = self._unit(admin, k)
        unit.ops = [create]
        unit.keys = {b"": space.key}
        self._boot(unit)
        return k

    def invite(self, k: int, admin: int, peer: int, role: rs.Role) -> None:
        """*peer* joins space *k* with an invite *admin* issued (one-time,
        for *role*): its unit starts with an empty roster and the invite's
        key and token, and dials the admin's unit."""
        host = self._up_unit(admin, k)
        assert host.access is not None
        token = self.rng.randbytes(pw.TOKEN_BYTES)
        host.access.invites[token_hash(token)] = Invite(role, self.wall() + 3600)
        unit = self._unit(peer, k)
        unit.keys = {self.spaces[k].key.key_id: self.spaces[k].key}
        unit.token = token
        unit.join_to = host.address
        self._boot(unit)

    def add_directly(self, k: int, admin: int, peer: int, role: rs.Role) -> None:
        """*admin* adds *peer* by its key, and *peer*'s unit starts with the
        admin's roster (as if it had synced before): for the control run,
        whose engines do not sync rosters."""
        host = self._up_unit(admin, k)
        assert host.access is not None
        roster = host.access.roster
        op = roster.sign_add(self.peers[admin].signer, self.peers[peer].peer_id, self.peers[peer].signer.public_key,
                             role, f"person-{peer}", self.wall())  # fmt: skip
        self._perform(host, self._space_changed(host, (op,), None))
        unit = self._unit(peer, k)
        unit.ops = roster.ops()
        unit.keys = dict(host.keys)
        unit.join_to = host.address
        self._boot(unit)

    def set_role(self, k: int, admin: int, peer: int, role: rs.Role) -> bool:
        unit = self._up_unit(admin, k)
        assert unit.access is not None
        try:
            op = unit.access.roster.sign_role(self.peers[admin].signer, self.peers[peer].peer_id, role, self.wall())
        except rs.RosterError:
            return False
        self._perform(unit, self._space_changed(unit, (op,), None))
        return True

    def remove(self, k: int, admin: int, peer: int) -> bytes | None:
        """*admin* removes *peer* from space *k*, with a new key; the REMOVE's hash."""
        unit = self._up_unit(admin, k)
        assert unit.access is not None
        roster = unit.access.roster
        try:
            op = roster.sign_remove(self.peers[admin].signer, self.peers[peer].peer_id, self.wall())
        except rs.RosterError:
            return None
        digest = rs.decode_op(op).hash
        key = SpaceKey(roster.epoch, digest, self.rng.randbytes(32))
        self.spaces[k].key = key
        self._perform(unit, self._space_changed(unit, (op,), key))
        return digest

    def _space_changed(self, unit: Unit, ops: tuple[bytes, ...], key: SpaceKey | None) -> list[Any]:
        assert unit.engine is not None and unit.access is not None
        if self.gate:
            return list(unit.engine.node.space_changed(ops, self.now, key))
        if key is not None:
            unit.access.keys[key.key_id] = key
        return [RosterChanged(ops)] + ([KeysChanged(tuple(unit.access.keys.values()))] if key else [])

    # -- units -------------------------------------------------------------------

    def _unit(self, peer: int, k: int) -> Unit:
        address = f"p{peer}/s{k}"
        unit = Unit(peer, k, address)
        self.peers[peer].units[k] = unit
        self.units[address] = unit
        return unit

    def unit(self, peer: int, k: int) -> Unit:
        return self.peers[peer].units[k]

    def _up_unit(self, peer: int, k: int) -> Unit:
        unit = self.peers[peer].units[k]
        assert unit.engine is not None, f"p{peer} is down"
        return unit

    def engine(self, peer: int, k: int) -> Engine:
        engine = self._up_unit(peer, k).engine
        assert engine is not None
        return engine

    def _new_client(self, k: int, address: str = "") -> Callable[[], int]:
        def draw() -> int:
            client = self.rng.randrange(1, 2**32)
            self.clients[client] = k
            self.drawn_by[client] = address
            return client

        return draw

    def _boot(self, unit: Unit) -> None:
        space = self.spaces[unit.space]
        peer = self.peers[unit.peer]
        new_client = self._new_client(unit.space, unit.address)
        docs: dict[str, Document] = {}
        for info in unit.store.documents():
            doc = Document(info.name, new_client())
            doc.load(unit.store.load(info.name))
            docs[info.name] = doc
        roster = rs.Roster(space.space_id)
        roster.receive_many(list(unit.ops))
        access = Access(roster, peer.signer, f"person-{unit.peer}", self.wall, dict(unit.keys), token=unit.token)
        engine = Engine(
            peer.peer_id, unit.address, random.Random(self.rng.random()), new_client, self.wall, self.config, docs,
            access=access if self.gate else None,
        )  # fmt: skip
        engine.node.restore_peers(unit.peers_file)
        unit.engine, unit.access = engine, access
        unit.epoch += 1
        unit.timer_at = None
        effects = engine.start(self.now)
        if unit.join_to is not None and unit.join_to not in {a for a, _ in unit.peers_file}:
            effects += engine.join(unit.join_to, self.now)
        self._perform(unit, effects)
        self._arm(unit)

    def crash(self, i: int) -> None:
        peer = self.peers[i]
        if not peer.up:
            return
        peer.up = False
        for unit in peer.units.values():
            # Relayed writes not committed yet are lost with the process.
            unit.unflushed = [(t, w) for t, w in unit.unflushed if t <= self.now]
            self._flush(unit)
            unit.unflushed = []
            unit.engine = None
            unit.epoch += 1
            for link_id, (owner, other, other_link) in list(self.links.items()):
                if owner == unit.address:
                    del self.links[link_id]
                    self.at(self.now + self.faults.min_delay, lambda o=other, ol=other_link: self._closed(o, ol))

    def restart(self, i: int) -> None:
        peer = self.peers[i]
        if peer.up:
            return
        peer.up = True
        for unit in peer.units.values():
            self._boot(unit)

    def set_partition(self, groups: list[list[int]] | None) -> None:
        self.partition = None if groups is None else {n: g for g, members in enumerate(groups) for n in members}

    def _reachable(self, a: str, b: str) -> bool:
        pa, pb = self.units[a].peer, self.units[b].peer
        return self.partition is None or self.partition.get(pa) == self.partition.get(pb)

    # -- what people do ------------------------------------------------------------

    def author(self, i: int, k: int, name: str, text: str, at: int | None = None) -> list[tuple[int, int, int]]:
        """Peer i types *text* into *name* of space *k* (creating it): the
        (client, clock before, clock after) ranges the change wrote."""
        unit = self._up_unit(i, k)
        engine = unit.engine
        assert engine is not None
        effects: list[Any] = []
        if name not in engine.documents:
            effects += engine.create(name, self.now)
        doc = engine.documents[name]
        before = doc.state_vector()
        where = len(doc.text) if at is None else min(at, len(doc.text))
        by = history.Author(f"person-{i}", "#336699", self.peers[i].peer_id.hex())
        effects += engine.author(name, [(where, 0, text)], by, self.now)
        after = doc.state_vector()
        self._perform(unit, effects)
        return [(c, before.get(c, 0), v) for c, v in after.items() if v != before.get(c, 0)]

    def delete_text(self, i: int, k: int, name: str, at: int, n: int) -> list[tuple[int, int, int]]:
        """Peer i deletes *n* characters at *at*: the ranges it wrote (as :meth:`author`)."""
        unit = self._up_unit(i, k)
        engine = unit.engine
        assert engine is not None
        doc = engine.documents[name]
        at = min(at, len(doc.text))
        n = min(n, len(doc.text) - at)
        before = doc.state_vector()
        if n > 0:
            by = history.Author(f"person-{i}", "#336699", self.peers[i].peer_id.hex())
            self._perform(unit, engine.author(name, [(at, n, "")], by, self.now))
        after = doc.state_vector()
        return [(c, before.get(c, 0), v) for c, v in after.items() if v != before.get(c, 0)]

    def move(self, i: int, src: int, dst: int, name: str) -> set[int]:
        """Peer i moves *name* from space *src* to *dst*: the whole state
        goes into a document of that name made in *dst*, and it is deleted
        in *src*. Returns the clients the state carried."""
        source = self._up_unit(i, src)
        target = self._up_unit(i, dst)
        assert source.engine is not None and target.engine is not None
        state = source.engine.documents[name].encode_state()
        carried = set(source.engine.documents[name].state_vector())
        effects = [] if name in target.engine.documents else target.engine.create(name, self.now)
        session = target.engine.session(name)
        effects += target.engine.import_update(name, state, session, self.now)
        self._perform(target, effects)
        by = history.Author(f"person-{i}", "#336699", self.peers[i].peer_id.hex())
        self._perform(source, source.engine.delete(name, by, self.now))
        return carried

    def inject_update(self, i: int, k: int, name: str, text: str) -> list[tuple[int, int, int]]:
        """Peer i sends a raw UPDATE adding *text* to *name* on every ready
        link of its unit of space *k* (a test client holding its keys): its
        own replica does not change. The ranges the update writes."""
        unit = self._up_unit(i, k)
        assert unit.engine is not None
        held = unit.engine.documents.get(name)
        scratch = Document(name, 1)
        if held is not None:
            scratch.load([held.encode_state()])
        client = self._new_client(k, unit.address)()
        while client in scratch.state_vector():
            client = self._new_client(k, unit.address)()
        changes = scratch.edit_as(client, [(0, 0, text)], "raw")
        for change in changes:
            data = pw.encode(pw.Update(name, change.update))
            for link_id, route in list(self.links.items()):
                link = unit.engine.node.links.get(link_id)
                if route.owner == unit.address and link is not None and link.ready:
                    self._send(unit.address, link_id, data)
        return [(client, 0, scratch.state_vector()[client])]

    def cross_link(self, a: str, b: str) -> None:
        """A link between two units, whatever their spaces (as a dial would)."""
        self._connect(a, b)

    # -- effects ----------------------------------------------------------------

    def _perform(self, unit: Unit, effects: list[Any]) -> None:
        if unit.engine is None:
            return
        for e in effects:
            if isinstance(e, SendPeer):
                self._send(unit.address, e.link, e.data)
            elif isinstance(e, Store):
                self._write(unit, Write(e.name, e.update, at=self.now), urgent=not e.relayed)
            elif isinstance(e, Created):
                self._write(unit, Write(e.name, at=self.now), urgent=True)
            elif isinstance(e, Forget):
                self._write(unit, Write(e.name, forget=True, at=self.now), urgent=True)
            elif isinstance(e, Load):
                self._load(unit, e.name)
            elif isinstance(e, Unload):
                self._unload(unit, e.name)
            elif isinstance(e, Dial):
                self._dial(unit, e.address)
            elif isinstance(e, CloseLink):
                self._close(unit.address, e.link, e.reason)
            elif isinstance(e, RosterChanged):
                known = set(unit.ops)
                unit.ops += [op for op in e.ops if op not in known]
            elif isinstance(e, KeysChanged):
                unit.keys = {k.key_id: k for k in e.keys if isinstance(k, SpaceKey)}
            elif isinstance(e, Refused):
                self.refused.append((unit.address, e))
            elif isinstance(e, PeersChanged):
                unit.peers_file = list(e.peers)
        self._arm(unit)

    def _write(self, unit: Unit, write: Write, urgent: bool) -> None:
        if urgent:
            unit.unflushed = [(min(t, self.now), w) for t, w in unit.unflushed]
            unit.unflushed.append((self.now, write))
            self._flush(unit)
            return
        due = self.now + RELAYED_COMMIT_DELAY
        unit.unflushed.append((due, write))
        epoch = unit.epoch
        self.at(due, lambda: unit.epoch == epoch and self._flush(unit))

    def _flush(self, unit: Unit) -> None:
        due = [w for t, w in unit.unflushed if t <= self.now]
        if due:
            unit.store.write(due)
            unit.unflushed = [(t, w) for t, w in unit.unflushed if t > self.now]

    def _load(self, unit: Unit, name: str) -> None:
        epoch = unit.epoch

        def read() -> None:
            if unit.epoch != epoch or unit.engine is None:
                return
            updates = unit.store.load(name) + [w.update for _, w in unit.unflushed if w.name == name and w.update]
            self._perform(unit, unit.engine.loaded(name, updates, self.now))

        self.at(self.now + 0.002, read)

    def _unload(self, unit: Unit, name: str) -> None:
        unit.unflushed = [(min(t, self.now), w) for t, w in unit.unflushed]
        self._flush(unit)
        if unit.engine is not None:
            unit.engine.unloaded(name, self.now)

    def ensure_loaded(self, unit: Unit) -> None:
        engine = unit.engine
        if engine is None:
            return
        for name in list(engine.node.replicas.unloaded):
            engine.load(name)
            updates = unit.store.load(name) + [w.update for _, w in unit.unflushed if w.name == name and w.update]
            self._perform(unit, engine.loaded(name, updates, self.now))

    def _arm(self, unit: Unit) -> None:
        engine = unit.engine
        if engine is None:
            return
        when = engine.next_deadline(self.now)
        if unit.timer_at is not None and unit.timer_at <= when:
            return
        unit.timer_at = when
        epoch = unit.epoch

        def fire() -> None:
            if unit.epoch != epoch or unit.timer_at != when or unit.engine is None:
                return
            unit.timer_at = None
            self._perform(unit, unit.engine.tick(self.now))

        self.at(when, fire)

    def _dial(self, unit: Unit, address: str) -> None:
        epoch = unit.epoch

        def connect() -> None:
            if unit.epoch != epoch or unit.engine is None:
                return
            other = self.units.get(address)
            if other is None or other.engine is None or not self._reachable(unit.address, address):
                wait = 0.0 if other is None or other.engine is None else 3.0

                def fail() -> None:
                    if unit.epoch == epoch and unit.engine is not None:
                        self._perform(unit, unit.engine.dial_failed(address, self.now))

                self.at(self.now + wait, fail)
                return
            self._connect(unit.address, address)

        self.at(self.now + self.faults.dial_delay, connect)

    def _connect(self, a: str, b: str) -> None:
        src, dst = self.units[a], self.units[b]
        assert src.engine is not None and dst.engine is not None
        la, lb = self.links.open(a, b)
        self._perform(dst, dst.engine.link_opened(lb, False, a, self.now))
        self._perform(src, src.engine.link_opened(la, True, b, self.now))

    def _send(self, at: str, link: int, data: bytes) -> None:
        route = self.links.get(link)
        if route is None:
            return
        other = self.units[route.other]
        for delay in self.faults.delays(self.rng, data):
            epoch = other.epoch
            self.at(
                self.now + delay,
                lambda e=epoch, r=route, s=self.now: self._deliver(at, r.other, r.other_link, data, e, s),
            )

    def _deliver(self, at: str, to: str, link: int, data: bytes, epoch: int, sent: float) -> None:
        unit = self.units[to]
        if unit.epoch != epoch or unit.engine is None or link not in self.links or not self._reachable(at, to):
            return
        self.delivered_to.setdefault(to, []).append((sent, at, type(pw.decode(data)).__name__))
        try:
            effects = unit.engine.peer_frame(link, data, self.now)
        except Exception as exc:  # the nodes are honest: any refusal here is a bug
            raise AssertionError(f"seed {self.seed}: {to} failed on a frame from {at}: {exc!r}") from exc
        self._perform(unit, effects)

    def _close(self, at: str, link: int, reason: str) -> None:
        route = self.links.pop(link, None)
        if route is None:
            return
        self.closes.append((self.now, at, route.other, reason))
        self._closed(at, link)
        self.at(self.now + self.faults.close_delay, lambda: self._closed(route.other, route.other_link))

    def _closed(self, address: str, link: int | None) -> None:
        if link is None:
            return
        self.links.pop(link, None)
        unit = self.units[address]
        if unit.engine is not None:
            self._perform(unit, unit.engine.link_closed(link, self.now))

    def run_until(self, t: float) -> None:
        self.advance(t)

    # -- what the checks read --------------------------------------------------------

    def ready_links(self, unit: Unit) -> list[str]:
        """The units *unit* has a ready link to."""
        engine = unit.engine
        if engine is None:
            return []
        out = []
        for link_id, route in self.links.items():
            link = engine.node.links.get(link_id)
            if route.owner == unit.address and link is not None and link.ready:
                out.append(route.other)
        return out
