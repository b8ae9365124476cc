"""A simulated network of replication nodes (``crdt.node.Node``) in one
process, and the network layer it shares with the engine simulator
(``simnet.SimNetwork``): virtual time (:class:`Timeline`), the table of
links (:class:`Routes`) and the fault profile (:class:`Faults`).

A :class:`NodeNetwork` holds nodes at addresses ("a", "b", …), opens links
between them as if one had dialled the other, performs the effects they
return and delivers their frames under a fault profile:

* :data:`PERFECT` (the default) loses nothing, duplicates nothing and
  delivers every frame at once and in order, inside the call that sent it:
  a test performs an edit and asserts on every node on the next line.
* :data:`LOSSY` drops and duplicates frames and delays each copy, so frames
  overtake each other; they arrive as virtual time passes (``run_until``).

Rules kept, under every profile:

* HELLO, which opens every link, is never dropped, duplicated or overtaken.
* A frame is delivered only while both ends of its link are open. A close
  reaches the other end after every frame sent before it; what that end
  sends meanwhile is lost (a WebSocket's close).
* The nodes are honest: a frame one refuses from another is a bug, raised as
  ``AssertionError``. A link whose other end is the test itself
  (:meth:`NodeNetwork.attach`, the fuzzers) carries whatever the test feeds
  it, and the node's ``RemoteProtocolError`` reaches the test.
* Time moves only in ``run_until``, which ticks every node each ``step``, or
  when a test sets ``now`` itself (to tick one node by hand and look at what
  it returns).
* Reading never stops: ``PauseLink`` and ``ResumeLink`` are not modelled.

Every frame delivered between nodes is kept in ``sent`` as (from, to,
message), every close in ``closes``.

``SimNetwork`` is not a ``NodeNetwork`` of engines, and should not become
one. Its random stream is a contract: a seed names a scenario (failure
reports say which to replay, ``tests/sim/test_rounds.py``'s bound and
``bench/rounds.py``'s figures were taken on those seeds), and running its
engines through this class would change what every seed draws. Its engines
keep time as the shell does (one timer each, armed from ``next_deadline``),
where the node tests step time and tick nodes by hand. And most of it is
what only a whole peer has: browsers, a store that loses its last writes in
a crash, restarts, partitions, backpressure. What the two networks have in
common is here, and both use it.
"""

from __future__ import annotations

import heapq
import itertools
import random
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

from crdt import peerwire as pw
from crdt.document import Document
from crdt.effects import CloseLink, Dial, Effect, SendPeer
from crdt.errors import RemoteProtocolError
from crdt.links import Link
from crdt.node import Config, Node


@dataclass
class Faults:
    """What the network does to a frame: drop it, deliver it twice, and
    delay each copy by a time drawn in [1.5 × ``min_delay``, ``max_delay``]."""

    drop: float = 0.02
    duplicate: float = 0.02
    min_delay: float = 0.001
    max_delay: float = 0.060

    def delays(self, rng: random.Random, frame: bytes) -> list[float]:
        """The delay of each copy of *frame* that arrives (none: it is lost).
        HELLO takes ``min_delay``: nothing sent after it overtakes it."""
        if frame[:1] == bytes([pw.T.HELLO]):
            return [self.min_delay]
        if rng.random() < self.drop:
            return []
        copies = 2 if rng.random() < self.duplicate else 1
        return [rng.uniform(self.min_delay * 1.5, self.max_delay) for _ in range(copies)]

    @property
    def close_delay(self) -> float:
        """A close arrives after every frame sent before it."""
        return self.max_delay + self.min_delay

    @property
    def dial_delay(self) -> float:
        """A connection is set up in a round trip."""
        return self.min_delay * 2


PERFECT = Faults(drop=0.0, duplicate=0.0, min_delay=0.0, max_delay=0.0)
LOSSY = Faults()


class Timeline:
    """Virtual time, and what is due when (at equal times, in the order it
    was scheduled)."""

    def __init__(self) -> None:
        self.now = 0.0
        self._queue: list[tuple[float, int, Callable[[], None]]] = []
        self._seq = 0

    def at(self, when: float, fn: Callable[[], None]) -> None:
        self._seq += 1
        heapq.heappush(self._queue, (when, self._seq, fn))

    def advance(self, t: float) -> None:
        """Run everything due by *t*, each at its own time, then stand at *t*."""
        while self._queue and self._queue[0][0] <= t:
            when, _, fn = heapq.heappop(self._queue)
            self.now = when
            fn()
        self.now = t


class Route(NamedTuple):
    """One end of a link: whose it is, whose the other end is and that
    end's link id (``None`` for a link whose other end is the test)."""

    owner: Any
    other: Any
    other_link: int | None


class Routes(dict[int, Route]):
    """The open links by link id, both ends of each under its own id."""

    def __init__(self) -> None:
        super().__init__()
        self._ids = itertools.count(1)

    def open(self, owner: Any, other: Any) -> tuple[int, int]:
        """A link between *owner* and *other*: the ids of its two ends."""
        a, b = next(self._ids), next(self._ids)
        self[a] = Route(owner, other, b)
        self[b] = Route(other, owner, a)
        return a, b

    def open_to_outside(self, owner: Any) -> int:
        """A link of *owner* whose other end is no node of the network."""
        link = next(self._ids)
        self[link] = Route(owner, None, None)
        return link

    def between(self, owner: Any, other: Any) -> list[int]:
        """The ids of *owner*'s ends of its links to *other*."""
        return [link for link, r in self.items() if r.owner == owner and r.other == other]


Queue = deque[tuple[str, Effect]]


class NodeNetwork(Timeline):
    """Nodes by address, the links between them, and what they carried."""

    def __init__(self, faults: Faults = PERFECT, seed: int = 0, first_client_id: int = 1) -> None:
        """*seed* drives the faults; client ids of new documents are counted
        from *first_client_id* over the whole network."""
        super().__init__()
        self.faults = faults
        self.rng = random.Random(seed)
        self.nodes: dict[str, Node] = {}
        self.routes = Routes()
        self._clients = itertools.count(first_client_id)
        self.closes: list[tuple[float, str, str | None, str]] = []  # (when, closing address, other, reason)
        self.sent: list[tuple[str, str, pw.Message]] = []  # (from, to, message) of every frame delivered

    def add(
        self,
        address: str,
        config: Config | None = None,
        seed: int = 0,
        *,
        peer_id: bytes | None = None,
        documents: dict[str, Document] | None = None,
    ) -> Node:
        """A node at *address* (its peer id: the address, padded, unless given)."""
        peer_id = peer_id or address.encode().ljust(pw.PEER_ID_BYTES, b"\0")
        node = Node(peer_id, address, random.Random(seed), lambda: next(self._clients), config, documents)
        self.nodes[address] = node
        return node

    # -- links -------------------------------------------------------------------

    def link(self, address: str, other: str) -> int:
        """Open a link from *address* to *other* (as if dialled); its id on *address*'s side."""
        a, b = self.routes.open(address, other)
        # Both sides are open before either HELLO arrives.
        accepting = self.nodes[other].link_opened(b, False, address, self.now)
        dialling = self.nodes[address].link_opened(a, True, other, self.now)
        self._run(deque([*((other, e) for e in accepting), *((address, e) for e in dialling)]))
        return a

    def attach(self, address: str, remote: str = "10.0.0.2", remote_id: bytes | None = None) -> int:
        """A link into *address* from *remote*, whose other end is the test:
        what the node sends on it goes nowhere (``feed`` returns it among
        the effects). *remote_id* is the peer the channel authenticated."""
        link = self.routes.open_to_outside(address)
        self.perform(address, self.nodes[address].link_opened(link, False, remote, self.now, remote_id))
        return link

    def feed(self, link: int, frame: bytes) -> list[Effect]:
        """*frame* from the test's end of *link*: the node's effects,
        performed, and returned. Raises the node's ``RemoteProtocolError``
        (the link stays open: the test closes it with ``hang_up``, as the
        shell does)."""
        address = self.routes[link].owner
        effects = self.nodes[address].receive(link, frame, self.now)
        self.perform(address, effects)
        return effects

    def hang_up(self, link: int) -> None:
        """The test's end of *link* closes it."""
        address = self.routes.pop(link).owner
        self.perform(address, self.nodes[address].link_closed(link, self.now))

    def close(self, address: str, other: str, reason: str = "cut") -> None:
        """*address* closes its links to *other* (as a lost connection)."""
        self.perform(address, [CloseLink(link, reason) for link in self.routes.between(address, other)])

    def link_id(self, address: str, other: str) -> int:
        """The id of *address*'s end of its link to *other*."""
        [link] = self.routes.between(address, other)
        return link

    def link_to(self, address: str, other: str) -> Link:
        """*address*'s side of its link to *other*."""
        return self.nodes[address].links[self.link_id(address, other)]

    def neighbours(self, address: str) -> set[str]:
        """The nodes *address* has a ready link to."""
        return {
            r.other
            for link, r in self.routes.items()
            if r.owner == address and r.other is not None and self.nodes[address].links[link].ready
        }

    # -- effects -----------------------------------------------------------------

    def perform(self, address: str, effects: list[Effect]) -> None:
        """Perform what the node at *address* returned, and all that follows
        from it by now (everything, on a perfect network)."""
        self._run(deque((address, e) for e in effects))

    def _run(self, queue: Queue) -> None:
        while queue:
            at, effect = queue.popleft()
            node = self.nodes[at]
            if isinstance(effect, SendPeer):
                self._send(at, effect, queue)
            elif isinstance(effect, Dial):
                if effect.address not in self.nodes:
                    queue.extend((at, e) for e in node.dial_failed(effect.address, self.now))
                elif self.faults.dial_delay == 0:
                    self.link(at, effect.address)
                else:
                    self.at(self.now + self.faults.dial_delay, lambda at=at, to=effect.address: self.link(at, to))
            elif isinstance(effect, CloseLink):
                route = self.routes.pop(effect.link, None)
                if route is None:
                    continue
                self.closes.append((self.now, at, route.other, effect.reason))
                queue.extend((at, e) for e in node.link_closed(effect.link, self.now))
                if route.other_link is None:
                    continue
                if self.faults.close_delay == 0:
                    self._closed(route.other_link, queue)
                else:
                    self._later(self.faults.close_delay, lambda q, end=route.other_link: self._closed(end, q))

    def _send(self, at: str, effect: SendPeer, queue: Queue) -> None:
        route = self.routes.get(effect.link)
        if route is None or route.other_link not in self.routes:
            return  # the other end is closed, or is the test
        for delay in self.faults.delays(self.rng, effect.data):
            if delay == 0:
                self._deliver(at, route, effect.data, queue)
            else:
                self._later(delay, lambda q, data=effect.data: self._deliver(at, route, data, q))

    def _deliver(self, at: str, route: Route, data: bytes, queue: Queue) -> None:
        if route.other_link not in self.routes:
            return  # closed while the frame was on its way
        message = pw.decode(data)
        self.sent.append((at, route.other, message))
        try:
            out = self.nodes[route.other].receive(route.other_link, data, self.now)
        except RemoteProtocolError as exc:
            raise AssertionError(f"{route.other} refused {message!r} from {at}: {exc}") from exc
        queue.extend((route.other, e) for e in out)

    def _closed(self, link: int, queue: Queue) -> None:
        route = self.routes.pop(link, None)
        if route is not None:
            queue.extend((route.owner, e) for e in self.nodes[route.owner].link_closed(link, self.now))

    def _later(self, delay: float, fn: Callable[[Queue], None]) -> None:
        """At now + *delay*: *fn*, which adds effects to a queue, then that queue's run."""

        def run() -> None:
            queue: Queue = deque()
            fn(queue)
            self._run(queue)

        self.at(self.now + delay, run)

    # -- time --------------------------------------------------------------------

    def run_until(self, until: float, step: float = 0.01) -> None:
        """Move time to *until* in steps: what the network delivers comes at
        its own time, and every node is ticked at the end of each step."""
        while self.now < until:
            self.advance(round(self.now + step, 6))
            for address, node in list(self.nodes.items()):
                self.perform(address, node.tick(self.now))
