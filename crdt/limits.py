"""Limits on what one remote party may cost this peer, sans-IO (time comes in).

Each limit is a named constant with its reason; breaking one closes that link
with a reason, and a party that keeps sending invalid data is refused for a
while (:class:`BanList`). Sizes of single messages are limited where they are
decoded (``peerwire``, ``document``, ``server.browser_ws``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

# Messages a peer link may send per second, sustained, and in a burst. A link
# opening on a peer with thousands of documents sends one sync request and one
# reply per differing document at once, hence the burst; typing sends a few
# dozen per second.
LINK_MESSAGES_PER_SECOND = 5_000.0
LINK_MESSAGE_BURST = 50_000.0
# Links (open or in handshake) from one remote address. Several peers may share
# an address (NAT, one machine running a few), but not hundreds.
CONNECTIONS_PER_ADDRESS = 16
# Refusals (bad handshake, protocol error) before an address is banned, and
# the ban's length: BAN_BASE * 2**(bans so far), at most BAN_MAX seconds.
STRIKES_BEFORE_BAN = 3
BAN_BASE = 10.0
BAN_MAX = 600.0


@dataclass(slots=True)
class TokenBucket:
    rate: float
    burst: float
    tokens: float = -1.0
    last: float = 0.0

    def take(self, now: float, n: float = 1.0) -> bool:
        if self.tokens < 0:
            self.tokens, self.last = self.burst, now
        self.tokens = min(self.burst, self.tokens + (now - self.last) * self.rate)
        self.last = now
        if self.tokens < n:
            return False
        self.tokens -= n
        return True


@dataclass(slots=True)
class _Record:
    strikes: int = 0
    bans: int = 0
    banned_until: float = 0.0


@dataclass(slots=True)
class BanList:
    """Remote addresses that keep failing, refused with growing bans."""

    records: dict[str, _Record] = field(default_factory=dict)
    refused: int = 0  # connections turned away while banned

    def is_banned(self, address: str, now: float) -> bool:
        record = self.records.get(address)
        return record is not None and record.banned_until > now

    def strike(self, address: str, now: float) -> float | None:
        """Count one refusal; return the ban's end if this starts a ban."""
        record = self.records.setdefault(address, _Record())
        record.strikes += 1
        if record.strikes < STRIKES_BEFORE_BAN:
            return None
        record.strikes = 0
        record.banned_until = now + min(BAN_MAX, BAN_BASE * 2**record.bans)
        record.bans += 1
        return record.banned_until

    def forgive(self, address: str) -> None:
        """A good link from this address: its strikes (not its past bans) go."""
        record = self.records.get(address)
        if record is not None:
            record.strikes = 0
