"""A Meshpad peer's replication engine, sans-IO: the facade over its parts.

Inputs are (link, bytes, now), link events, timer ticks and local changes;
outputs are effects for the shell to perform (``crdt.effects``). Nothing
here reads a clock, opens a socket or draws from the global random
generator: ``now`` and an ``rng`` come in from outside, which is what lets
``tests/sim`` replay a whole network from its seed.

The work is done by parts that each own one protocol's state:

==================  ===================================================
``crdt.links``      the link table and the handshake (HELLO)
``crdt.liveness``   pings, round trips, closing links that went quiet
``crdt.replicas``   the documents and what enters them (the causal gate)
``crdt.pushtree``   pushing changes at once, on a spanning tree (Plumtree)
``crdt.antientropy`` digests and syncs that repair what pushes lost
``crdt.membership`` known peers, dialling, shuffling, peer exchange
``crdt.access``     the space: who may connect and write (the roster), keys
==================  ===================================================

They read the shared link table and tell each other what happened through
the events of ``crdt.effects``, which this facade hands to each in a fixed
order. A message goes to its part through one table; a message that has no
place on a ready link is a protocol error that names it. ``next_deadline``
is the soonest of the parts'.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

from crdt import peerwire as pw
from crdt.access import Access
from crdt.antientropy import AntiEntropy
from crdt.config import Config
from crdt.document import Change, Document
from crdt.effects import (
    AwarenessIn,
    CloseLink,
    Dial,
    DocChanged,
    DocCreated,
    DocumentChanged,
    Effect,
    Event,
    LinkAccepted,
    LinkGone,
    LinkHello,
    LinkId,
    LinkLost,
    Load,
    PauseLink,
    PeersChanged,
    ResumeLink,
    SendPeer,
    peer_origin,
)
from crdt.errors import RemoteProtocolError
from crdt.links import Link, Links
from crdt.liveness import Liveness
from crdt.membership import Membership
from crdt.peerrows import PeerRow, peer_rows
from crdt.pushtree import MAX_MISSING_IDS, PushTree
from crdt.replicas import Replicas

__all__ = [
    "AwarenessIn",
    "CloseLink",
    "Config",
    "Dial",
    "DocChanged",
    "DocCreated",
    "Effect",
    "Link",
    "LinkLost",
    "Node",
    "PeerRow",
    "PeersChanged",
    "SendPeer",
    "peer_origin",
]
_MAX_MISSING_IDS = MAX_MISSING_IDS
# Messages of one link that wait for their documents to load, before the
# link is no longer read from (it is read again once they are handled).
PARK_PAUSE = 256
_MIN_TIMER = 0.005  # seconds; the shortest timer next_deadline asks for


class Node:
    def __init__(
        self,
        peer_id: bytes,
        listen: str,
        rng: random.Random,
        new_client_id: Callable[[], int],
        config: Config | None = None,
        documents: dict[str, Document] | None = None,
        relay: bool = True,
        access: Access | None = None,
    ) -> None:
        """With *relay* off, changes that came from links are not pushed on
        here: the caller batches them with its own (``crdt.engine``). With
        *access*, the node replicates that space and checks its rights;
        without, every peer that connects may do everything."""
        if len(peer_id) != pw.PEER_ID_BYTES:
            raise ValueError("peer id must be 16 bytes")
        cfg = self.config = config or Config()
        self.peer_id = peer_id
        self.listen = listen
        self.rng = rng
        self.relay = relay
        self.table = Links(peer_id, listen, rng)
        self.links = self.table.by_id
        self.replicas = Replicas(self.table, rng, new_client_id, cfg.stuck_after, documents or {})
        self.documents = self.replicas.documents
        self.blocked = self.replicas.blocked
        self.liveness = Liveness(self.table, cfg.ping_interval, cfg.suspect_after, cfg.dead_after, cfg.hello_timeout)
        self.push = PushTree(self.table, self.replicas, self._emit, enabled=cfg.push, lazy_interval=cfg.lazy_interval,
                             graft_after=cfg.graft_after, swap_after=cfg.swap_after)  # fmt: skip
        self.antientropy = AntiEntropy(self.table, self.replicas, rng, self._emit, cfg.ae_interval, cfg.ae_fanout,
                                       cfg.sync_timeout, cfg.fetch_window, cfg.ae_idle_factor)  # fmt: skip
        self.membership = Membership(
            self.table, rng, active_target=cfg.active_target, active_max=cfg.active_max,
            known_limit=cfg.known_limit, exchange_interval=cfg.exchange_interval,
            shuffle_interval=cfg.shuffle_interval, backoff=cfg.backoff,
        )  # fmt: skip
        self.known = self.membership.known
        self.access = access
        if access is not None:
            access.bind(self.table, rng)
            self.push.takes = access.takes_pushes
            access.forget_peer = self.known.forget_peer
            self.known.allowed = lambda peer_id: peer_id not in access.roster.removed
        # Messages waiting for documents being loaded (crdt.replicas rule 0), in order.
        self._parked: list[tuple[LinkId, Any, tuple[str, ...]]] = []
        self._parked_by_link: dict[LinkId, int] = {}
        self._park_paused: set[LinkId] = set()
        self._handlers: dict[type, Callable[[Link, Any, float], list[Effect]]] = {
            pw.Ping: self.liveness.on_ping,
            pw.Pong: self.liveness.on_pong,
            pw.Update: self.push.on_update,
            pw.IHave: self.push.on_ihave,
            pw.Prune: self.push.on_prune,
            pw.Graft: self.push.on_graft,
            pw.SyncStep1: self.antientropy.on_step1,
            pw.SyncStep2: self.antientropy.on_step2,
            pw.Digest: self.antientropy.on_digest,
            pw.DocDigests: self.antientropy.on_doc_digests,
            pw.Peers: self.membership.on_peers,
            pw.Bye: self.membership.on_bye,
            pw.Awareness: self.replicas.on_awareness,
            pw.Unavailable: self.antientropy.on_unavailable,
        }
        if access is not None:
            self._handlers[pw.Roster] = access.on_roster
            self._handlers[pw.RosterHeads] = access.on_heads
            self._handlers[pw.Keys] = access.on_keys

    def _emit(self, event: Event, now: float) -> list[Effect]:
        """Hand an event to every part that cares, in a fixed order."""
        if isinstance(event, DocumentChanged):
            self.antientropy.stir(now)
            effects = self.replicas.on_changed(event, now)
            return effects + self.push.on_changed(event, now) if self.relay else effects
        if isinstance(event, LinkAccepted):
            link = self.links.get(event.link)
            return self.membership.on_accepted(link, now) if link is not None else []
        if isinstance(event, LinkHello):
            link = self.links[event.link]
            effects = self.access.on_hello(link, now) if self.access is not None and event.kept else []
            effects += self.membership.on_hello(link, event.kept, now)
            return effects + self.antientropy.on_hello(link, event.kept, now)
        if isinstance(event, LinkGone):
            self.replicas.on_gone(event.link)
            effects = self.antientropy.on_gone(event.link.id, now) + self.push.on_gone(event, now)
            return effects + self.membership.on_gone(event.link, event.reason, now)
        raise AssertionError(f"unknown event {event!r}")

    # -- documents -----------------------------------------------------------

    def document(self, name: str) -> Document:
        return self.replicas.document(name)

    def root_digest(self) -> bytes:
        return self.replicas.root_digest()

    def drop(self, name: str, now: float) -> list[Effect]:
        """*name* is deleted forever (``crdt.meta``): forget it here, and
        never make it again from a link's data."""
        return self.replicas.drop(name) + self.antientropy.forget(name, now) + self.push.forget(name)

    def create(self, name: str, now: float = 0.0) -> list[Effect]:
        """A document made here (it spreads with a round on every link)."""
        self.replicas.document(name)
        return self.antientropy.created(now)

    def local_change(self, name: str, update: bytes, origin: object, now: float) -> list[Effect]:
        """A change integrated here (from a browser or a local edit): push
        it, and read again from links whose waiting updates it let in."""
        self.antientropy.stir(now)
        return self.replicas.resume(name) + self.push.push(name, update, origin, now)

    def local_awareness(
        self, name: str, update: bytes, exclude: LinkId | None = None, now: float = 0.0
    ) -> list[Effect]:
        return self.push.awareness(name, update, exclude, now)

    def edit(self, name: str, now: float, *, insert: str = "", at: int = 0, delete: int = 0) -> list[Effect]:
        """Author an edit on this peer (tests, the simulator)."""
        return self.authored(name, self.document(name).edit("local", insert=insert, at=at, delete=delete), now)

    def authored(self, name: str, changes: list[Change], now: float) -> list[Effect]:
        """Changes made to a document here (an edit, a version named, a
        restore): store them and push them."""
        return self._emit(DocumentChanged(name, tuple(Change(c.update, "local") for c in changes), "local"), now)

    # -- membership ----------------------------------------------------------

    def join(self, address: str, now: float) -> list[Effect]:
        return self.membership.join(address, now)

    def restore_peers(self, peers: list[tuple[str, str]]) -> None:
        self.membership.restore_peers(peers)

    def dial_failed(self, address: str, now: float, reason: str | None = None) -> list[Effect]:
        """A dial of *address* did not give a link; *reason* says why, as a
        person reads it (shown on the Peers page)."""
        return self.membership.dial_failed(address, now, reason)

    # -- links -----------------------------------------------------------------

    def link_opened(
        self, link_id: LinkId, outbound: bool, address: str, now: float, remote_id: bytes | None = None
    ) -> list[Effect]:
        """A link is open (and, when *remote_id* is given, its channel has
        authenticated that peer: its HELLO must then carry the same id)."""
        hello = self.table.open(link_id, outbound, address, now, remote_id)
        self.liveness.opened(self.links[link_id], now)
        return [hello]

    def link_closed(self, link_id: LinkId, now: float, reason: str | None = None) -> list[Effect]:
        """A link is gone; *reason*, when known, is why (kept for the Peers
        page when the link never became ready)."""
        link = self.table.remove(link_id)
        if link is None:
            return []
        lost: list[Effect] = [LinkLost(link.id, link.planned)] if link.ready else []
        return lost + self._emit(LinkGone(link, reason), now)

    def receive(self, link_id: LinkId, data: bytes, now: float) -> list[Effect]:
        """One frame from a link. Raises RemoteProtocolError for anything the
        protocol forbids; the shell then closes the link."""
        link = self.table.heard(link_id, len(data), now)
        msg = pw.decode(data)
        if not link.ready:
            if not isinstance(msg, pw.Hello):
                raise RemoteProtocolError("first message must be HELLO")
            admitted: list[Effect] = []
            if self.access is not None and msg.peer_id != self.peer_id:
                if link.remote_id is not None and msg.peer_id != link.remote_id:
                    raise RemoteProtocolError("HELLO names another peer than the one authenticated")
                keep, admitted = self.access.admit(link, msg, now)
                if not keep:
                    link.closing = True
                    return admitted
            outcome, effects = self.table.hello(link, msg)
            effects = admitted + effects
            if outcome == "self":
                self.membership.on_self(link)
                return effects
            return effects + self._emit(LinkHello(link.id, outcome == "ready"), now)
        self.membership.heard(link, now)
        handler = self._handlers.get(type(msg))
        if handler is None:
            raise RemoteProtocolError(f"{type(msg).__name__.upper()} is not expected on a link that said HELLO")
        if self.access is not None and type(msg) in _WRITES and not self.access.may_write(link):
            return self._refuse_write(link, msg, now)
        names = _documents_of(msg)
        if names:
            used = self.replicas.used
            for name in names:
                used[name] = now
            if any(self.replicas.needs_load(name) for name in names):
                return self._park(link, msg, names)
        return handler(link, msg, now)

    def _refuse_write(self, link: Link, msg: Any, now: float) -> list[Effect]:
        """A change from a peer that may not write: dropped, and counted when
        it is one it sent of itself (an answer to our SYNC_STEP1 is not).
        A document asked of a reader (``crdt.fetches``) is asked of another
        candidate at once: left asked there, the dropped answer would hold it
        until the ask timed out, and back on the same link after it."""
        assert self.access is not None
        if isinstance(msg, pw.IHave):
            return []
        if isinstance(msg, pw.SyncStep2):
            link.syncing.pop(msg.name, None)
            self.access.count("answer")
            ae = self.antientropy
            return ae._ask_all(ae.fetches.withdraw(link.id, msg.name), now)
        self.access.count("edit")
        return self.access.refuse_edit(link, type(msg).__name__.upper())

    # -- the space -------------------------------------------------------------

    def space_changed(self, ops: tuple[bytes, ...], now: float, new_key: Any = None) -> list[Effect]:
        """Roster ops signed here (``crdt.access.Access.signed``)."""
        assert self.access is not None
        return self.access.signed(ops, now, new_key)

    # -- documents that are not loaded (crdt.replicas rule 0) --------------------------

    def _park(self, link: Link, msg: Any, names: tuple[str, ...]) -> list[Effect]:
        effects: list[Effect] = []
        for name in names:
            if self.replicas.needs_load(name) and name not in self.replicas.loading:
                self.replicas.loading.add(name)
                effects.append(Load(name))
        self._parked.append((link.id, msg, names))
        count = self._parked_by_link[link.id] = self._parked_by_link.get(link.id, 0) + 1
        if count == PARK_PAUSE:
            self._park_paused.add(link.id)
            effects.append(PauseLink(link.id))
        return effects

    def load(self, name: str) -> list[Effect]:
        """Ask for *name* to be loaded (a browser opens it)."""
        if not self.replicas.needs_load(name) or name in self.replicas.loading:
            return []
        self.replicas.loading.add(name)
        return [Load(name)]

    def loaded(self, doc: Document, now: float) -> list[Effect]:
        """*doc* was read back from the store: the messages that waited for it
        are handled now, in the order they came."""
        self.replicas.loaded(doc)
        return self._replay(now)

    def load_failed(self, name: str, now: float) -> list[Effect]:
        """*name* cannot be read: it is blocked (links are told UNAVAILABLE)."""
        self.replicas.loading.discard(name)
        self.replicas.unloaded.pop(name, None)
        self.replicas.blocked.add(name)
        return self._replay(now)

    def parked(self, name: str) -> bool:
        return any(name in names for _, _, names in self._parked)

    def _replay(self, now: float) -> list[Effect]:
        effects: list[Effect] = []
        waiting: list[tuple[LinkId, Any, tuple[str, ...]]] = []
        parked, self._parked = self._parked, []
        for link_id, msg, names in parked:
            if any(self.replicas.needs_load(name) for name in names):
                waiting.append((link_id, msg, names))
                continue
            self._parked_by_link[link_id] -= 1
            link = self.links.get(link_id)
            if link is None or not link.live:
                continue
            try:
                effects += self._handlers[type(msg)](link, msg, now)
            except RemoteProtocolError as exc:
                effects.append(self.table.close_id(link_id, f"protocol error: {exc}"))
        self._parked = waiting + self._parked
        for link_id in list(self._park_paused):
            if self._parked_by_link.get(link_id, 0) < PARK_PAUSE // 2:
                self._park_paused.discard(link_id)
                effects.append(ResumeLink(link_id))
        for link_id, count in list(self._parked_by_link.items()):
            if count <= 0:
                del self._parked_by_link[link_id]
        return effects

    # -- timers ------------------------------------------------------------------

    def tick(self, now: float) -> list[Effect]:
        return (
            (self.access.tick(now) if self.access is not None else [])
            + self.liveness.tick(now)
            + self.antientropy.tick(now)
            + self.membership.tick(now)
            + self.push.tick(now)
            + self.replicas.tick(now)
        )

    def next_deadline(self, now: float) -> float:
        """When :meth:`tick` next has work; the shell arms one timer for it."""
        soonest = min(
            self.liveness.next_deadline(),
            self.antientropy.next_deadline(now),
            self.membership.next_deadline(now),
            self.push.next_deadline(),
            self.replicas.next_deadline() if self.table.any_ready() else float("inf"),
            self.access.next_deadline(now) if self.access is not None else float("inf"),
        )
        if soonest == float("inf"):
            return now + 1.0
        # Never ask to be woken in the past: what is due has just been done.
        return max(now + _MIN_TIMER, soonest)

    # -- what the Peers page shows -----------------------------------------------

    def peer_rows(self, now: float) -> list[PeerRow]:
        return peer_rows(self.table, self.liveness, self.known, self.replicas.held(), now)


# What carries changes: taken from writers only (crdt.access).
_WRITES = (pw.Update, pw.SyncStep2, pw.IHave)


def _documents_of(msg: Any) -> tuple[str, ...]:
    """The documents a message is about (it needs them loaded)."""
    if isinstance(msg, (pw.Update, pw.SyncStep1, pw.SyncStep2, pw.IHave, pw.Awareness)):
        return (msg.name,)
    if isinstance(msg, pw.Graft):
        return tuple(name for name, _ in msg.documents)
    return ()
