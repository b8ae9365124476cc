"""The link table and the handshake on it, sans-IO.

Owns: which links are open, and the HELLO exchange that makes a link
*ready* (the peer's id, where it listens, which of two links to one peer
survives). Every component reads the table; each field of a :class:`Link`
is written by one component only, as grouped below.

Rules kept here:

* The first message on a link must be HELLO; a second one is refused. When
  the secure channel authenticated the peer, HELLO must name that peer.
* One link per pair of peers: both sides keep the link with the smaller key
  (the dialler's id, then the two HELLO nonces), which both can compute.
* Every message counts against the link's budget
  (``crdt.limits.LINK_MESSAGES_PER_SECOND``).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from crdt import peerwire as pw
from crdt.effects import CloseLink, Effect, LinkId, SendPeer
from crdt.errors import RemoteProtocolError
from crdt.limits import LINK_MESSAGE_BURST, LINK_MESSAGES_PER_SECOND, TokenBucket


@dataclass(slots=True)
class Ids:
    """Changes to one document, as an IHAVE names them (owned by the push
    tree; here because a link holds the next ones to announce)."""

    ends: dict[int, int] = field(default_factory=dict)
    deletes: dict[int, list[tuple[int, int]]] = field(default_factory=dict)  # client -> [(start, stop)]
    delete_count: int = 0


@dataclass(slots=True)
class Link:
    # -- the table and the handshake (this module)
    id: LinkId
    outbound: bool
    address: str  # dialled address, or the remote host seen by the shell
    opened_at: float
    last_heard: float
    peer_id: bytes | None = None
    listen: str = ""  # where the peer can be dialled
    remote_id: bytes | None = None  # authenticated by the secure channel, when there is one
    nonce: int = 0  # our HELLO nonce on this link
    key: tuple[bytes, int, int] = (b"", 0, 0)  # which of two links to one peer survives
    budget: TokenBucket = field(default_factory=lambda: TokenBucket(LINK_MESSAGES_PER_SECOND, LINK_MESSAGE_BURST))
    bytes_in: int = 0
    bytes_out: int = 0
    last_sent: float = 0.0
    closing: bool = False  # asked closed (by any component): carries nothing while the close completes
    # -- liveness
    next_ping: float = 0.0
    last_ping: float = 0.0
    ping_nonce: int = 0
    ping_sent_at: float | None = None
    rtt: float | None = None
    # -- anti-entropy
    in_sync: set[str] = field(default_factory=set)
    all_in_sync: bool = False
    last_sync_check: float | None = None
    accepted: bool = False  # a DIGEST came: the other side keeps the link (a busy peer sends BYE instead)
    # Documents whose sync is under way on this link: our SYNC_STEP1 went out (when).
    syncing: dict[str, float] = field(default_factory=dict)
    # Documents the other side said it cannot serve (UNAVAILABLE), and why.
    unavailable: dict[str, str] = field(default_factory=dict)
    # -- membership
    planned: bool = False  # closed by a shuffle: the peer is alive and reachable through other links
    # -- push tree
    eager: bool = True  # changes are pushed here; else named in IHAVEs
    carried: bool = False  # an UPDATE went either way here: the link has been on the tree
    announce: dict[str, Ids] = field(default_factory=dict)  # the next IHAVEs, by document

    @property
    def ready(self) -> bool:
        return self.peer_id is not None

    @property
    def live(self) -> bool:
        """Ready and not being closed: it may carry messages."""
        return self.peer_id is not None and not self.closing


class Links:
    def __init__(self, peer_id: bytes, listen: str, rng: random.Random) -> None:
        self.peer_id = peer_id
        self.listen = listen
        self.rng = rng
        self.by_id: dict[LinkId, Link] = {}
        # What HELLO says about the space (crdt.access), per link.
        self.hello_fields: Callable[[Link], dict[str, Any]] = lambda link: {}

    def __iter__(self) -> Iterator[Link]:
        return iter(self.by_id.values())

    def get(self, link_id: LinkId) -> Link | None:
        return self.by_id.get(link_id)

    def ready(self) -> list[Link]:
        """The links that may carry messages."""
        return [link for link in self.by_id.values() if link.live]

    def any_ready(self) -> bool:
        return any(link.live for link in self.by_id.values())

    def send(self, link: Link, data: bytes, now: float | None = None) -> SendPeer:
        link.bytes_out += len(data)
        if now is not None:
            link.last_sent = now
        return SendPeer(link.id, data)

    def close(self, link: Link, reason: str) -> CloseLink:
        """Ask the shell to close *link*, once."""
        link.closing = True
        return CloseLink(link.id, reason)

    def close_id(self, link_id: LinkId, reason: str) -> CloseLink:
        link = self.by_id.get(link_id)
        return self.close(link, reason) if link is not None else CloseLink(link_id, reason)

    # -- life cycle -------------------------------------------------------------

    def open(self, link_id: LinkId, outbound: bool, address: str, now: float, remote_id: bytes | None) -> SendPeer:
        link = Link(link_id, outbound, address, now, now)
        link.remote_id = remote_id
        link.nonce = self.rng.getrandbits(52)  # fits the 8-byte varints the codec reads
        self.by_id[link_id] = link
        hello = pw.Hello(pw.VERSION, self.peer_id, self.listen, link.nonce, **self.hello_fields(link))
        return self.send(link, pw.encode(hello), now)

    def remove(self, link_id: LinkId) -> Link | None:
        return self.by_id.pop(link_id, None)

    def heard(self, link_id: LinkId, size: int, now: float) -> Link:
        """A message of *size* bytes came on the link. Raises
        RemoteProtocolError if the link is not open or over its budget."""
        link = self.by_id.get(link_id)
        if link is None:
            raise RemoteProtocolError("link is not open")
        link.bytes_in += size
        link.last_heard = now
        if not link.budget.take(now):
            raise RemoteProtocolError(f"more than {LINK_MESSAGES_PER_SECOND:.0f} messages per second")
        return link

    def hello(self, link: Link, hello: pw.Hello) -> tuple[str, list[Effect]]:
        """Check a HELLO and make the link ready. Returns ``("ready",
        effects)`` when the link is kept (the effects close an older
        duplicate), ``("duplicate", ...)`` or ``("self", ...)`` with the
        effects that close it. Raises RemoteProtocolError when it names
        someone the channel did not authenticate."""
        if link.remote_id is not None and hello.peer_id != link.remote_id:
            raise RemoteProtocolError("HELLO names another peer than the one authenticated")
        if hello.peer_id == self.peer_id:
            return "self", [CloseLink(link.id, "connected to itself")]
        link.peer_id = hello.peer_id
        # Where the peer can be dialled (a peer on every interface says
        # 0.0.0.0: the address it came from stands in for that).
        link.listen = listen_address(hello.listen, link) if hello.listen else ""
        dialler = self.peer_id if link.outbound else hello.peer_id
        link.key = (dialler, min(link.nonce, hello.nonce), max(link.nonce, hello.nonce))
        effects: list[Effect] = []
        for other in self.ready():
            if other.id != link.id and other.peer_id == hello.peer_id:
                if link.key > other.key:
                    return "duplicate", [CloseLink(link.id, "duplicate link")]
                effects.append(CloseLink(other.id, "duplicate link"))
        return "ready", effects


def listen_address(listen: str, link: Link) -> str:
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
