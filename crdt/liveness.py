"""Liveness of links: pings, round-trip times, and closing what went quiet.

Owns: each link's ping state (``next_ping``, ``ping_nonce``,
``ping_sent_at``, ``rtt``).

Rules kept here:

* A link that has not said HELLO within ``hello_timeout`` is closed.
* A link silent for ``dead_after`` seconds is closed (once: the shell
  reports when it is gone, and membership dials a replacement).
* A ready link that *sent* nothing for ``ping_interval`` gets a PING, so
  that the other side always hears from us; a link that carries traffic
  needs none (one in ``RTT_EVERY`` intervals still measures the round trip).
  A PONG that answers the last PING gives the round-trip time.
* Silence over ``suspect_after`` shows the link as suspected.
"""

from __future__ import annotations

from crdt import peerwire as pw
from crdt.effects import Effect
from crdt.links import Link, Links

# A link that is never idle still gets a PING this many intervals apart, for its round-trip time.
RTT_EVERY = 10


class Liveness:
    def __init__(self, links: Links, ping_interval: float, suspect_after: float, dead_after: float,
                 hello_timeout: float) -> None:  # fmt: skip
        self.links = links
        self.ping_interval = ping_interval
        self.suspect_after = suspect_after
        self.dead_after = dead_after
        self.hello_timeout = hello_timeout

    def opened(self, link: Link, now: float) -> None:
        link.next_ping = now + self.ping_interval
        link.last_ping = now

    def on_ping(self, link: Link, msg: pw.Ping, now: float) -> list[Effect]:
        return [self.links.send(link, pw.encode(pw.Pong(msg.nonce)), now)]

    def on_pong(self, link: Link, msg: pw.Pong, now: float) -> list[Effect]:
        if msg.nonce == link.ping_nonce and link.ping_sent_at is not None:
            link.rtt = now - link.ping_sent_at
            link.ping_sent_at = None
        return []

    def suspected(self, link: Link, now: float) -> bool:
        return now - link.last_heard > self.suspect_after

    def tick(self, now: float) -> list[Effect]:
        effects: list[Effect] = []
        for link in list(self.links):
            if link.closing:
                continue  # asked once; the shell reports when it is closed
            silent = now - link.last_heard
            if not link.ready and now - link.opened_at > self.hello_timeout:
                effects.append(self.links.close(link, "no HELLO in time"))
            elif silent > self.dead_after:
                effects.append(self.links.close(link, f"silent for {silent:.1f}s"))
            elif link.ready and now >= link.next_ping:
                idle = now - link.last_sent >= self.ping_interval
                if idle or now - link.last_ping >= RTT_EVERY * self.ping_interval:
                    link.ping_nonce = (link.ping_nonce + 1) & 0xFFFFFFFF
                    link.ping_sent_at = link.last_ping = now
                    link.next_ping = now + self.ping_interval
                    effects.append(self.links.send(link, pw.encode(pw.Ping(link.ping_nonce)), now))
                else:
                    link.next_ping = link.last_sent + self.ping_interval  # traffic went out: it says we live
        return effects

    def next_deadline(self) -> float:
        soonest = float("inf")
        for link in self.links:
            if link.closing:
                continue
            due = link.next_ping if link.peer_id is not None else link.opened_at + self.hello_timeout
            silent = link.last_heard + self.dead_after
            soonest = min(soonest, due, silent)
        return soonest
