"""The push tree (Plumtree): fresh changes at once, at about one message per
peer, sans-IO.

Owns: which links are on the tree (``eager``, ``carried``), what is to be
named to the lazy ones (``announce``), what lazy links named that has not
come (``_missing``), and what came pushed (``_pushed``).

Rule (2) of ``docs/protocol.md`` §7.1: a change is pushed at once over the
*eager* links except the one it came from, and named in an IHAVE over the
*lazy* ones, batched every ``lazy_interval``. A link starts eager; an UPDATE
that brings nothing new makes it lazy at both ends (PRUNE), so the eager
links thin out to a tree and a change costs about one message per peer
(what came first by anti-entropy does not count as a duplicate, and a peer
keeps its last eager link). A peer that is still missing what an IHAVE named
``graft_after`` later asks that link for it and makes it eager again
(GRAFT): the tree mends itself where it breaks; a lazy link that names
changes well before the eager copy comes replaces the eager one. A duplicate
changes nothing and so is not pushed on.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from crdt import peerwire as pw
from crdt.document import Document
from crdt.effects import DocumentChanged, Effect, Event, LinkGone, LinkId, peer_origin
from crdt.links import Ids, Link, Links
from crdt.replicas import Replicas
from crdt.yupdate import encode_state_vector, parse_update

# Bounds on the bookkeeping. Past them a change is left to anti-entropy
# rather than remembered: they only cost latency.
MAX_ANNOUNCED_DELETES = 1024  # delete ranges waiting in one document's IHAVE
MAX_MISSING = 1024  # documents with changes named by an IHAVE and not here yet
MAX_MISSING_IDS = 16_384  # client clocks and delete ranges remembered for them, in all


def add_ids(ids: Ids, ends: Iterable[tuple[int, int]], deletes: Iterable[tuple[int, int, int]]) -> None:
    for client, clock in ends:
        if ids.ends.get(client, 0) < clock:
            ids.ends[client] = clock
    for client, clock, length in deletes:
        ranges = ids.deletes.setdefault(client, [])
        start, stop = clock, clock + length
        if ranges and start <= ranges[-1][1] and stop >= ranges[-1][0]:
            # Touches the last range: typing deletes neighbours, forwards or backwards.
            ranges[-1] = (min(start, ranges[-1][0]), max(stop, ranges[-1][1]))
        elif ids.delete_count < MAX_ANNOUNCED_DELETES:
            ranges.append((start, stop))
            ids.delete_count += 1
        # else: anti-entropy brings the rest


def forget_ids(ids: Ids, ends: Iterable[tuple[int, int]]) -> None:
    """The other side has these clocks: no need to name them."""
    for client, clock in ends:
        if ids.ends.get(client, clock + 1) <= clock:
            del ids.ends[client]


def deletes_flat(ids: Ids) -> list[tuple[int, int, int]]:
    return [(client, start, stop - start) for client, ranges in sorted(ids.deletes.items()) for start, stop in ranges]


def ids_size(ids: Ids) -> int:
    return len(ids.ends) + ids.delete_count


@dataclass(slots=True)
class Missing:
    """Changes named by IHAVEs that have not come yet."""

    named_at: float  # when the first IHAVE naming them came
    due: float  # when to ask for them
    links: list[LinkId]  # the links that named them, first first
    ids: Ids


class PushTree:
    def __init__(
        self, links: Links, replicas: Replicas, emit: Callable[[Event, float], list[Effect]], *, enabled: bool,
        lazy_interval: float, graft_after: float, swap_after: float,
    ) -> None:  # fmt: skip
        self.links = links
        self.replicas = replicas
        self.emit = emit
        self.enabled = enabled
        self.lazy_interval = lazy_interval
        self.graft_after = graft_after
        self.swap_after = swap_after
        self._next_announce: float | None = None
        self._missing: dict[str, Missing] = {}
        self._missing_ids = 0  # the size of what _missing remembers (bounded by MAX_MISSING_IDS)
        # Per document, the clock of each client up to which changes came
        # pushed (UPDATE), as opposed to synced (SYNC_STEP2).
        self._pushed: dict[str, dict[int, int]] = {}
        # Whether a link takes pushed changes (crdt.access: a reader's peer
        # pushes to readers only).
        self.takes: Callable[[Link], bool] = lambda link: True

    # -- sending ------------------------------------------------------------------

    def push(self, name: str, update: bytes, origin: object, now: float) -> list[Effect]:
        """A change integrated here: push it on the eager links, name it to
        the lazy ones (not back where it came from)."""
        if not self.enabled:
            return []
        effects: list[Effect] = []
        data: bytes | None = None
        info = None
        for link in self.links:
            if not link.live or peer_origin(link.id) == origin or not self.takes(link):
                continue
            if link.eager:
                data = data or pw.encode(pw.Update(name, update))
                link.carried = True
                effects.append(self.links.send(link, data, now))
                continue
            info = info or parse_update(update)
            ends = [(client, end) for client, (_, end) in info.ranges.items()]
            add_ids(link.announce.setdefault(name, Ids()), ends, info.deletes)
            if self._next_announce is None:
                self._next_announce = now + self.lazy_interval
        return effects

    def awareness(self, name: str, update: bytes, exclude: LinkId | None, now: float) -> list[Effect]:
        """Cursors follow the eager links: they reach every peer the changes
        reach, without the duplicates of a flood."""
        data = pw.encode(pw.Awareness(name, update))
        return [self.links.send(link, data, now) for link in self.links.ready() if link.id != exclude and link.eager]

    def on_changed(self, event: DocumentChanged, now: float) -> list[Effect]:
        effects: list[Effect] = []
        for change in event.changes:
            effects += self.push(event.name, change.update, change.origin, now)
        return effects

    # -- messages -----------------------------------------------------------------

    def on_update(self, link: Link, msg: pw.Update, now: float) -> list[Effect]:
        link.carried = True
        applied = self.replicas.apply(link, msg.name, msg.update, now)
        doc = applied.doc
        if doc is None:
            return applied.effects
        effects = applied.effects
        if self._duplicate(msg.name, msg.update, applied.fresh):
            if link.eager and self._other_eager(link):
                # Pushed to us, and another push had brought it all: this
                # link is not on the tree.
                link.eager = False
                effects.append(self.links.send(link, pw.encode(pw.Prune()), now))
        elif applied.changes and msg.name in self._missing:
            effects += self._maybe_swap(link, msg.name, doc, now)
        event = DocumentChanged(msg.name, tuple(applied.changes), peer_origin(link.id))
        return effects + self.emit(event, now)

    def on_ihave(self, link: Link, msg: pw.IHave, now: float) -> list[Effect]:
        """The other side has these changes: if they are not here by
        ``graft_after``, :meth:`tick` asks it for them."""
        ours = link.announce.get(msg.name)
        if ours is not None:
            forget_ids(ours, msg.ends)  # no need to name to it what it has
        if self.replicas.refuses(msg.name):
            return []
        doc = self.replicas.documents.get(msg.name)
        if doc is not None and doc.covers(msg.ends, msg.deletes):
            return []
        if len(msg.ends) + len(msg.deletes) > MAX_MISSING_IDS - self._missing_ids:
            return []  # more than this peer keeps track of: anti-entropy will do
        missing = self._missing.get(msg.name)
        if missing is None:
            if len(self._missing) >= MAX_MISSING:
                return []
            missing = self._missing[msg.name] = Missing(now, now + self.graft_after, [], Ids())
        if link.id not in missing.links:
            missing.links.append(link.id)
        before = ids_size(missing.ids)
        add_ids(missing.ids, msg.ends, msg.deletes)
        self._missing_ids += ids_size(missing.ids) - before
        return []

    def on_prune(self, link: Link, msg: pw.Prune, now: float) -> list[Effect]:
        if link.eager and not self._other_eager(link):
            # Our last eager link: without it changes would reach us only
            # through IHAVEs, lazy_interval + graft_after late. Prunes from
            # both ends of a peer's links cross when changes come from
            # several directions; refuse this one.
            return [self.links.send(link, pw.encode(pw.Graft(())), now)]
        link.eager = False
        return []

    def on_graft(self, link: Link, msg: pw.Graft, now: float) -> list[Effect]:
        """Push here again; send what the other side lacks of the documents
        it names (an IHAVE named them and they did not come)."""
        link.eager = True
        effects: list[Effect] = []
        for name, state_vector in msg.documents:
            doc = self.replicas.documents.get(name)
            if doc is not None and not self.replicas.refuses(name):
                effects.append(self.links.send(link, pw.encode(pw.SyncStep2(name, doc.diff(state_vector))), now))
        return effects

    def on_gone(self, event: LinkGone, now: float) -> list[Effect]:
        """A link of the tree is gone, and the peers beyond it may now be cut
        off from changes made on this side (and we from theirs): every link
        is eager again, at both ends, until the next changes prune the tree
        anew. Waiting for an IHAVE to reveal the gap would cost a change
        lazy_interval + graft_after."""
        gone = event.link
        if not (gone.ready and gone.eager and gone.carried):
            return []
        effects: list[Effect] = []
        for other in self.links.ready():
            if not other.eager:
                other.eager = True
                effects.append(self.links.send(other, pw.encode(pw.Graft(())), now))
        return effects

    # -- the tree -------------------------------------------------------------------

    def _duplicate(self, name: str, update: bytes, fresh: bool) -> bool:
        """Record what a pushed UPDATE covers; True when it brought nothing
        that an earlier push had not. A change that came first by
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
        return any(other.eager and other.live and other.id != link.id for other in self.links)

    def _maybe_swap(self, link: Link, name: str, doc: Document, now: float) -> list[Effect]:
        """A pushed UPDATE brought what an IHAVE had named ``swap_after`` or
        more before it: the link that named it is the faster path. Make that
        link eager and this one lazy: a tree built from whichever copy came
        first would otherwise keep a slow detour."""
        missing = self._missing[name]
        if not doc.covers(missing.ids.ends.items(), deletes_flat(missing.ids)):
            return []
        self._forget(name)
        if now - missing.named_at < self.swap_after:
            return []
        faster = self.links.get(missing.links[0])
        if faster is None or not faster.live or faster.id == link.id or faster.eager:
            return []
        faster.eager = True
        link.eager = False
        return [
            self.links.send(faster, pw.encode(pw.Graft(())), now),
            self.links.send(link, pw.encode(pw.Prune()), now),
        ]

    def awaits(self, name: str) -> bool:
        """An IHAVE named changes to *name* that have not come yet."""
        return name in self._missing

    def forget(self, name: str) -> list[Effect]:
        """*name* is deleted forever: nothing more is named or asked for it."""
        if name in self._missing:
            self._forget(name)
        for link in self.links.by_id.values():
            link.announce.pop(name, None)
        return []

    def _forget(self, name: str) -> None:
        self._missing_ids -= ids_size(self._missing.pop(name).ids)

    # -- timers ---------------------------------------------------------------------

    def tick(self, now: float) -> list[Effect]:
        effects: list[Effect] = []
        if self._next_announce is not None and now >= self._next_announce:
            effects += self._announce(now)
        if self._missing:
            effects += self._graft(now)
        return effects

    def next_deadline(self) -> float:
        soonest = float("inf") if self._next_announce is None else self._next_announce
        return min([soonest, *(m.due for m in self._missing.values())])

    def _announce(self, now: float) -> list[Effect]:
        """The batched IHAVEs, one per document and lazy link."""
        self._next_announce = None
        effects: list[Effect] = []
        for link in self.links.ready():
            announce, link.announce = link.announce, {}
            for name, ids in announce.items():
                if ids.ends or ids.deletes:
                    message = pw.IHave(name, tuple(sorted(ids.ends.items())), tuple(deletes_flat(ids)))
                    effects.append(self.links.send(link, pw.encode(message), now))
        return effects

    def _graft(self, now: float) -> list[Effect]:
        """Ask for what IHAVEs named and the eager links did not bring."""
        asks: dict[LinkId, list[tuple[str, bytes]]] = {}
        for name, missing in list(self._missing.items()):
            if now < missing.due:
                continue
            self._forget(name)
            doc = self.replicas.documents.get(name)
            ids = missing.ids
            if self.replicas.refuses(name) or (doc is not None and doc.covers(ids.ends.items(), deletes_flat(ids))):
                continue
            link = next((lk for i in missing.links if (lk := self.links.get(i)) is not None and lk.live), None)
            if link is None:
                continue  # those links are gone: anti-entropy will do
            link.eager = True
            sv = doc.encode_state_vector() if doc is not None else encode_state_vector({})
            asks.setdefault(link.id, []).append((name, sv))
        effects: list[Effect] = []
        for link_id, docs in asks.items():
            link = self.links.get(link_id)
            assert link is not None
            effects.append(self.links.send(link, pw.encode(pw.Graft(tuple(docs))), now))
        return effects
