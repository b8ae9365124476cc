"""Who this peer knows and when to dial them (HyParView-style views).

The *active view* is the set of open links (about ``Config.active_target``);
the *known view* is a larger, bounded list of addresses learned from
``--join``, from HELLO messages and from peer exchange. Dial attempts back off
exponentially with jitter; a peer that keeps failing is not forgotten (it may
come back) until the list is full, when the longest-failing one goes first.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

from crdt import peerwire as pw
from crdt.effects import Dial, Effect, PeersChanged
from crdt.links import Link, Links

# A BYE with this reason closes a link a shuffle replaced: its peer is alive.
SHUFFLED = "shuffle: replaced by a link to another peer"


@dataclass(slots=True)
class Known:
    address: str
    peer_id: bytes | None = None
    failures: int = 0
    next_dial: float = 0.0
    last_heard: float | None = None
    dialing: bool = False
    # An address given to join through that has not answered yet: dialled
    # even when the links are full (see Node._dial).
    introducer: bool = False
    # Why the last attempt failed, as a person reads it ("refused", "timed
    # out", "wrong network key"...); None once a link to it has worked.
    last_error: str | None = None


@dataclass(frozen=True, slots=True)
class Backoff:
    """Redial delay: ``min(cap, base * 2**failures)``, times a random factor in
    ``[1 - jitter, 1 + jitter]`` so that peers that failed together do not
    retry together."""

    base: float = 0.5
    cap: float = 30.0
    jitter: float = 0.3

    def delay(self, failures: int, rng: random.Random) -> float:
        raw = min(self.cap, self.base * float(2 ** min(failures, 16)))
        return raw * (1 + self.jitter * (2 * rng.random() - 1))


class KnownPeers:
    def __init__(self, own_id: bytes, limit: int, backoff: Backoff) -> None:
        self.own_id = own_id
        self.limit = limit
        self.backoff = backoff
        self.by_address: dict[str, Known] = {}
        self.changed = False  # set when the persisted list should be rewritten
        # Whether a peer may be known at all (crdt.access: not a removed member).
        self.allowed: Callable[[bytes], bool] = lambda peer_id: True

    def add(self, address: str, peer_id: bytes | None = None) -> Known | None:
        """Learn an address (and maybe its peer id). Returns the entry, or
        None when it is this peer itself or the list is full of better ones."""
        if not address or peer_id == self.own_id or (peer_id is not None and not self.allowed(peer_id)):
            return None
        entry = self.by_address.get(address)
        if entry is None:
            if peer_id is not None:
                # Same peer at a new address: keep the newest address.
                for old in [k for k in self.by_address.values() if k.peer_id == peer_id]:
                    if not old.dialing:
                        del self.by_address[old.address]
            if len(self.by_address) >= self.limit and not self._evict():
                return None
            entry = self.by_address[address] = Known(address, peer_id)
            self.changed = True
        elif peer_id is not None and entry.peer_id != peer_id:
            entry.peer_id = peer_id
            self.changed = True
        return entry

    def forget_peer(self, peer_id: bytes) -> None:
        for entry in [k for k in self.by_address.values() if k.peer_id == peer_id]:
            self.forget(entry.address)

    def forget(self, address: str) -> None:
        if self.by_address.pop(address, None) is not None:
            self.changed = True

    def _evict(self) -> bool:
        candidates = [k for k in self.by_address.values() if not k.dialing and k.failures > 0]
        if not candidates:
            return False
        worst = max(candidates, key=lambda k: (k.failures, -(k.last_heard or 0.0)))
        del self.by_address[worst.address]
        return True

    def failed(self, address: str, now: float, rng: random.Random, reason: str | None = None) -> None:
        entry = self.by_address.get(address)
        if entry is not None:
            entry.dialing = False
            entry.failures += 1
            entry.next_dial = now + self.backoff.delay(entry.failures, rng)
            if reason is not None:
                entry.last_error = reason

    def connected(self, address: str, now: float) -> None:
        """A link to *address* said HELLO (the peer may still refuse it)."""
        entry = self.by_address.get(address)
        if entry is not None:
            entry.dialing = False
            entry.introducer = False  # it knows us now, and we have its sample
            entry.last_heard = now
            entry.last_error = None

    def succeeded(self, address: str, now: float) -> None:
        """The peer at *address* kept a link: its failures are forgotten."""
        entry = self.by_address.get(address)
        if entry is not None:
            entry.dialing = False
            entry.introducer = False
            entry.failures = 0
            entry.last_heard = now
            entry.last_error = None

    def candidates(self, now: float, exclude_ids: set[bytes], exclude_addresses: set[str]) -> list[Known]:
        return [
            k
            for k in self.by_address.values()
            if not k.dialing
            and k.next_dial <= now
            and k.address not in exclude_addresses
            and (k.peer_id is None or k.peer_id not in exclude_ids)
        ]

    def sample(self, rng: random.Random, n: int, exclude: bytes | None) -> list[tuple[bytes, str]]:
        pool = sorted(
            (k.peer_id, k.address)
            for k in self.by_address.values()
            if k.peer_id is not None and k.peer_id != exclude and k.failures < 3
        )
        rng.shuffle(pool)
        return pool[:n]

    def persistable(self) -> list[tuple[str, str]]:
        """(peer id hex or "", address), for the data dir."""
        return sorted((k.peer_id.hex() if k.peer_id else "", k.address) for k in self.by_address.values())


# -- the membership component ------------------------------------------------------


class Membership:
    """Which links this peer keeps, and with whom (sans-IO).

    Owns: the known view, the dial attempts, the shuffle under way, the
    addresses given to join through, peer exchange; on each link, whether a
    shuffle closed it (``planned``).

    Rules kept here (numbered as in ``docs/protocol.md`` §6):

    4. A link that is closed is replaced from the known view (at most one
       link per pair of peers survives: ``crdt.links``).
    5. Every ``shuffle_interval`` a peer at its target replaces one link by a
       link to a random known peer (the new one is dialled first, another is
       closed once the new one is accepted), and a peer above it closes one,
       so that the links form a random graph rather than the neighbourhood
       of the peer each one joined through.
    6. An address given to join through is dialled, even when the links are
       full, until it has answered once: otherwise peers that start together
       can form groups that know nothing of each other.
    """

    def __init__(
        self, links: Links, rng: random.Random, *, active_target: int, active_max: int, known_limit: int,
        exchange_interval: float, shuffle_interval: float, backoff: Backoff,
    ) -> None:  # fmt: skip
        self.links = links
        self.rng = rng
        self.active_target = active_target
        self.active_max = active_max
        self.exchange_interval = exchange_interval
        self.shuffle_interval = shuffle_interval
        self.backoff = backoff
        self.known = KnownPeers(links.peer_id, known_limit, backoff)
        self._next_shuffle: float | None = None
        self._shuffle_to: str | None = None  # the address dialled to replace a link
        self._introducers: set[str] = set()  # (6) join addresses that have not answered yet
        self._next_exchange = 0.0

    # -- what people and the store give -------------------------------------------

    def join(self, address: str, now: float) -> list[Effect]:
        entry = self.known.add(address)
        if entry is not None:
            entry.next_dial = now
            entry.introducer = True
            self._introducers.add(address)
        return self.dial(now) + self.peers_changed()

    def restore_peers(self, peers: list[tuple[str, str]]) -> None:
        """Peers remembered in the data dir: (peer id hex or "", address)."""
        for peer_hex, address in peers:
            try:
                peer_id = bytes.fromhex(peer_hex) if peer_hex else None
            except ValueError:
                peer_id = None
            self.known.add(address, peer_id)
        self.known.changed = False

    def dial_failed(self, address: str, now: float, reason: str | None) -> list[Effect]:
        self.known.failed(address, now, self.rng, reason)
        if address == self._shuffle_to:
            self._shuffle_to = None
        return []

    # -- links ----------------------------------------------------------------------

    def heard(self, link: Link, now: float) -> None:
        entry = self._known_for(link)
        if entry is not None:
            entry.last_heard = now

    def on_self(self, link: Link) -> None:
        self.known.forget(link.address)

    def on_hello(self, link: Link, kept: bool, now: float) -> list[Effect]:
        assert link.peer_id is not None
        if self._next_shuffle is None:
            # (5) The first shuffle once the first links have had their time.
            self._next_shuffle = now + (1 + self.rng.random()) * self.shuffle_interval
        if link.outbound:
            # Its failures are forgiven only when the peer accepts the link
            # (its first DIGEST): a busy peer that says BYE to every dial
            # must see the wait grow.
            self.known.connected(link.address, now)
            self.known.add(link.address, link.peer_id)
        if link.listen:
            self.known.add(link.listen, link.peer_id)
            if link.outbound:
                self.known.connected(link.listen, now)
            else:
                self.known.succeeded(link.listen, now)
        if not kept:
            return []
        sample = pw.encode(pw.Peers(tuple(self.known.sample(self.rng, 16, exclude=link.peer_id))))
        if not link.outbound and len(self.links.ready()) > self.active_max:
            bye = pw.encode(pw.Bye("busy: enough links, try the peers sent"))
            return [self.links.send(link, sample, now), self.links.send(link, bye, now),
                    self.links.close(link, "busy: enough links")]  # fmt: skip
        return [self.links.send(link, sample, now), *self.peers_changed()]

    def on_accepted(self, link: Link, now: float) -> list[Effect]:
        """The first DIGEST on a link: the other side has kept it."""
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
        ready = self.links.ready()
        older = [other for other in ready if other.id != link.id and now - other.opened_at >= self.shuffle_interval]
        if len(ready) <= self.active_target or not older:
            return []
        return self._shuffle_out(self.rng.choice(older), now)

    def on_gone(self, link: Link, reason: str | None, now: float) -> list[Effect]:
        if link.outbound and link.address == self._shuffle_to:
            self._shuffle_to = None
        if link.outbound and not link.ready:
            self.known.failed(link.address, now, self.rng, reason)
        elif link.outbound:
            entry = self.known.by_address.get(link.address)
            if entry is not None:
                entry.dialing = False
                # Keep a longer wait set by a BYE; else come back soon.
                entry.next_dial = max(entry.next_dial, now + self.backoff.delay(entry.failures, self.rng))
        return self.dial(now)

    def on_peers(self, link: Link, msg: pw.Peers, now: float) -> list[Effect]:
        for peer_id, address in msg.peers:
            self.known.add(address, peer_id)
        return self.peers_changed()

    def on_bye(self, link: Link, msg: pw.Bye, now: float) -> list[Effect]:
        link.planned = msg.reason == SHUFFLED
        if link.outbound:
            # Not a failure of the network, but do not come straight back.
            self.known.failed(link.address, now, self.rng)
        return [self.links.close(link, f"peer said goodbye: {msg.reason}")]

    # -- timers ---------------------------------------------------------------------

    def tick(self, now: float) -> list[Effect]:
        effects: list[Effect] = []
        ready = self.links.ready()
        if ready and self._next_shuffle is not None and now >= self._next_shuffle:
            self._next_shuffle = now + self.shuffle_interval
            effects += self._shuffle(now, ready)
        if ready and now >= self._next_exchange:
            self._next_exchange = now + self.exchange_interval
            target = self.rng.choice(ready)
            sample = pw.Peers(tuple(self.known.sample(self.rng, 16, exclude=target.peer_id)))
            if sample.peers:
                effects.append(self.links.send(target, pw.encode(sample), now))
        return effects + self.dial(now) + self.peers_changed()

    def next_deadline(self, now: float) -> float:
        soonest = float("inf")
        if self.links.any_ready():
            soonest = min(now if self._next_shuffle is None else self._next_shuffle, self._next_exchange)
        if self._open_slots() > 0:
            candidates = self._dial_candidates(float("inf"))
            if candidates:
                soonest = min(soonest, min(k.next_dial for k in candidates))
        return soonest

    def _shuffle(self, now: float, ready: list[Link]) -> list[Effect]:
        """(5) One step of reshaping the links. A peer with more links than
        its target closes one (its other end, if that leaves it short, dials
        a random known peer); a peer at its target dials a random known peer
        and closes another link once the new one is accepted
        (:meth:`on_accepted`)."""
        self._shuffle_to = None  # an attempt still under way is given up
        if len(ready) > self.active_target:
            older = [link for link in ready if now - link.opened_at >= self.shuffle_interval]
            return self._shuffle_out(self.rng.choice(older), now) if older else []
        if len(ready) < self.active_target:
            return []  # dialling for the missing links comes first
        candidates = self._dial_candidates(now)
        if not candidates:
            return []
        entry = self.rng.choice(candidates)
        entry.dialing = True
        self._shuffle_to = entry.address
        return [Dial(entry.address)]

    def _shuffle_out(self, link: Link, now: float) -> list[Effect]:
        """(5) Close a link to make room. The peer at its other end is alive
        and still reachable through other links: a BYE says so, and neither
        end drops the cursors that came through it."""
        link.planned = True
        return [self.links.send(link, pw.encode(pw.Bye(SHUFFLED)), now), self.links.close(link, SHUFFLED)]

    def _open_slots(self) -> int:
        free = self.active_target - sum(1 for link in self.links if not link.closing)
        if free <= 0:
            return free  # the usual case, without a walk over the known view
        return free - sum(1 for k in self.known.by_address.values() if k.dialing)

    def dial(self, now: float) -> list[Effect]:
        slots = self._open_slots()
        if slots <= 0 and not self._introducers:
            return []
        candidates = self._dial_candidates(now)
        self.rng.shuffle(candidates)
        chosen = candidates[: max(slots, 0)]
        # (6) An address given to join through is dialled until it has
        # answered once, even when the links are full.
        self._introducers = {a for a in self._introducers if (k := self.known.by_address.get(a)) and k.introducer}
        chosen += [k for k in candidates[max(slots, 0) :] if k.address in self._introducers]
        effects: list[Effect] = []
        for entry in chosen:
            entry.dialing = True
            effects.append(Dial(entry.address))
        return effects

    def _dial_candidates(self, now: float) -> list[Known]:
        connected_ids = {link.peer_id for link in self.links if link.peer_id is not None}
        addresses = {link.address for link in self.links} | {link.listen for link in self.links if link.listen}
        return self.known.candidates(now, connected_ids, addresses)

    def _known_for(self, link: Link) -> Known | None:
        return self.known.by_address.get(link.address) or (
            self.known.by_address.get(link.listen) if link.listen else None
        )

    def peers_changed(self) -> list[Effect]:
        if not self.known.changed:
            return []
        self.known.changed = False
        return [PeersChanged(self.known.persistable())]
