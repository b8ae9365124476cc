"""The records of a document's history array, and the snapshots they name.

A history entry is one binary record (a Yjs ``Uint8Array``), small because
every version of every document carries one: a few dozen bytes plus what
the session deleted. Fields, in order (varuints unless said)::

    format (u8, 1) · kind (u8: 0 edit, 1 named, 2 restore) · flags (u8: 1 full
    snapshot, 2 label, 4 restored) · at (ms since the epoch) · session length
    (ms) · id (12 bytes) · writer (the Yjs client id the entry was written
    with; the authors map says which peer that is) · inserted · deleted ·
    authors (count, then client · name · colour) · [label] · [restored id,
    12 bytes] · state vector (count, then client · clock, by client) ·
    delete set (clients, then client · ranges · (gap, length)*)

The snapshot is a delta: the state vector entries that changed and the
deleted ranges added since the previous entry of the same writer in the
array (its *base*), unless the full-snapshot flag is set. A writer is
one run of one peer's process: its state only grows, and its entries follow
each other in the array (each is appended after the last), so a writer's
chain accumulates to each entry's snapshot; the id (a hash of the canonical
snapshot) checks the result. A peer's first entry after it starts is full:
a crash may have taken what its last entries covered, so a chain never
spans a restart.

Records come from the network: :func:`decode` raises ValueError for
anything malformed, and callers skip such an entry.
"""

from __future__ import annotations

import base64
import hashlib
from bisect import bisect_left
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from crdt.errors import RemoteProtocolError
from crdt.lib0 import Reader, Writer

FORMAT = 1
KINDS = ("edit", "named", "restore")
FULL, LABEL, RESTORED = 1, 2, 4
ID_BYTES = 12
MAX_LABEL = 200
MAX_NAME = 80


def id_text(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode()


def id_bytes(text: str) -> bytes:
    raw = base64.urlsafe_b64decode(text)
    if len(raw) != ID_BYTES:
        raise ValueError(f"a version id names {ID_BYTES} bytes")
    return raw


@dataclass(frozen=True, slots=True)
class Snapshot:
    """A state of the CRDT: a state vector and a sorted, merged delete set."""

    sv: Mapping[int, int]
    ds: tuple[tuple[int, int, int], ...]

    def encode(self) -> bytes:
        """Canonical bytes: what the id hashes."""
        w = Writer()
        entries = sorted((c, k) for c, k in self.sv.items() if k > 0)
        w.write_varuint(len(entries))
        for client, clock in entries:
            w.write_varuint(client)
            w.write_varuint(clock)
        w.write_varuint(len(self.ds))
        for client, clock, length in self.ds:
            w.write_varuint(client)
            w.write_varuint(clock)
            w.write_varuint(length)
        return w.to_bytes()

    @property
    def id(self) -> str:
        return id_text(hashlib.blake2b(self.encode(), digest_size=ID_BYTES).digest())


def merged(ranges: Iterable[tuple[int, int, int]]) -> tuple[tuple[int, int, int], ...]:
    out: list[tuple[int, int, int]] = []
    for client, clock, length in sorted(ranges):
        if out and out[-1][0] == client and out[-1][1] + out[-1][2] >= clock:
            c, k, n = out[-1]
            out[-1] = (c, k, max(k + n, clock + length) - k)
        else:
            out.append((client, clock, length))
    return tuple(out)


@dataclass(slots=True)
class Person:
    client: int
    name: str
    color: str


@dataclass(slots=True)
class Entry:
    kind: str
    at: float  # seconds since the epoch
    id: str
    writer: int
    full: bool
    sv: dict[int, int]  # the whole state vector, or what changed since the base
    ds: list[tuple[int, int, int]]  # the whole delete set, or what was added
    started: float = 0.0
    inserted: int = 0
    deleted: int = 0
    authors: list[Person] = field(default_factory=list)
    label: str | None = None
    restored: str | None = None


def encode(e: Entry) -> bytes:
    w = Writer()
    flags = (FULL if e.full else 0) | (LABEL if e.label else 0) | (RESTORED if e.restored else 0)
    w.write_u8(FORMAT)
    w.write_u8(KINDS.index(e.kind))
    w.write_u8(flags)
    at_ms = round(e.at * 1000)
    w.write_varuint(at_ms)
    w.write_varuint(max(0, at_ms - round(e.started * 1000)) if e.started else 0)
    w.write_bytes(id_bytes(e.id))
    w.write_varuint(e.writer)
    w.write_varuint(e.inserted)
    w.write_varuint(e.deleted)
    w.write_varuint(len(e.authors))
    for p in e.authors:
        w.write_varuint(p.client)
        w.write_var_string(p.name[:MAX_NAME])
        w.write_var_string(p.color[:16])
    if e.label:
        w.write_var_string(e.label[:MAX_LABEL])
    if e.restored:
        w.write_bytes(id_bytes(e.restored))
    sv = sorted(e.sv.items())
    w.write_varuint(len(sv))
    for client, clock in sv:
        w.write_varuint(client)
        w.write_varuint(clock)
    by_client: dict[int, list[tuple[int, int]]] = {}
    for client, clock, length in merged(e.ds):
        by_client.setdefault(client, []).append((clock, length))
    w.write_varuint(len(by_client))
    for client, ranges in by_client.items():
        w.write_varuint(client)
        w.write_varuint(len(ranges))
        end = 0
        for clock, length in ranges:
            w.write_varuint(clock - end)
            w.write_varuint(length)
            end = clock + length
    return w.to_bytes()


def decode(data: object, *, snapshot: bool = True) -> Entry:
    """An entry from its record; without *snapshot* the state vector and
    delete set are left unread (what a listing needs is before them).
    Raises ValueError."""
    if not isinstance(data, (bytes, bytearray)):
        raise ValueError("a history entry is a byte record")
    try:
        return _decode(Reader(bytes(data)), snapshot)
    except (RemoteProtocolError, IndexError) as exc:
        raise ValueError(f"malformed history entry: {exc}") from None


def _decode(r: Reader, snapshot: bool) -> Entry:
    if r.read_u8() != FORMAT:
        raise ValueError("unknown history entry format")
    kind_index = r.read_u8()
    if kind_index >= len(KINDS):
        raise ValueError("unknown kind of history entry")
    flags = r.read_u8()
    at_ms = r.read_varuint()
    span = r.read_varuint()
    entry_id = id_text(r.read_bytes(ID_BYTES))
    writer = r.read_varuint()
    inserted = r.read_varuint()
    deleted = r.read_varuint()
    authors = []
    for _ in range(r.read_count()):
        authors.append(Person(r.read_varuint(), r.read_var_string()[:MAX_NAME], r.read_var_string()[:16]))
    label = r.read_var_string()[:MAX_LABEL] if flags & LABEL else None
    restored = id_text(r.read_bytes(ID_BYTES)) if flags & RESTORED else None
    e = Entry(KINDS[kind_index], at_ms / 1000, entry_id, writer, bool(flags & FULL), {}, [],
              (at_ms - span) / 1000 if span else 0.0, inserted, deleted, authors, label, restored)  # fmt: skip
    if not snapshot:
        return e
    for _ in range(r.read_count()):
        client = r.read_varuint()
        e.sv[client] = r.read_varuint()
    for _ in range(r.read_count()):
        client = r.read_varuint()
        end = 0
        for _ in range(r.read_count()):
            clock = end + r.read_varuint()
            length = r.read_varuint()
            if length == 0:
                raise ValueError("empty deleted range")
            e.ds.append((client, clock, length))
            end = clock + length
    if not r.at_end():
        raise ValueError("bytes after the history entry")
    return e


class Chain:
    """Accumulates one writer's entries, in array order, into snapshots."""

    def __init__(self) -> None:
        self.sv: dict[int, int] = {}
        self.ds: dict[int, list[tuple[int, int]]] = {}  # client -> merged (start, end), sorted
        self.broken = False  # an entry did not check: what follows is unknown

    def add(self, e: Entry) -> None:
        if e.full:
            self.sv, self.ds, self.broken = {}, {}, False
        if self.broken:
            return
        self.sv.update(e.sv)
        for client, clock, length in e.ds:
            _insert(self.ds.setdefault(client, []), clock, clock + length)

    def snapshot(self) -> Snapshot:
        ds = tuple((c, a, b - a) for c in sorted(self.ds) for a, b in self.ds[c])
        return Snapshot(dict(self.sv), ds)


def _insert(ranges: list[tuple[int, int]], start: int, end: int) -> None:
    """Add [start, end) to sorted, merged *ranges*, merging what touches."""
    i = bisect_left(ranges, (start, start))
    if i > 0 and ranges[i - 1][1] >= start:
        i -= 1
    j = i
    while j < len(ranges) and ranges[j][0] <= end:
        start = min(start, ranges[j][0])
        end = max(end, ranges[j][1])
        j += 1
    ranges[i:j] = [(start, end)]
