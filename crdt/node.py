"""A Meshpad peer's replication engine, sans-IO.

Inputs are (link, bytes, now), link events, timer ticks and local changes;
outputs are effects for the shell to perform. Nothing here reads a clock,
opens a socket or draws from the global random generator: ``now`` and an
``rng`` come in from outside, which is what lets ``tests/sim`` replay a whole
network from its seed.

Invariants (numbers are cited in the code):

1. pycrdt only sees an update once its causes are local (``Document``'s
   gate); an update that waits too long triggers a state-vector sync with the
   link it came from.
2. A change is pushed at once over the *eager* links except the one it came
   from, and named in an IHAVE over the *lazy* ones, batched every
   ``lazy_interval`` (Plumtree). A link starts eager; an UPDATE that brings
   nothing new makes it lazy at both ends (PRUNE), so the eager links thin
   out to a tree and a change costs about one message per peer (what came
   first by anti-entropy does not count as a duplicate, and a peer keeps its
   last eager link). A peer that is still missing what an IHAVE named
   ``graft_after`` later asks that link for it and makes it eager again
   (GRAFT): the tree mends itself where it breaks; a lazy link that names
   changes well before the eager copy comes replaces the eager one. A
   duplicate changes nothing and so is not pushed on.
3. Anti-entropy: every ``ae_interval``, at a phase drawn at random, the
   next link of a pass over all links in random order gets our root digest
   (a hash over every document's name, state vector and delete set). Equal
   roots end the round (a few dozen bytes). Different roots bring back the
   per-document digests, and each differing document is synced both ways
   with state vectors (push-pull: both sides end with the union). A new
   link starts with a round. A document whose sync is under way on a link
   is not asked for again there until the answer comes (or
   ``sync_timeout`` passes): both ends open a new link with a round, and a
   returning peer must get what it missed once, not once per round.
4. A link that is silent for ``dead_after`` seconds is closed and replaced
   from the known view; at most one link per pair of peers survives.
5. Every ``shuffle_interval`` a peer at its target replaces one link by a
   link to a random known peer (the new one is dialled first, another is
   closed once the new one is accepted), and a peer above it closes one, so
   that the links form a random graph rather than the neighbourhood of the
   peer each one joined through.
6. An address given to join through is dialled, even when the links are
   full, until it has answered once: otherwise peers that start together
   can form groups that know nothing of each other.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from crdt import peerwire as pw
from crdt.document import BufferFull, Change, Document, Overlaps
from crdt.errors import RemoteProtocolError
from crdt.limits import LINK_MESSAGE_BURST, LINK_MESSAGES_PER_SECOND, TokenBucket
from crdt.membership import Backoff, Known, KnownPeers
from crdt.yupdate import decode_state_vector, encode_state_vector, parse_update
from crdt.ywire import decode_awareness

LinkId = int
_MIN_TIMER = 0.005  # seconds; the shortest timer next_deadline asks for
_SHUFFLED = "shuffle: replaced by a link to another peer"
# Bounds on lazy-push bookkeeping. Past them a change is left to
# anti-entropy rather than remembered: they only cost latency.
_MAX_ANNOUNCED_DELETES = 1024  # delete ranges waiting in one document's IHAVE
_MAX_MISSING = 1024  # documents with changes named by an IHAVE and not here yet
_MAX_MISSING_IDS = 16_384  # client clocks and delete ranges remembered for them, in all


@dataclass(frozen=True, slots=True)
class Config:
    """Timing and sizing of the protocol. The defaults suit a LAN or loopback;
    every duration is in seconds."""

    active_target: int = 5  # links this peer keeps open (dials while below, sheds one per shuffle above)
    active_max: int = 8  # inbound links beyond this are refused with a peer sample
    known_limit: int = 256  # addresses remembered (the passive view)
    ping_interval: float = 1.0  # a PING on every link this often
    suspect_after: float = 2.5  # silence before a link is shown as suspected
    dead_after: float = 5.0  # silence before a link is closed and replaced
    ae_interval: float = 1.0  # one anti-entropy round this often (a "round" of gossip)
    ae_fanout: int = 1  # links that get our digest each round (the next ones of the current pass)
    exchange_interval: float = 10.0  # peer exchange with one random link this often
    shuffle_interval: float = 30.0  # one link replaced by one to a random known peer this often
    stuck_after: float = 2.0  # an update waiting this long for its causes triggers a sync
    sync_timeout: float = 10.0  # a document's sync on a link counts as under way this long at most
    hello_timeout: float = 5.0  # a link that has not said HELLO by then is closed
    lazy_interval: float = 0.2  # IHAVEs for the lazy links are sent in batches this often
    graft_after: float = 0.1  # what an IHAVE named and has not come by then is asked for (GRAFT)
    swap_after: float = 0.05  # an UPDATE this much later than an IHAVE naming it: the lazy link is the faster path
    backoff: Backoff = field(default_factory=Backoff)
    push: bool = True  # False leaves spreading to anti-entropy alone (to measure it)


# -- effects ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SendPeer:
    link: LinkId
    data: bytes


@dataclass(frozen=True, slots=True)
class Dial:
    address: str


@dataclass(frozen=True, slots=True)
class CloseLink:
    link: LinkId
    reason: str


@dataclass(frozen=True, slots=True)
class DocChanged:
    """A peer changed a document: store it, show it to the browsers."""

    name: str
    update: bytes
    origin: object


@dataclass(frozen=True, slots=True)
class DocCreated:
    name: str


@dataclass(frozen=True, slots=True)
class AwarenessIn:
    name: str
    update: bytes
    link: LinkId


@dataclass(frozen=True, slots=True)
class PeersChanged:
    peers: list[tuple[str, str]]  # (peer id hex, address)


Effect = SendPeer | Dial | CloseLink | DocChanged | DocCreated | AwarenessIn | PeersChanged


def peer_origin(link: LinkId) -> tuple[str, int]:
    return ("peer", link)


# -- lazy push ---------------------------------------------------------------------


@dataclass(slots=True)
class _Ids:
    """Changes to one document, as an IHAVE names them: per client the clock
    reached, and the deleted ranges (merged per client)."""

    ends: dict[int, int] = field(default_factory=dict)
    deletes: dict[int, list[tuple[int, int]]] = field(default_factory=dict)  # client -> [(start, stop)]
    delete_count: int = 0

    def add(self, ends: Iterable[tuple[int, int]], deletes: Iterable[tuple[int, int, int]]) -> None:
        for client, clock in ends:
            if self.ends.get(client, 0) < clock:
                self.ends[client] = clock
        for client, clock, length in deletes:
            ranges = self.deletes.setdefault(client, [])
            start, stop = clock, clock + length
            if ranges and start <= ranges[-1][1] and stop >= ranges[-1][0]:
                # Touches the last range: typing deletes neighbours, forwards or backwards.
                ranges[-1] = (min(start, ranges[-1][0]), max(stop, ranges[-1][1]))
            elif self.delete_count < _MAX_ANNOUNCED_DELETES:
                ranges.append((start, stop))
                self.delete_count += 1
            # else: anti-entropy brings the rest

    def forget(self, ends: Iterable[tuple[int, int]]) -> None:
        """The other side has these clocks: no need to name them."""
        for client, clock in ends:
            if self.ends.get(client, clock + 1) <= clock:
                del self.ends[client]

    def deletes_flat(self) -> list[tuple[int, int, int]]:
        return [
            (client, start, stop - start) for client, ranges in sorted(self.deletes.items()) for start, stop in ranges
        ]

    def message(self, name: str) -> pw.IHave:
        return pw.IHave(name, tuple(sorted(self.ends.items())), tuple(self.deletes_flat()))

    def size(self) -> int:
        return len(self.ends) + self.delete_count

    def __bool__(self) -> bool:
        return bool(self.ends or self.deletes)


@dataclass(slots=True)
class _Missing:
    """Changes named by IHAVEs that have not come yet."""

    named_at: float  # when the first IHAVE naming them came
    due: float  # when to ask for them
    links: list[LinkId]  # the links that named them, first first
    ids: _Ids


# -- links -----------------------------------------------------------------------


@dataclass(slots=True)
class Link:
    id: LinkId
    outbound: bool
    address: str  # dialled address, or the remote host seen by the shell
    opened_at: float
    last_heard: float
    peer_id: bytes | None = None
    listen: str = ""
    next_ping: float = 0.0
    ping_nonce: int = 0
    ping_sent_at: float | None = None
    rtt: float | None = None
    bytes_in: int = 0
    bytes_out: int = 0
    remote_id: bytes | None = None  # authenticated by the secure channel, when there is one
    budget: TokenBucket = field(default_factory=lambda: TokenBucket(LINK_MESSAGES_PER_SECOND, LINK_MESSAGE_BURST))
    nonce: int = 0  # our HELLO nonce on this link
    key: tuple[bytes, int, int] = (b"", 0, 0)  # which of two links to one peer survives
    in_sync: set[str] = field(default_factory=set)
    all_in_sync: bool = False
    last_sync_check: float | None = None
    accepted: bool = False  # a DIGEST came: the other side keeps the link (a busy peer sends BYE instead)
    # Documents whose anti-entropy sync is under way on this link: our
    # SYNC_STEP1 went out (when) and its SYNC_STEP2 has not come back.
    syncing: dict[str, float] = field(default_factory=dict)
    planned: bool = False  # (5) closed by a shuffle: the peer is alive and reachable through other links
    closing: bool = False  # closed by a timer (silent, no HELLO): not asked again while the close completes
    eager: bool = True  # (2) changes are pushed here; else named in IHAVEs
    carried: bool = False  # an UPDATE went either way here: the link has been on the tree
    announce: dict[str, _Ids] = field(default_factory=dict)  # the next IHAVEs, by document

    @property
    def ready(self) -> bool:
        return self.peer_id is not None

    @property
    def live(self) -> bool:
        """Ready and not being closed: it may carry messages."""
        return self.peer_id is not None and not self.closing


class Node:
    def __init__(
        self,
        peer_id: bytes,
        listen: str,
        rng: random.Random,
        new_client_id: Callable[[], int],
        config: Config | None = None,
        documents: dict[str, Document] | None = None,
    ) -> None:
        if len(peer_id) != pw.PEER_ID_BYTES:
            raise ValueError("peer id must be 16 bytes")
        self.peer_id = peer_id
        self.listen = listen
        self.rng = rng
        self.new_client_id = new_client_id
        self.config = config or Config()
        self.documents: dict[str, Document] = documents if documents is not None else {}
        self.known = KnownPeers(peer_id, self.config.known_limit, self.config.backoff)
        self.links: dict[LinkId, Link] = {}
        self._next_ae: float | None = None  # set, at a random phase, by the first link
        self._ae_order: list[LinkId] = []  # links still due a round in this pass
        self._next_shuffle: float | None = None
        self._shuffle_to: str | None = None  # the address dialled to replace a link
        self._introducers: set[str] = set()  # join addresses that have not answered yet (6)
        self._next_exchange = 0.0
        self._stuck: dict[str, float] = {}  # document -> when its oldest waiting update arrived
        self._next_announce: float | None = None  # (2) when the batched IHAVEs go out
        self._missing: dict[str, _Missing] = {}  # (2) named by IHAVEs, not here yet
        self._missing_ids = 0  # the size of what _missing remembers (bounded by _MAX_MISSING_IDS)
        # (2) Per document, the clock of each client up to which changes
        # came pushed (UPDATE), as opposed to synced (SYNC_STEP2).
        self._pushed: dict[str, dict[int, int]] = {}
        self._root: tuple[int, int, bytes] | None = None  # (documents, generations, digest)
        # Documents this peer cannot read back from its store: never created
        # anew from peers' data (that would bury the damaged copy).
        self.blocked: set[str] = set()

    # -- documents -----------------------------------------------------------

    def document(self, name: str) -> Document:
        doc = self.documents.get(name)
        if doc is None:
            doc = self.documents[name] = Document(name, self.new_client_id())
        return doc

    def root_digest(self) -> bytes:
        """Hash over every document's digest, cached until any of them changes."""
        key = (len(self.documents), sum(doc.generation for doc in self.documents.values()))
        if self._root is None or self._root[:2] != key:
            h = hashlib.blake2b(digest_size=pw.HASH_BYTES)
            for name in sorted(self.documents):
                h.update(self.documents[name].digest())
            self._root = (*key, h.digest())
        return self._root[2]

    def create(self, name: str) -> list[Effect]:
        """A document made here (it spreads with the next anti-entropy round)."""
        self.document(name)
        return [SendPeer(link.id, pw.encode(self._digest_message())) for link in self._ready_links()]

    def local_change(self, name: str, update: bytes, origin: object, now: float) -> list[Effect]:
        """A change integrated here (from a browser, a local edit or a peer):
        push it on the eager links, name it to the lazy ones (2)."""
        if not self.config.push:
            return []
        effects: list[Effect] = []
        data: bytes | None = None
        info = None
        for link in self.links.values():
            if not link.live or peer_origin(link.id) == origin:
                continue
            if link.eager:
                data = data or pw.encode(pw.Update(name, update))
                link.carried = True
                effects.append(self._send(link, data))
                continue
            info = info or parse_update(update)
            ends = [(client, end) for client, (_, end) in info.ranges.items()]
            link.announce.setdefault(name, _Ids()).add(ends, info.deletes)
            if self._next_announce is None:
                self._next_announce = now + self.config.lazy_interval
        return effects

    def local_awareness(self, name: str, update: bytes, exclude: LinkId | None = None) -> list[Effect]:
        """Cursors follow the eager links (2): they reach every peer the
        changes reach, without the duplicates of a flood."""
        data = pw.encode(pw.Awareness(name, update))
        return [self._send(link, data) for link in self._ready_links() if link.id != exclude and link.eager]

    def edit(self, name: str, now: float, *, insert: str = "", at: int = 0, delete: int = 0) -> list[Effect]:
        """Author an edit on this peer (import, tests, the simulator)."""
        return self.authored(name, self.document(name).edit("local", insert=insert, at=at, delete=delete), now)

    def authored(self, name: str, changes: list[Change], now: float) -> list[Effect]:
        """Changes made to a document here (an edit, a version named, a
        restore): store them and push them."""
        effects: list[Effect] = []
        for change in changes:
            effects.append(DocChanged(name, change.update, "local"))
            effects.extend(self.local_change(name, change.update, "local", now))
        return effects

    # -- membership ----------------------------------------------------------

    def join(self, address: str, now: float) -> list[Effect]:
        entry = self.known.add(address)
        if entry is not None:
            entry.next_dial = now
            entry.introducer = True
            self._introducers.add(address)
        return self.tick(now)

    def restore_peers(self, peers: list[tuple[str, str]]) -> None:
        """Peers remembered in the data dir: (peer id hex or "", address)."""
        for peer_hex, address in peers:
            try:
                peer_id = bytes.fromhex(peer_hex) if peer_hex else None
            except ValueError:
                peer_id = None
            self.known.add(address, peer_id)
        self.known.changed = False

    def dial_failed(self, address: str, now: float, reason: str | None = None) -> list[Effect]:
        """A dial of *address* did not give a link; *reason* says why, as a
        person reads it (shown on the Peers page)."""
        self.known.failed(address, now, self.rng, reason)
        if address == self._shuffle_to:
            self._shuffle_to = None
        return []

    # -- links -----------------------------------------------------------------

    def link_opened(
        self, link_id: LinkId, outbound: bool, address: str, now: float, remote_id: bytes | None = None
    ) -> list[Effect]:
        """A link is open (and, when *remote_id* is given, its channel has
        authenticated that peer: its HELLO must then carry the same id)."""
        link = Link(link_id, outbound, address, now, now, next_ping=now + self.config.ping_interval)
        link.remote_id = remote_id
        link.nonce = self.rng.getrandbits(52)  # fits the 8-byte varints the codec reads
        self.links[link_id] = link
        hello = pw.Hello(pw.VERSION, self.peer_id, self.listen, link.nonce)
        return [self._send(link, pw.encode(hello))]

    def link_closed(self, link_id: LinkId, now: float, reason: str | None = None) -> list[Effect]:
        """A link is gone; *reason*, when known, is why (kept for the Peers
        page when the link never became ready)."""
        link = self.links.pop(link_id, None)
        if link is None:
            return []
        if link.outbound and link.address == self._shuffle_to:
            self._shuffle_to = None
        if link.outbound and not link.ready:
            self.known.failed(link.address, now, self.rng, reason)
        elif link.outbound:
            entry = self.known.by_address.get(link.address)
            if entry is not None:
                entry.dialing = False
                # Keep a longer wait set by a BYE; else come back soon.
                entry.next_dial = max(entry.next_dial, now + self.config.backoff.delay(entry.failures, self.rng))
        effects: list[Effect] = []
        if link.ready and link.eager and link.carried:
            # (2) A link of the tree is gone, and the peers beyond it may
            # now be cut off from changes made on this side (and we from
            # theirs): every link is eager again, at both ends, until the
            # next changes prune the tree anew. Waiting for an IHAVE to
            # reveal the gap would cost a change lazy_interval + graft_after.
            for other in self._ready_links():
                if not other.eager:
                    other.eager = True
                    effects.append(self._send(other, pw.encode(pw.Graft(()))))
        origin = peer_origin(link_id)
        for name in list(self._stuck):
            doc = self.documents[name]
            doc.drop_pending(origin)
            if doc.pending_count() == 0:
                del self._stuck[name]
        return effects + self.tick(now)

    def receive(self, link_id: LinkId, data: bytes, now: float) -> list[Effect]:
        """One frame from a link. Raises RemoteProtocolError for anything the
        protocol forbids; the shell then closes the link."""
        link = self.links.get(link_id)
        if link is None:
            raise RemoteProtocolError("link is not open")
        link.bytes_in += len(data)
        link.last_heard = now
        if not link.budget.take(now):
            raise RemoteProtocolError(f"more than {LINK_MESSAGES_PER_SECOND:.0f} messages per second")
        msg = pw.decode(data)
        if not link.ready:
            if not isinstance(msg, pw.Hello):
                raise RemoteProtocolError("first message must be HELLO")
            return self._on_hello(link, msg, now)
        if link.peer_id is not None:
            entry = self._known_for(link)
            if entry is not None:
                entry.last_heard = now
        if isinstance(msg, pw.Ping):
            return [self._send(link, pw.encode(pw.Pong(msg.nonce)))]
        if isinstance(msg, pw.Pong):
            if msg.nonce == link.ping_nonce and link.ping_sent_at is not None:
                link.rtt = now - link.ping_sent_at
                link.ping_sent_at = None
            return []
        if isinstance(msg, pw.Update):
            return self._on_update(link, msg.name, msg.update, now, pushed=True)
        if isinstance(msg, pw.SyncStep1):
            return self._on_step1(link, msg, now)
        if isinstance(msg, pw.SyncStep2):
            link.syncing.pop(msg.name, None)
            return self._on_update(link, msg.name, msg.update, now)
        if isinstance(msg, pw.Digest):
            effects = [] if link.accepted else self._on_accepted(link, now)
            return effects + self._on_digest(link, msg, now)
        if isinstance(msg, pw.DocDigests):
            return self._on_doc_digests(link, msg, now)
        if isinstance(msg, pw.Peers):
            for peer_id, address in msg.peers:
                self.known.add(address, peer_id)
            return self._peers_changed()
        if isinstance(msg, pw.Awareness):
            decode_awareness(msg.update)  # refused here, at the boundary, if malformed
            if msg.name not in self.documents:
                return []
            return [AwarenessIn(msg.name, msg.update, link.id)]
        if isinstance(msg, pw.IHave):
            return self._on_ihave(link, msg, now)
        if isinstance(msg, pw.Prune):
            if link.eager and not self._other_eager(link):
                # (2) Our last eager link: without it changes would reach us
                # only through IHAVEs, lazy_interval + graft_after late.
                # Prunes from both ends of a peer's links cross when changes
                # come from several directions; refuse this one.
                return [self._send(link, pw.encode(pw.Graft(())))]
            link.eager = False
            return []
        if isinstance(msg, pw.Graft):
            return self._on_graft(link, msg)
        if isinstance(msg, pw.Bye):
            link.planned = msg.reason == _SHUFFLED
            if link.outbound:
                # Not a failure of the network, but do not come straight back.
                self.known.failed(link.address, now, self.rng)
            return [CloseLink(link.id, f"peer said goodbye: {msg.reason}")]
        raise RemoteProtocolError("HELLO sent twice")

    # -- handlers ----------------------------------------------------------------

    def _on_hello(self, link: Link, hello: pw.Hello, now: float) -> list[Effect]:
        if link.remote_id is not None and hello.peer_id != link.remote_id:
            raise RemoteProtocolError("HELLO names another peer than the one authenticated")
        if hello.peer_id == self.peer_id:
            self.known.forget(link.address)
            return [CloseLink(link.id, "connected to itself")]
        link.peer_id = hello.peer_id
        # Where the peer can be dialled (a peer on every interface says
        # 0.0.0.0: the address it came from stands in for that).
        link.listen = _listen_address(hello.listen, link) if hello.listen else ""
        if self._next_ae is None:
            # (3) Rounds start at a random phase: peers that start together
            # (a restarted network, the simulator) must not all exchange in
            # the same instant, which would make an update wait a whole round
            # at every hop.
            self._next_ae = now + self.rng.random() * self.config.ae_interval
            # (5) The first shuffle once the first links have had their time.
            self._next_shuffle = now + (1 + self.rng.random()) * self.config.shuffle_interval
        if link.outbound:
            # Its failures are forgiven only when the peer accepts the link
            # (its first DIGEST): a busy peer that says BYE to every dial
            # must see the wait grow.
            self.known.connected(link.address, now)
            self.known.add(link.address, hello.peer_id)
        if link.listen:
            listen = link.listen
            self.known.add(listen, hello.peer_id)
            if link.outbound:
                self.known.connected(listen, now)
            else:
                self.known.succeeded(listen, now)
        link.key = (self._dialer(link), min(link.nonce, hello.nonce), max(link.nonce, hello.nonce))
        effects: list[Effect] = []
        # (4) one link per pair: both sides keep the link with the smaller
        # key (dialler's id, then the two HELLO nonces), which both can compute.
        for other in self._ready_links():
            if other.id != link.id and other.peer_id == hello.peer_id:
                if link.key > other.key:
                    return [CloseLink(link.id, "duplicate link")]
                effects.append(CloseLink(other.id, "duplicate link"))
        sample = pw.Peers(tuple(self.known.sample(self.rng, 16, exclude=hello.peer_id)))
        if not link.outbound and len(self._ready_links()) > self.config.active_max:
            effects.append(self._send(link, pw.encode(sample)))
            effects.append(self._send(link, pw.encode(pw.Bye("busy: enough links, try the peers sent"))))
            effects.append(CloseLink(link.id, "busy: enough links"))
            return effects
        effects.append(self._send(link, pw.encode(sample)))
        effects.append(self._send(link, pw.encode(self._digest_message())))  # (3) a round on connect
        effects.extend(self._peers_changed())
        return effects

    def _on_accepted(self, link: Link, now: float) -> list[Effect]:
        """The first DIGEST on a link: the other side has kept it."""
        link.accepted = True
        if not link.outbound:
            return []
        entry = self._known_for(link)
        if entry is not None:
            self.known.succeeded(entry.address, now)
        if link.address != self._shuffle_to:
            return []
        # (5) The link that replaces another is up: close one that has had
        # its time, unless a loss meanwhile has already made room.
        self._shuffle_to = None
        ready = self._ready_links()
        older = [
            other for other in ready if other.id != link.id and now - other.opened_at >= self.config.shuffle_interval
        ]
        if len(ready) <= self.config.active_target or not older:
            return []
        return self._shuffle_out(self.rng.choice(older))

    def _on_update(self, link: Link, name: str, update: bytes, now: float, pushed: bool = False) -> list[Effect]:
        if name in self.blocked:
            return []
        created = name not in self.documents
        if created:
            parse_update(update)  # invalid data must not leave a half-made document behind
        doc = self.document(name)
        origin = peer_origin(link.id)
        effects: list[Effect] = [DocCreated(name)] if created else []
        waiting = doc.pending_count()
        link.carried = link.carried or pushed
        try:
            changes = doc.receive(update, origin)
        except (BufferFull, Overlaps):
            if created:
                del self.documents[name]
                return []
            # (1) Too much waiting, or an update that starts inside what we
            # have: drop what this link buffered, ask it for an exact diff.
            doc.drop_pending(origin)
            return [*effects, self._send(link, pw.encode(pw.SyncStep1(name, doc.encode_state_vector(), False)))]
        except RemoteProtocolError:
            if created:
                del self.documents[name]  # refused: leave no half-made document behind
            raise
        if doc.pending_count():
            self._stuck.setdefault(name, now)
        else:
            self._stuck.pop(name, None)
        if pushed and self._push_duplicate(name, update, fresh=bool(changes) or doc.pending_count() > waiting):
            if link.eager and self._other_eager(link):
                # (2) Pushed to us, and another push had brought it all:
                # this link is not on the tree.
                link.eager = False
                effects.append(self._send(link, pw.encode(pw.Prune())))
        elif pushed and changes and name in self._missing:
            effects.extend(self._maybe_swap(link, name, doc, now))
        effects.extend(self._spread(name, changes, now))
        return effects

    def _spread(self, name: str, changes: list[Change], now: float) -> list[Effect]:
        effects: list[Effect] = []
        for change in changes:
            effects.append(DocChanged(name, change.update, change.origin))
            effects.extend(self.local_change(name, change.update, change.origin, now))
        return effects

    def _on_ihave(self, link: Link, msg: pw.IHave, now: float) -> list[Effect]:
        """(2) The other side has these changes: if they are not here by
        ``graft_after``, :meth:`tick` asks it for them."""
        ours = link.announce.get(msg.name)
        if ours is not None:
            ours.forget(msg.ends)  # no need to name to it what it has
        if msg.name in self.blocked:
            return []
        doc = self.documents.get(msg.name)
        if doc is not None and doc.covers(msg.ends, msg.deletes):
            return []
        if len(msg.ends) + len(msg.deletes) > _MAX_MISSING_IDS - self._missing_ids:
            return []  # more than this peer keeps track of: anti-entropy will do
        missing = self._missing.get(msg.name)
        if missing is None:
            if len(self._missing) >= _MAX_MISSING:
                return []
            missing = self._missing[msg.name] = _Missing(now, now + self.config.graft_after, [], _Ids())
        if link.id not in missing.links:
            missing.links.append(link.id)
        before = missing.ids.size()
        missing.ids.add(msg.ends, msg.deletes)
        self._missing_ids += missing.ids.size() - before
        return []

    def _push_duplicate(self, name: str, update: bytes, fresh: bool) -> bool:
        """(2) Record what a pushed UPDATE covers; True when it brought
        nothing that an earlier push had not. A change that came first by
        anti-entropy (which runs while people type) and then by push is no
        sign of a redundant link: pruning on it would cut the tree. An
        update that only deletes cannot be told apart, and prunes nothing."""
        info = parse_update(update)
        pushed = self._pushed.setdefault(name, {})
        duplicate = not fresh and bool(info.ranges)
        for client, (_, end) in info.ranges.items():
            if pushed.get(client, 0) < end:
                duplicate = False
                pushed[client] = end
        return duplicate

    def _other_eager(self, link: Link) -> bool:
        return any(other.eager and other.live and other.id != link.id for other in self.links.values())

    def _maybe_swap(self, link: Link, name: str, doc: Document, now: float) -> list[Effect]:
        """(2) A pushed UPDATE brought what an IHAVE had named ``swap_after``
        or more before it: the link that named it is the faster path (the
        tree was built when other peers were faster, or the source was
        busier). Make that link eager and this one lazy: a tree built from
        whichever copy came first would otherwise keep a slow detour."""
        missing = self._missing[name]
        if not doc.covers(missing.ids.ends.items(), missing.ids.deletes_flat()):
            return []
        self._forget_missing(name)
        if now - missing.named_at < self.config.swap_after:
            return []
        faster = self.links.get(missing.links[0])
        if faster is None or not faster.live or faster.id == link.id or faster.eager:
            return []
        faster.eager = True
        link.eager = False
        return [self._send(faster, pw.encode(pw.Graft(()))), self._send(link, pw.encode(pw.Prune()))]

    def _forget_missing(self, name: str) -> None:
        self._missing_ids -= self._missing.pop(name).ids.size()

    def _on_graft(self, link: Link, msg: pw.Graft) -> list[Effect]:
        """(2) Push here again; send what the other side lacks of the
        documents it names (an IHAVE named them and they did not come)."""
        link.eager = True
        effects: list[Effect] = []
        for name, state_vector in msg.documents:
            doc = self.documents.get(name)
            if doc is not None and name not in self.blocked:
                effects.append(self._send(link, pw.encode(pw.SyncStep2(name, doc.diff(state_vector)))))
        return effects

    def _graft(self, now: float) -> list[Effect]:
        """(2) Ask for what IHAVEs named and the eager links did not bring."""
        asks: dict[LinkId, list[tuple[str, bytes]]] = {}
        for name, missing in list(self._missing.items()):
            if now < missing.due:
                continue
            self._forget_missing(name)
            doc = self.documents.get(name)
            ids = missing.ids
            if name in self.blocked or (doc is not None and doc.covers(ids.ends.items(), ids.deletes_flat())):
                continue
            link = next((self.links[i] for i in missing.links if i in self.links and self.links[i].live), None)
            if link is None:
                continue  # those links are gone: anti-entropy will do
            link.eager = True
            sv = doc.encode_state_vector() if doc is not None else encode_state_vector({})
            asks.setdefault(link.id, []).append((name, sv))
        return [self._send(self.links[i], pw.encode(pw.Graft(tuple(docs)))) for i, docs in asks.items()]

    def _announce(self) -> list[Effect]:
        """(2) The batched IHAVEs, one per document and lazy link."""
        self._next_announce = None
        effects: list[Effect] = []
        for link in self._ready_links():
            announce, link.announce = link.announce, {}
            for name, ids in announce.items():
                if ids:
                    effects.append(self._send(link, pw.encode(ids.message(name))))
        return effects

    def _on_step1(self, link: Link, msg: pw.SyncStep1, now: float) -> list[Effect]:
        if msg.name in self.blocked:
            return []
        created = msg.name not in self.documents
        if created:
            decode_state_vector(msg.state_vector)
        doc = self.document(msg.name)
        diff = doc.diff(msg.state_vector)
        effects: list[Effect] = [DocCreated(msg.name)] if created else []
        effects.append(self._send(link, pw.encode(pw.SyncStep2(msg.name, diff))))
        if msg.reply_step1 and not self._sync_under_way(link, msg.name, now):
            # (3) Our own step 1 for this document, unless one is on its way
            # already (both ends of a new link start a round): its answer
            # brings the same diff.
            link.syncing[msg.name] = now
            effects.append(self._send(link, pw.encode(pw.SyncStep1(msg.name, doc.encode_state_vector(), False))))
        return effects

    def _sync_under_way(self, link: Link, name: str, now: float) -> bool:
        sent = link.syncing.get(name)
        return sent is not None and now - sent < self.config.sync_timeout

    def _on_digest(self, link: Link, msg: pw.Digest, now: float) -> list[Effect]:
        link.last_sync_check = now
        if msg.root == self.root_digest():
            link.all_in_sync = True
            link.in_sync = set(self.documents)
            return []
        link.all_in_sync = False
        entries = tuple((name, doc.digest()) for name, doc in sorted(self.documents.items()))
        return [self._send(link, pw.encode(pw.DocDigests(entries)))]

    def _on_doc_digests(self, link: Link, msg: pw.DocDigests, now: float) -> list[Effect]:
        link.last_sync_check = now
        theirs = dict(msg.entries)
        effects: list[Effect] = []
        in_sync: set[str] = set()
        differ = False
        for name in sorted(set(theirs) | set(self.documents)):
            if name in self.blocked:
                continue
            mine = self.documents.get(name)
            if mine is not None and theirs.get(name) == mine.digest():
                in_sync.add(name)
                continue
            differ = True
            if self._sync_under_way(link, name, now):
                continue  # (3) the answer to the step 1 already sent will do
            if mine is None:
                effects.append(DocCreated(name))
            doc = self.document(name)
            link.syncing[name] = now
            effects.append(self._send(link, pw.encode(pw.SyncStep1(name, doc.encode_state_vector(), True))))
        link.in_sync = in_sync
        link.all_in_sync = not differ
        return effects

    # -- timers ------------------------------------------------------------------

    def tick(self, now: float) -> list[Effect]:
        effects: list[Effect] = []
        cfg = self.config
        for link in list(self.links.values()):
            silent = now - link.last_heard
            if link.closing:
                continue  # asked once; the shell reports when it is closed
            if not link.ready and now - link.opened_at > cfg.hello_timeout:
                link.closing = True
                effects.append(CloseLink(link.id, "no HELLO in time"))
            elif silent > cfg.dead_after:
                link.closing = True
                effects.append(CloseLink(link.id, f"silent for {silent:.1f}s"))
            elif link.ready and now >= link.next_ping:
                link.ping_nonce = (link.ping_nonce + 1) & 0xFFFFFFFF
                link.ping_sent_at = now
                link.next_ping = now + cfg.ping_interval
                effects.append(self._send(link, pw.encode(pw.Ping(link.ping_nonce))))
        ready = self._ready_links()
        if ready and self._next_ae is not None and now >= self._next_ae:
            self._next_ae = now + cfg.ae_interval
            digest = pw.encode(self._digest_message())
            for target in self._ae_partners(min(cfg.ae_fanout, len(ready))):
                effects.append(self._send(target, digest))
        if ready and self._next_shuffle is not None and now >= self._next_shuffle:
            self._next_shuffle = now + cfg.shuffle_interval
            effects.extend(self._shuffle(now, ready))
        if ready and now >= self._next_exchange:
            self._next_exchange = now + cfg.exchange_interval
            target = self.rng.choice(ready)
            sample = pw.Peers(tuple(self.known.sample(self.rng, 16, exclude=target.peer_id)))
            if sample.peers:
                effects.append(self._send(target, pw.encode(sample)))
        if self._next_announce is not None and now >= self._next_announce:
            effects.extend(self._announce())
        if self._missing:
            effects.extend(self._graft(now))
        for name, since in list(self._stuck.items()):
            if now - since >= cfg.stuck_after and ready:
                # (1) The causes never came: ask a link for everything we lack.
                self._stuck[name] = now
                doc = self.documents[name]
                target = self.rng.choice(ready)
                effects.append(self._send(target, pw.encode(pw.SyncStep1(name, doc.encode_state_vector(), False))))
        effects.extend(self._dial(now))
        effects.extend(self._peers_changed())
        return effects

    def next_deadline(self, now: float) -> float:
        """When :meth:`tick` next has work; the shell arms one timer for it.
        (Called after every input: one pass over the links, no lists.)"""
        cfg = self.config
        soonest = float("inf")
        any_ready = False
        dead_after = cfg.dead_after
        for link in self.links.values():
            if link.closing:
                continue
            if link.peer_id is not None:
                any_ready = True
                due = link.next_ping
            else:
                due = link.opened_at + cfg.hello_timeout
            silent = link.last_heard + dead_after
            if silent < due:
                due = silent
            if due < soonest:
                soonest = due
        if any_ready:
            for timer in (self._next_ae, self._next_shuffle):
                soonest = min(soonest, now if timer is None else timer)
            soonest = min(soonest, self._next_exchange)
        for since in self._stuck.values():
            soonest = min(soonest, since + cfg.stuck_after)
        if self._next_announce is not None:
            soonest = min(soonest, self._next_announce)
        for missing in self._missing.values():
            soonest = min(soonest, missing.due)
        if self._open_slots() > 0:
            candidates = self._dial_candidates(float("inf"))
            if candidates:
                soonest = min(soonest, min(k.next_dial for k in candidates))
        if soonest == float("inf"):
            return now + 1.0
        # Never ask to be woken in the past: what is due has just been done.
        return max(now + _MIN_TIMER, soonest)

    def _ae_partners(self, count: int) -> list[Link]:
        """(3) The next *count* links of a pass over every link in random
        order: each link gets a round once per pass, so with d links no link
        waits more than 2d - 1 rounds (a random link per round has no such
        bound, and a long tail). A pass ends when it runs out; links opened
        during a pass wait for the next one (each began with a round of its
        own)."""
        chosen: dict[LinkId, Link] = {}
        while len(chosen) < count:
            if not self._ae_order:
                self._ae_order = [link.id for link in self._ready_links() if link.id not in chosen]
                if not self._ae_order:
                    break
                self.rng.shuffle(self._ae_order)
            link = self.links.get(self._ae_order.pop())
            if link is not None and link.live:
                chosen[link.id] = link
        return list(chosen.values())

    def _shuffle(self, now: float, ready: list[Link]) -> list[Effect]:
        """(5) One step of reshaping the links. A peer with more links than
        its target closes one (its other end, if that leaves it short, dials
        a random known peer); a peer at its target dials a random known peer
        and closes another link once the new one is accepted
        (:meth:`_on_accepted`). A peer's first links come from the
        neighbourhood of the peer it joined through; shuffling turns the links
        into a random graph, where an update needs fewer hops and
        anti-entropy comes close to gossip with uniformly random partners."""
        self._shuffle_to = None  # an attempt still under way is given up
        cfg = self.config
        if len(ready) > cfg.active_target:
            # More links than the target (accepted from others): shed one.
            # Its other end, if it falls short, dials a random peer in turn.
            older = [link for link in ready if now - link.opened_at >= cfg.shuffle_interval]
            return self._shuffle_out(self.rng.choice(older)) if older else []
        if len(ready) < cfg.active_target:
            return []  # dialling for the missing links comes first
        candidates = self._dial_candidates(now)
        if not candidates:
            return []
        entry = self.rng.choice(candidates)
        entry.dialing = True
        self._shuffle_to = entry.address
        return [Dial(entry.address)]

    def _shuffle_out(self, link: Link) -> list[Effect]:
        """(5) Close a link to make room. The peer at its other end is alive
        and still reachable through other links: a BYE says so, and neither
        end drops the cursors that came through it (they are renewed along
        the other links, or expire by their timeout)."""
        link.planned = True
        return [self._send(link, pw.encode(pw.Bye(_SHUFFLED))), CloseLink(link.id, _SHUFFLED)]

    def _open_slots(self) -> int:
        free = self.config.active_target - sum(1 for link in self.links.values() if not link.closing)
        if free <= 0:
            return free  # the usual case, without a walk over the known view
        return free - sum(1 for k in self.known.by_address.values() if k.dialing)

    def _dial(self, now: float) -> list[Effect]:
        slots = self._open_slots()
        if slots <= 0 and not self._introducers:
            return []
        candidates = self._dial_candidates(now)
        self.rng.shuffle(candidates)
        chosen = candidates[: max(slots, 0)]
        # (6) An address given to join through is dialled until it has
        # answered once, even when the links are full: peers that start
        # together can fill their links among themselves before their join
        # address is up, and the network then stays split into groups that
        # know nothing of each other. Once it has answered, it knows us and
        # we have its sample of peers, and it is an address like any other.
        self._introducers = {a for a in self._introducers if (k := self.known.by_address.get(a)) and k.introducer}
        chosen += [k for k in candidates[max(slots, 0) :] if k.address in self._introducers]
        effects: list[Effect] = []
        for entry in chosen:
            entry.dialing = True
            effects.append(Dial(entry.address))
        return effects

    def _dial_candidates(self, now: float) -> list[Known]:
        connected_ids = {link.peer_id for link in self.links.values() if link.peer_id is not None}
        addresses = {link.address for link in self.links.values()} | {
            link.listen for link in self.links.values() if link.listen
        }
        return self.known.candidates(now, connected_ids, addresses)

    # -- helpers -----------------------------------------------------------------

    def _send(self, link: Link, data: bytes) -> SendPeer:
        link.bytes_out += len(data)
        return SendPeer(link.id, data)

    def _ready_links(self) -> list[Link]:
        return [link for link in self.links.values() if link.live]

    def _digest_message(self) -> pw.Digest:
        return pw.Digest(self.root_digest(), len(self.documents))

    def _dialer(self, link: Link) -> bytes:
        assert link.peer_id is not None
        return self.peer_id if link.outbound else link.peer_id

    def _known_for(self, link: Link) -> Known | None:
        return self.known.by_address.get(link.address) or (
            self.known.by_address.get(link.listen) if link.listen else None
        )

    def _peers_changed(self) -> list[Effect]:
        if not self.known.changed:
            return []
        self.known.changed = False
        return [PeersChanged(self.known.persistable())]

    def peer_rows(self, now: float) -> list[dict[str, object]]:
        """What the Peers page and ``GET /api/peers`` show."""
        rows: list[dict[str, object]] = []
        seen: set[bytes] = set()
        for link in sorted(self._ready_links(), key=lambda k: k.peer_id or b""):
            assert link.peer_id is not None
            seen.add(link.peer_id)
            silent = now - link.last_heard
            rows.append(
                {
                    "id": link.peer_id.hex(),
                    "address": link.listen or link.address,
                    "state": "suspected" if silent > self.config.suspect_after else "connected",
                    "push": "eager" if link.eager else "lazy",
                    "direction": "outbound" if link.outbound else "inbound",
                    "last_heard": link.last_heard,
                    "rtt_ms": None if link.rtt is None else round(link.rtt * 1000, 2),
                    "bytes_in": link.bytes_in,
                    "bytes_out": link.bytes_out,
                    "in_sync": sorted(self.documents) if link.all_in_sync else sorted(link.in_sync),
                    "last_sync_check": link.last_sync_check,
                    "failures": 0,
                    "error": None,
                }
            )
        for entry in sorted(self.known.by_address.values(), key=lambda k: k.address):
            if entry.peer_id is not None and entry.peer_id in seen:
                continue
            if entry.peer_id is not None:
                seen.add(entry.peer_id)
            rows.append(
                {
                    "id": entry.peer_id.hex() if entry.peer_id else None,
                    "address": entry.address,
                    "state": "connecting" if entry.dialing else "down",
                    "direction": None,
                    "last_heard": entry.last_heard,
                    "rtt_ms": None,
                    "bytes_in": 0,
                    "bytes_out": 0,
                    "in_sync": [],
                    "last_sync_check": None,
                    "failures": entry.failures,
                    "error": entry.last_error,
                }
            )
        return rows


def _listen_address(listen: str, link: Link) -> str:
    """A peer that listens on all interfaces advertises 0.0.0.0 or [::]: use
    the host we saw it connect from instead."""
    host, sep, port = listen.rpartition(":")
    if not sep:
        return listen
    if host in ("0.0.0.0", "[::]", "", "::"):
        seen_host = link.address.rpartition(":")[0] if link.outbound else link.address
        if ":" in seen_host and not seen_host.startswith("["):
            seen_host = f"[{seen_host}]"
        return f"{seen_host}:{port}"
    return listen
