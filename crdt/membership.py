"""Who this peer knows and when to dial them (HyParView-style views).

The *active view* is the set of open links (about ``Config.active_target``);
the *known view* is a larger, bounded list of addresses learned from
``--join``, from HELLO messages and from peer exchange. Dial attempts back off
exponentially with jitter; a peer that keeps failing is not forgotten (it may
come back) until the list is full, when the longest-failing one goes first.
"""

from __future__ import annotations

import random
from dataclasses import dataclass


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

    def add(self, address: str, peer_id: bytes | None = None) -> Known | None:
        """Learn an address (and maybe its peer id). Returns the entry, or
        None when it is this peer itself or the list is full of better ones."""
        if not address or peer_id == self.own_id:
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
