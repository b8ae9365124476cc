"""Anti-entropy: repairing whatever the push path lost, sans-IO.

Owns: when the next round is, the pass over the links, and on each link
what it was last found in sync with and which documents are being synced
on it (``in_sync``, ``all_in_sync``, ``last_sync_check``, ``syncing``,
``accepted``).

Rules kept here (numbered as in ``docs/protocol.md`` §7.3):

3. Every ``ae_interval``, at a phase drawn at random, the next link of a
   pass over all links in random order gets our root digest (a hash over
   every document's name, state vector and delete set). Equal roots end the
   round (a few dozen bytes). Different roots bring back the per-document
   digests, and each differing document is synced both ways with state
   vectors (push-pull: both sides end with the union). A new link starts
   with a round. A document whose sync is under way on a link is not asked
   for again there until the answer comes (or ``sync_timeout`` passes):
   both ends open a new link with a round, and a returning peer must get
   what it missed once, not once per round.

4. A quiet peer slows its rounds down: each round whose root is the one of
   the round before, with no DIGEST found different since, doubles the wait
   for the next, up to ``ae_idle_factor`` times ``ae_interval``; a change, a
   different DIGEST or a new link brings it back to ``ae_interval``. Pushes
   carry fresh changes at once, so an idle space spends almost nothing on
   repair (a peer in ten idle spaces: ``docs/benchmarks.md``).
5. A DIGEST whose root equals ours is answered with ours (flagged as an
   answer, which is never answered): both ends of the link then know it is
   in sync, which the Peers page shows.
6. A document is made here only by a valid update for it (a SYNC_STEP2 or
   an UPDATE): a DOC_DIGESTS that lists documents we lack, or a SYNC_STEP1
   for one, makes none, so no message makes more than one document.
7. A document the other side cannot serve (UNAVAILABLE: its copy cannot be
   read, or it was deleted forever) is not asked of that link again while
   the link lasts; the rest of the round goes on.

Which link a differing document is asked on is ``crdt.fetches``'s: each
document once, spread over the links that have it (§7.4). A document the
other side lacks is not fetched but offered at once (our step 1 makes it
ask for it).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

from crdt import peerwire as pw
from crdt.effects import DocumentChanged, Effect, Event, LinkAccepted, LinkId, peer_origin
from crdt.fetches import Fetches
from crdt.links import Link, Links
from crdt.replicas import Replicas
from crdt.yupdate import decode_state_vector

_EMPTY_UPDATE = b"\x00\x00"  # no structs, no deletions


@dataclass(slots=True)
class Stats:
    """Counts since start, read by the shell's metrics at scrape time."""

    rounds: int = 0  # DIGESTs sent: a round on a link (on connect, on a new document, on the timer)
    in_sync: int = 0  # DIGESTs received whose root equals ours
    differed: int = 0  # DIGESTs received whose root differs (documents listed, or left to the next round)
    timed_out: int = 0  # asks for a document not answered within sync_timeout (asked elsewhere)


class AntiEntropy:
    def __init__(
        self, links: Links, replicas: Replicas, rng: random.Random, emit: Callable[[Event, float], list[Effect]],
        interval: float, fanout: int, sync_timeout: float, fetch_window: int, idle_factor: int = 1,
    ) -> None:  # fmt: skip
        self.links = links
        self.replicas = replicas
        self.rng = rng
        self.emit = emit
        self.interval = interval
        self.idle_factor = max(1, idle_factor)
        self.fanout = fanout
        self.sync_timeout = sync_timeout
        self._next: float | None = None  # set, at a random phase, by the first link
        self._order: list[LinkId] = []  # links still due a round in this pass
        self.fetches = Fetches(fetch_window, sync_timeout)
        self.stats = Stats()
        self._quiet = 0  # (4) rounds in a row that found nothing to do
        self._last_root: bytes | None = None
        self._stirred = False  # a DIGEST differed, or a link came, since the last round

    def stir(self, now: float) -> None:
        """(4) Something may need repair: rounds come at ae_interval again."""
        self._stirred = True
        if self._quiet:
            self._quiet = 0
            if self._next is not None:
                self._next = min(self._next, now + self.interval)

    def digest(self) -> pw.Digest:
        return pw.Digest(self.replicas.root_digest(), len(self.replicas.documents))

    def on_hello(self, link: Link, kept: bool, now: float) -> list[Effect]:
        if self._next is None:
            # (3) Rounds start at a random phase: peers that start together
            # (a restarted network, the simulator) must not all exchange in
            # the same instant, which would make an update wait a whole round
            # at every hop.
            self._next = now + self.rng.random() * self.interval
        if not kept or not link.live:
            return []
        self.stir(now)
        self.stats.rounds += 1
        return [self.links.send(link, pw.encode(self.digest()), now)]  # (3) a round on connect

    def created(self, now: float) -> list[Effect]:
        """A document made here spreads with a round on every link."""
        data = pw.encode(self.digest())
        ready = self.links.ready()
        self.stats.rounds += len(ready)
        return [self.links.send(link, data, now) for link in ready]

    # -- messages -----------------------------------------------------------------

    def on_digest(self, link: Link, msg: pw.Digest, now: float) -> list[Effect]:
        effects: list[Effect] = []
        if not link.accepted:
            link.accepted = True  # the other side has kept the link
            effects += self.emit(LinkAccepted(link.id), now)
        link.last_sync_check = now
        root = self.replicas.root_digest()
        if msg.root == root:
            self.stats.in_sync += 1
            link.all_in_sync = True
            link.in_sync = set(self.replicas.held())
            if not msg.answer:
                # (5) Equal roots are answered, so that both ends know they are in sync.
                effects.append(self.links.send(link, pw.encode(pw.Digest(root, msg.count, True)), now))
            return effects
        self.stats.differed += 1
        link.all_in_sync = False
        self.stir(now)
        if msg.answer:
            return effects  # something changed since: the next round finds what
        digest_of = self.replicas.digest_of
        entries = tuple((name, digest_of(name) or b"") for name in self.replicas.held())
        return [*effects, self.links.send(link, pw.encode(pw.DocDigests(entries)), now)]

    def on_doc_digests(self, link: Link, msg: pw.DocDigests, now: float) -> list[Effect]:
        link.last_sync_check = now
        theirs = dict(msg.entries)
        effects: list[Effect] = []
        in_sync: set[str] = set()
        differ = False
        held = self.replicas.held()
        for name in sorted(set(theirs).union(held)):
            if self.replicas.refuses(name) or name in link.unavailable:
                continue
            mine = self.replicas.digest_of(name)
            digest = theirs.get(name)
            if mine is not None and digest == mine:
                in_sync.add(name)
                continue
            differ = True
            if self._under_way(link, name, now):
                continue  # (3) the answer to the step 1 already sent will do
            if digest is None:
                # They lack it: our step 1 makes them ask for all of it.
                link.syncing[name] = now
                step1 = pw.SyncStep1(name, self.replicas.state_vector(name), True)
                effects.append(self.links.send(link, pw.encode(step1), now))
            else:
                self.fetches.offer(link.id, name, digest, push=True)
        link.in_sync = in_sync
        link.all_in_sync = not differ
        return effects + self._ask(link, now)

    def on_step1(self, link: Link, msg: pw.SyncStep1, now: float) -> list[Effect]:
        refused = self.replicas.refuses(msg.name)
        if refused:
            return [self.links.send(link, pw.encode(pw.Unavailable(msg.name, refused)), now)]
        doc = self.replicas.documents.get(msg.name)
        if doc is None:
            # (6) A document we lack is not made by being asked for: the
            # answer is empty, and our own step 1 asks for it.
            decode_state_vector(msg.state_vector)
            diff = _EMPTY_UPDATE
        else:
            diff = doc.diff(msg.state_vector)
        effects: list[Effect] = [self.links.send(link, pw.encode(pw.SyncStep2(msg.name, diff)), now)]
        if msg.reply_step1 and not self._under_way(link, msg.name, now):
            # (3) Our own step 1 for this document, unless one is on its way
            # already (both ends of a new link start a round): its answer
            # brings the same diff. Our answer gave them all we have, so the
            # step 1 only pulls, and waits its turn if the document is being
            # fetched on another link (§7.4).
            self.fetches.offer(link.id, msg.name, None, push=False)
            effects += self._ask(link, now)
        return effects

    def on_unavailable(self, link: Link, msg: pw.Unavailable, now: float) -> list[Effect]:
        """(7) The other side cannot serve *name*: it is not asked there
        again while the link lasts, and what it was asked goes elsewhere."""
        link.syncing.pop(msg.name, None)
        link.unavailable[msg.name] = msg.reason
        return self._ask_all(self.fetches.withdraw(link.id, msg.name), now)

    def forget(self, name: str, now: float) -> list[Effect]:
        """*name* is deleted forever: nothing more is asked for it."""
        for link in self.links.by_id.values():
            link.syncing.pop(name, None)
            link.in_sync.discard(name)
        return self._ask_all(self.fetches.forget(name), now)

    def on_step2(self, link: Link, msg: pw.SyncStep2, now: float) -> list[Effect]:
        link.syncing.pop(msg.name, None)
        applied = self.replicas.apply(link, msg.name, msg.update, now)
        effects = applied.effects
        if applied.doc is not None:
            effects += self.emit(DocumentChanged(msg.name, tuple(applied.changes), peer_origin(link.id)), now)
        others = self.fetches.answered(link.id, msg.name)
        doc = self.replicas.documents.get(msg.name)
        if others and doc is not None:
            # (§7.4 rule 3) The rest of the candidates: only what this
            # answer lacked, and nothing from one we now equal.
            digest = doc.digest()
            for link_id, offer in others.items():
                other = self.links.get(link_id)
                if other is None or not other.live:
                    continue
                if offer.digest == digest:
                    other.in_sync.add(msg.name)
                elif not self._under_way(other, msg.name, now):
                    effects.append(self._step1(other, msg.name, offer.push, now))
        return effects + self._ask(link, now)

    def on_gone(self, link_id: LinkId, now: float) -> list[Effect]:
        return self._ask_all(self.fetches.lost(link_id), now)

    def _ask(self, link: Link, now: float) -> list[Effect]:
        """(§7.4) Ask *link* for the documents that are its turn."""
        if not link.live:
            return []
        effects: list[Effect] = []
        for name, push in self.fetches.take(link.id, now):
            if not self.replicas.refuses(name):
                effects.append(self._step1(link, name, push, now))
        return effects

    def _ask_all(self, link_ids: set[LinkId], now: float) -> list[Effect]:
        effects: list[Effect] = []
        for link_id in sorted(link_ids):
            link = self.links.get(link_id)
            if link is not None:
                effects += self._ask(link, now)
        return effects

    def _step1(self, link: Link, name: str, reply: bool, now: float) -> Effect:
        link.syncing[name] = now
        step1 = pw.SyncStep1(name, self.replicas.state_vector(name), reply)
        return self.links.send(link, pw.encode(step1), now)

    def _under_way(self, link: Link, name: str, now: float) -> bool:
        sent = link.syncing.get(name)
        return sent is not None and now - sent < self.sync_timeout

    # -- timers -------------------------------------------------------------------

    def tick(self, now: float) -> list[Effect]:
        expired = self.fetches.expired
        effects = self._ask_all(self.fetches.expire(now), now)
        self.stats.timed_out += self.fetches.expired - expired
        ready = self.links.ready()
        if not ready or self._next is None or now < self._next:
            return effects
        root = self.replicas.root_digest()
        self._quiet = self._quiet + 1 if (root == self._last_root and not self._stirred) else 0
        self._last_root, self._stirred = root, False
        self._next = now + self.interval * min(2 ** min(self._quiet, 8), self.idle_factor)
        data = pw.encode(pw.Digest(root, len(self.replicas.documents)))
        partners = self._partners(min(self.fanout, len(ready)))
        self.stats.rounds += len(partners)
        return effects + [self.links.send(target, data, now) for target in partners]

    def next_deadline(self, now: float) -> float:
        if not self.links.any_ready():
            return float("inf")
        return now if self._next is None else min(self._next, self.fetches.next_deadline())

    def _partners(self, count: int) -> list[Link]:
        """(3) The next *count* links of a pass over every link in random
        order: each link gets a round once per pass, so with d links no link
        waits more than 2d - 1 rounds (a random link per round has no such
        bound, and a long tail). A pass ends when it runs out; links opened
        during a pass wait for the next one (each began with a round of its
        own). A link still answering the asks of an earlier round is passed
        over: a new round would only list the same documents again."""
        chosen: dict[LinkId, Link] = {}
        refilled = False
        while len(chosen) < count:
            if not self._order:
                if refilled:
                    break
                refilled = True
                self._order = [link.id for link in self.links.ready() if link.id not in chosen]
                if not self._order:
                    break
                self.rng.shuffle(self._order)
            link = self.links.get(self._order.pop())
            if link is not None and link.live and not self.fetches.busy(link.id):
                chosen[link.id] = link
        return list(chosen.values())
