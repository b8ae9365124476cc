"""The order of a text's characters, deleted ones included, read from a
document's whole state: what history needs to say which characters a version
holds, which ones changed between two versions, and who wrote each.

Yjs keeps a text as a list of items, each a run of characters of one client
with consecutive clocks. An item's place follows from its *origins*: the
character it was typed after, the one it was typed before, and, when several
were typed at one place concurrently, the YATA rule that Yjs and Yrs share.
:func:`order` integrates the items of one root text in a causal order with
that rule (:mod:`crdt.yata`, a port of Yjs's ``Item.integrate``) and
returns the runs in document order. A snapshot's text is then the runs it
covers, minus what its delete set removes: one list serves every version.

:func:`order` checks its result against the text pycrdt holds and returns
None on any disagreement: callers then fall back to :func:`crdt.ystructs.cut`,
which lets pycrdt do the ordering (slower, and without authors).
"""

from __future__ import annotations

import itertools
from bisect import bisect_right
from collections.abc import Iterable, Iterator, Mapping
from contextlib import suppress
from dataclasses import dataclass

from crdt import ystructs
from crdt.errors import LocalProtocolError
from crdt.yata import Item, ItemSequence, parents_of, walk
from crdt.ystructs import Struct


@dataclass(frozen=True, slots=True)
class Run:
    """Consecutive characters of one client, in document order. ``text`` is
    None for content that shows no characters (deleted content, formats)."""

    client: int
    clock: int
    length: int
    text: str | None


_END = 2**63  # "every clock"


def order(update: bytes, root: str, expected: str | None = None) -> list[Run] | None:
    """The runs of root text *root* in document order, deleted ones
    included, from *update* (a whole state with deleted content). With
    *expected* (the text as pycrdt reads it) the result is checked: None
    when it does not give that text under *update*'s own delete set."""
    clients, deletes = ystructs.decode(update)
    parents = parents_of(clients)
    seq = ItemSequence()
    done: dict[int, int] = dict.fromkeys(clients, 0)  # structs of each client handled so far
    total = sum(len(structs) for structs in clients.values())
    for start_client in sorted(clients):
        # (client, clock): handle that client's structs until *clock* is handled.
        stack = [(start_client, _END)]
        while stack:
            if len(stack) > total + 1:
                raise LocalProtocolError("items depend on each other in a cycle")
            client, until = stack[-1]
            structs = clients[client]
            if done[client] >= len(structs) or structs[done[client]].clock > until:
                stack.pop()
                continue
            s = structs[done[client]]
            if s.is_item and parents.get((s.client, s.clock)) == root and s.sub is None:
                missing = _missing(s, clients, done)
                if missing is not None:
                    stack.append(missing)
                    continue
                with suppress(KeyError):  # next to collected content: Yjs collects it too
                    seq.integrate(Item(s))
            done[client] += 1
    runs = [Run(i.client, i.clock, i.length, i.text if i.shows else None) for i in walk(seq.start)]
    if expected is not None and text_at(runs, None, deletes) != expected:
        return None
    return runs


def _missing(s: Struct, clients: dict[int, list[Struct]], done: dict[int, int]) -> tuple[int, int] | None:
    """(client, clock) that must be handled before *s* can be, if any."""
    for ref in (s.origin, s.right):
        if ref is None:
            continue
        client, clock = ref
        if client not in clients:
            raise LocalProtocolError(f"an origin points at client {client}, which the state lacks")
        structs = clients[client]
        handled = done[client]
        if handled < len(structs) and structs[handled].clock <= clock:
            return client, clock
    return None


# -- reading versions ---------------------------------------------------------------------


class DeleteIndex:
    """A delete set, for asking which clocks of a client it removes."""

    def __init__(self, deletes: Iterable[tuple[int, int, int]]) -> None:
        ranges: dict[int, list[tuple[int, int]]] = {}
        for client, clock, length in sorted(deletes):
            merged = ranges.setdefault(client, [])
            if merged and merged[-1][1] >= clock:
                merged[-1] = (merged[-1][0], max(merged[-1][1], clock + length))
            else:
                merged.append((clock, clock + length))
        self._ranges = ranges
        self._starts = {c: [a for a, _ in r] for c, r in ranges.items()}

    def kept(self, client: int, start: int, stop: int) -> Iterator[tuple[int, int]]:
        """The parts of clocks [start, stop) of *client* not deleted."""
        ranges = self._ranges.get(client)
        if not ranges:
            yield start, stop
            return
        i = max(0, bisect_right(self._starts[client], start) - 1)
        at = start
        while at < stop and i < len(ranges):
            a, b = ranges[i]
            if b <= at:
                i += 1
                continue
            if a >= stop:
                break
            if a > at:
                yield at, a
            at = max(at, b)
            i += 1
        if at < stop:
            yield at, stop


def visible(
    runs: Iterable[Run], state_vector: Mapping[int, int] | None, deletes: Iterable[tuple[int, int, int]] | DeleteIndex
) -> Iterator[tuple[Run, int, int]]:
    """(run, start, stop): the clock ranges of *runs* that show characters
    at a snapshot (*state_vector* None: everything there is)."""
    index = deletes if isinstance(deletes, DeleteIndex) else DeleteIndex(deletes)
    for run in runs:
        if run.text is None:
            continue
        end = run.clock + run.length
        if state_vector is not None:
            end = min(end, state_vector.get(run.client, 0))
        if end <= run.clock:
            continue
        for a, b in index.kept(run.client, run.clock, end):
            yield run, a, b


def unreadable(
    runs: Iterable[Run], state_vector: Mapping[int, int], deletes: Iterable[tuple[int, int, int]] | DeleteIndex
) -> bool:
    """Some content that shows at the snapshot has no characters here (it
    reached this replica already deleted and collected)."""
    index = deletes if isinstance(deletes, DeleteIndex) else DeleteIndex(deletes)
    for run in runs:
        if run.text is not None:
            continue
        end = min(run.clock + run.length, state_vector.get(run.client, 0))
        if end > run.clock and any(True for _ in index.kept(run.client, run.clock, end)):
            return True
    return False


def piece(run: Run, start: int, stop: int) -> str:
    assert run.text is not None
    return ystructs.utf16_slice(run.text, start - run.clock, stop - run.clock)


def text_at(
    runs: Iterable[Run], state_vector: Mapping[int, int] | None, deletes: Iterable[tuple[int, int, int]] | DeleteIndex
) -> str:
    """The text at a snapshot."""
    return "".join(piece(run, a, b) for run, a, b in visible(runs, state_vector, deletes))


@dataclass(frozen=True, slots=True)
class Span:
    """Text of one client in a version, or between two versions: ``op`` is
    ``=`` (in both), ``+`` (only in the newer) or ``-`` (only in the older)."""

    op: str
    text: str
    client: int
    clock: int


def compare(
    runs: Iterable[Run],
    older: tuple[Mapping[int, int], Iterable[tuple[int, int, int]]] | None,
    newer: tuple[Mapping[int, int], Iterable[tuple[int, int, int]]],
) -> list[Span]:
    """The text of version *newer*, with what was inserted since *older*
    and what was deleted since (None: the empty document), in document
    order. Adjacent spans of one client and kind are merged."""
    new_sv, new_del = newer[0], DeleteIndex(newer[1])
    old_sv, old_del = (older[0], DeleteIndex(older[1])) if older is not None else ({}, DeleteIndex(()))
    spans: list[Span] = []
    for run in runs:
        if run.text is None:
            continue
        for a, b in _boundaries(run, new_sv, new_del, old_sv, old_del):
            in_new = _shows(run, a, new_sv, new_del)
            in_old = _shows(run, a, old_sv, old_del)
            if not in_new and not in_old:
                continue
            op = "=" if in_new and in_old else "+" if in_new else "-"
            text = piece(run, a, b)
            last = spans[-1] if spans else None
            if last is not None and last.op == op and last.client == run.client:
                spans[-1] = Span(op, last.text + text, last.client, last.clock)
            else:
                spans.append(Span(op, text, run.client, a))
    return spans


def _shows(run: Run, clock: int, sv: Mapping[int, int], deletes: DeleteIndex) -> bool:
    if clock >= sv.get(run.client, 0):
        return False
    return any(True for _ in deletes.kept(run.client, clock, clock + 1))


def _boundaries(
    run: Run, new_sv: Mapping[int, int], new_del: DeleteIndex, old_sv: Mapping[int, int], old_del: DeleteIndex
) -> Iterator[tuple[int, int]]:
    """Split a run where its visibility in either version may change."""
    end = run.clock + run.length
    cuts = {run.clock, end}
    for sv in (new_sv, old_sv):
        c = sv.get(run.client, 0)
        if run.clock < c < end:
            cuts.add(c)
    for index in (new_del, old_del):
        for a, b in index.kept(run.client, run.clock, end):
            cuts.update((a, b))
    points = sorted(cuts)
    yield from itertools.pairwise(points)
