"""Every change can be seen, attributed and undone: a document's history,
kept in the document itself, sans-IO.

Besides its text (the root ``content``) a document holds two more roots,
which replicate with it by the same causal, anti-entropy-repaired path:

* ``meshpad:authors`` (a map): who is behind each Yjs client id, as the peer
  the edits entered through recorded it: ``{"name", "color", "peer"}``. The
  name and colour are what the person typed in the editor; the peer id is
  what that peer vouches for.
* ``meshpad:history`` (an array of immutable entries): the versions. Each
  entry is a snapshot of the whole CRDT (state vector and delete set) and
  what it was: an editing session (``edit``: who wrote, how much), a name
  given to the state (``named``), or a restore (``restore``).

A version's **id** is a hash of its snapshot, so the same state has the
same id on every peer, and an id opens the same text on every peer that holds
what it covers (:meth:`History.holds`). Snapshots are stored as a delta
against the same peer's previous entry (its state only grows), with a full
one every FULL_EVERY entries; an entry whose chain does not resolve to its
id is ignored. Rules kept here:

1. Documents keep deleted content (``skip_gc``) on every peer, and the store
   never compacts it away (``crdt.compaction``): every version stays
   reachable.
2. A version's text is read from the document's whole state
   (:mod:`crdt.timeline`, or :func:`crdt.ystructs.cut` when the first
   disagrees with pycrdt): never with ``Doc.from_snapshot``, which panics.
3. Restore is a diff (diff-match-patch), applied as one transaction under a
   fresh client id that the restorer is recorded for: a new change that
   replicates like any edit, never a rewrite.
4. Times are given by the caller (``at``, seconds since the epoch, UTC).
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from diff_match_patch import diff_match_patch  # type: ignore[import-untyped]

from crdt import timeline, ystructs
from crdt.document import Change, Document
from crdt.errors import LocalProtocolError
from crdt.lib0 import Writer
from crdt.timeline import DeleteIndex, Run, Span
from crdt.yupdate import parse_update

HISTORY = "meshpad:history"
AUTHORS = "meshpad:authors"
FORMAT = 1
# An editing session ends after this long without an edit, or once it has
# lasted SESSION_MAX (so a long session still leaves versions behind).
SESSION_GAP = 60.0
SESSION_MAX = 600.0
# Every this many entries of a peer, one carries its whole snapshot, so that
# resolving any entry reads at most this many.
FULL_EVERY = 16
MAX_LABEL = 200
_ID = re.compile(r"[A-Za-z0-9_-]{20}")


class VersionNotFound(LookupError):
    """No entry of this document has the id."""


class VersionNotHeld(LookupError):
    """The version covers changes this replica does not hold yet."""


# -- snapshots ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Snapshot:
    """A state of the CRDT: a state vector and a (sorted, merged) delete set."""

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
        return base64.urlsafe_b64encode(hashlib.blake2b(self.encode(), digest_size=15).digest()).decode()


def merged(ranges: Iterable[tuple[int, int, int]]) -> tuple[tuple[int, int, int], ...]:
    out: list[tuple[int, int, int]] = []
    for client, clock, length in sorted(ranges):
        if out and out[-1][0] == client and out[-1][1] + out[-1][2] >= clock:
            c, k, n = out[-1]
            out[-1] = (c, k, max(k + n, clock + length) - k)
        else:
            out.append((client, clock, length))
    return tuple(out)


def snapshot_of(doc: Document) -> Snapshot:
    return Snapshot({c: k for c, k in doc.state_vector().items() if k > 0}, merged(doc.delete_set()))


def check_id(text: object) -> str:
    """A version id as given in a URL or a request; raises ValueError."""
    if not isinstance(text, str) or _ID.fullmatch(text) is None:
        raise ValueError("a version id is 20 characters of letters, digits, '-' and '_'")
    return text


# -- what the document holds ----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Author:
    name: str
    color: str
    peer: str  # the peer (hex id) that vouches for it; "" when unknown

    def as_json(self) -> dict[str, str]:
        return {"name": self.name, "color": self.color, "peer": self.peer}


UNKNOWN = Author("", "", "")


@dataclass(slots=True)
class Version:
    id: str
    at: float
    kind: str  # "edit", "named", "restore"
    peer: str
    snapshot: Snapshot
    authors: list[Author] = field(default_factory=list)
    inserted: int = 0
    deleted: int = 0
    label: str | None = None
    restored: str | None = None  # the version a restore brought back

    def summary(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "at": self.at,
            "kind": self.kind,
            "authors": [a.as_json() for a in self.authors],
            "inserted": self.inserted,
            "deleted": self.deleted,
            "label": self.label,
            "restored": self.restored,
            "peer": self.peer,
        }


def _pairs(flat: object, width: int) -> list[tuple[int, ...]]:
    if not isinstance(flat, list) or len(flat) % width:
        raise ValueError("malformed number list")
    numbers = [int(x) for x in flat]
    if any(x < 0 for x in numbers):
        raise ValueError("negative number")
    return [tuple(numbers[i : i + width]) for i in range(0, len(numbers), width)]


def _text(value: object, limit: int = MAX_LABEL) -> str:
    return value[:limit] if isinstance(value, str) else ""


class History:
    """The history of one replica, read from its document. What is derived
    (resolved snapshots, the order of characters) is cached until the
    document changes."""

    def __init__(self, doc: Document) -> None:
        self.doc = doc
        # Resolved snapshots, by what an entry says (entries never change, so
        # this holds for the replica's life).
        self._resolved: dict[tuple[Any, ...], Snapshot] = {}
        self._generation = -1
        self._versions: list[Version] = []
        self._runs: tuple[int, list[Run] | None] = (-1, None)

    # -- reading -------------------------------------------------------------

    def entries(self) -> list[dict[str, Any]]:
        return [e if isinstance(e, dict) else {} for e in self.doc.root_array(HISTORY)]

    def authors(self) -> dict[int, Author]:
        out: dict[int, Author] = {}
        for key, value in self.doc.root_map(AUTHORS).items():
            if key.isdigit() and isinstance(value, dict):
                out[int(key)] = Author(
                    _text(value.get("name")), _text(value.get("color"), 16), _text(value.get("peer"), 64)
                )
        return out

    def versions(self) -> list[Version]:
        """Every version whose snapshot resolves, newest first; entries with
        the same snapshot (an edit, then a name for it) are one version."""
        if self._generation != self.doc.generation:
            self._versions = self._read_versions()
            self._generation = self.doc.generation
        return self._versions

    def find(self, version_id: str) -> Version:
        for version in self.versions():
            if version.id == version_id:
                return version
        raise VersionNotFound(version_id)

    def previous(self, version: Version) -> Version | None:
        """The version listed just before *version* in time."""
        versions = self.versions()
        for i, v in enumerate(versions):
            if v.id == version.id:
                return versions[i + 1] if i + 1 < len(versions) else None
        return None

    def holds(self, version: Version) -> bool:
        sv = self.doc.state_vector()
        return all(sv.get(c, 0) >= k for c, k in version.snapshot.sv.items())

    def text(self, version: Version) -> str:
        """The text of *version*. Raises VersionNotHeld."""
        if not self.holds(version):
            raise VersionNotHeld(version.id)
        runs = self.runs()
        if runs is not None:
            return timeline.text_at(runs, version.snapshot.sv, version.snapshot.ds)
        return self.doc.text_of(ystructs.cut(self.doc.encode_state(), version.snapshot.sv, version.snapshot.ds))

    def compare(self, version: Version, older: Version | None) -> list[Span] | None:
        """*version*'s text with what changed since *older*, by client; None
        when the order of characters cannot be read (then only text)."""
        if not self.holds(version) or (older is not None and not self.holds(older)):
            raise VersionNotHeld(version.id)
        runs = self.runs()
        if runs is None:
            return None
        before = (older.snapshot.sv, older.snapshot.ds) if older is not None else None
        return timeline.compare(runs, before, (version.snapshot.sv, version.snapshot.ds))

    def runs(self) -> list[Run] | None:
        """The characters of the text in document order (None if the order
        read disagrees with pycrdt)."""
        generation, runs = self._runs
        if generation != self.doc.generation:
            runs = timeline.order(self.doc.encode_state(), "content", self.doc.text)
            self._runs = (self.doc.generation, runs)
        return runs

    def attribution(self) -> list[tuple[int, int, int]]:
        """(start, end, client) over the current text, in code points: who
        wrote each range."""
        runs = self.runs()
        if runs is None:
            return []
        out: list[tuple[int, int, int]] = []
        at = 0
        for run, a, b in timeline.visible(runs, None, self.doc.delete_set()):
            n = len(timeline.piece(run, a, b))
            if out and out[-1][2] == run.client and out[-1][1] == at:
                out[-1] = (out[-1][0], at + n, run.client)
            else:
                out.append((at, at + n, run.client))
            at += n
        return out

    def _read_versions(self) -> list[Version]:
        authors = self.authors()
        entries = self.entries()
        by_id: dict[str, Version] = {}
        index_of: dict[str, int] = {e["id"]: i for i, e in enumerate(entries) if isinstance(e.get("id"), str)}
        for i, entry in enumerate(entries):
            snap = self._resolve(i, entries, index_of, 0)
            if snap is None:
                continue
            version = _version(entry, snap, authors)
            known = by_id.get(version.id)
            by_id[version.id] = version if known is None else _merge(known, version)
        return sorted(by_id.values(), key=lambda v: (v.at, v.id), reverse=True)

    def _resolve(self, i: int, entries: list[dict[str, Any]], index_of: dict[str, int], depth: int) -> Snapshot | None:
        """Entry *i*'s snapshot, or None when it does not resolve (yet: its
        base may still be on its way) or not to its id."""
        entry = entries[i]
        entry_id = entry.get("id")
        if not isinstance(entry_id, str):
            return None
        key = (entry_id, entry.get("base"), _frozen(entry.get("sv")), _frozen(entry.get("ds")))
        if key in self._resolved:
            return self._resolved[key]
        try:
            if entry.get("v") != FORMAT or depth > FULL_EVERY:
                raise ValueError("unknown format, or a chain too long")
            sv: dict[int, int] = {c: k for c, k in _pairs(entry.get("sv"), 2)}
            ds: list[tuple[int, ...]] = _pairs(entry.get("ds"), 3)
            base = entry.get("base")
            if base is not None:
                j = index_of.get(base) if isinstance(base, str) else None
                base_snap = None if j is None or j == i else self._resolve(j, entries, index_of, depth + 1)
                if base_snap is None:
                    return None
                sv = {**base_snap.sv, **sv}
                ds = [*base_snap.ds, *ds]
            candidate = Snapshot(sv, merged((c, k, n) for c, k, n in ds))
        except (ValueError, TypeError, OverflowError):
            return None
        if candidate.id != entry_id:
            return None
        self._resolved[key] = candidate
        return candidate


def _frozen(value: object) -> object:
    return tuple(value) if isinstance(value, list) else value


def _version(entry: dict[str, Any], snap: Snapshot, authors: Mapping[int, Author]) -> Version:
    kind = entry.get("kind") if entry.get("kind") in ("edit", "named", "restore") else "edit"
    peer = _text(entry.get("peer"), 64)
    people: list[Author] = []
    if kind == "edit":
        for person in entry.get("authors") or []:
            if isinstance(person, dict):
                people.append(Author(_text(person.get("name")), _text(person.get("color"), 16), peer))
    else:
        by: dict[str, Any] = entry["by"] if isinstance(entry.get("by"), dict) else {}
        people.append(Author(_text(by.get("name")), _text(by.get("color"), 16), peer))
    unique: list[Author] = []
    for a in people:
        if all((a.name, a.peer) != (b.name, b.peer) for b in unique):
            unique.append(a)
    at = entry.get("at")
    return Version(
        snap.id,
        float(at) if isinstance(at, (int, float)) else 0.0,
        str(kind),
        peer,
        snap,
        unique,
        int(entry.get("ins") or 0),
        int(entry.get("del") or 0),
        _text(entry.get("label")) or None,
        entry.get("restored") if isinstance(entry.get("restored"), str) else None,
    )


def _merge(a: Version, b: Version) -> Version:
    """Two entries of one snapshot: keep the later's time and kind, every
    author, the counts of the edit, and a label if either has one."""
    new, old = (a, b) if a.at >= b.at else (b, a)
    authors = list(old.authors)
    for x in new.authors:
        if all((x.name, x.peer) != (y.name, y.peer) for y in authors):
            authors.append(x)
    return Version(
        new.id, new.at, new.kind if new.kind != "edit" else old.kind, new.peer, new.snapshot, authors,
        max(a.inserted, b.inserted), max(a.deleted, b.deleted), new.label or old.label, new.restored or old.restored,
    )  # fmt: skip


# -- writing ------------------------------------------------------------------------------


def record_authors(doc: Document, authors: Mapping[int, Author], origin: object = "history") -> list[Change]:
    """Record who is behind these client ids, where it is new or changed."""
    known = History(doc).authors()
    fresh = {c: a for c, a in authors.items() if known.get(c) != a}
    if not fresh:
        return []

    def write(root: Any) -> None:
        for client, author in fresh.items():
            root[str(client)] = author.as_json()

    return doc.write_root_map(AUTHORS, write, origin)


def _entry(doc: Document, peer: str, at: float, kind: str, **fields: Any) -> dict[str, Any]:
    """A new entry with this replica's snapshot, as a delta against this
    peer's last entry when that keeps the chain short."""
    snap = snapshot_of(doc)
    entries = History(doc).entries()
    base: dict[str, Any] | None = None
    base_snap: Snapshot | None = None
    history = History(doc)
    index_of = {e["id"]: i for i, e in enumerate(entries) if isinstance(e.get("id"), str)}
    for i in range(len(entries) - 1, -1, -1):
        if entries[i].get("peer") == peer:
            base_snap = history._resolve(i, entries, index_of, 0)
            base = entries[i] if base_snap is not None else None
            break
    depth = int(base.get("depth") or 0) + 1 if base is not None else 0
    grows = base_snap is not None and all(snap.sv.get(c, 0) >= k for c, k in base_snap.sv.items())
    if base is None or base_snap is None or depth >= FULL_EVERY or not grows:
        sv_out: dict[int, int] = dict(snap.sv)
        ds_out: list[tuple[int, int, int]] = list(snap.ds)
        base_id, depth = None, 0
    else:
        sv_out = {c: k for c, k in snap.sv.items() if base_snap.sv.get(c, 0) != k}
        had = DeleteIndex(base_snap.ds)
        ds_out = [(c, a, b - a) for c, k, n in snap.ds for a, b in had.kept(c, k, k + n)]
        base_id = base["id"]
    return {
        "v": FORMAT,
        "id": snap.id,
        "kind": kind,
        "at": at,
        "peer": peer,
        "base": base_id,
        "depth": depth,
        "sv": [x for pair in sorted(sv_out.items()) for x in pair],
        "ds": [x for triple in sorted(ds_out) for x in triple],
        **fields,
    }


def _append(doc: Document, entry: dict[str, Any], origin: object) -> list[Change]:
    return doc.write_root_array(HISTORY, lambda root: root.append(entry), origin)


@dataclass(slots=True)
class Session:
    """The editing session open on this peer for one document: what entered
    through this peer's browsers since the last version."""

    started: float
    last: float
    authors: dict[int, Author] = field(default_factory=dict)
    inserted: int = 0
    deleted: int = 0


class Recorder:
    """Groups the edits that enter through this peer into sessions, and
    writes a version when one ends (sans-IO: times come in)."""

    def __init__(self, peer: str, gap: float = SESSION_GAP, longest: float = SESSION_MAX) -> None:
        self.peer = peer
        self.gap = gap
        self.longest = longest
        self.session: Session | None = None

    def note(self, doc: Document, update: bytes, people: Mapping[int, tuple[str, str]], at: float) -> list[Change]:
        """A change typed in a browser of this peer. *people* are those its
        connection speaks for (client id -> name, colour); clients of the
        update not among them are recorded without a name. Returns the
        changes that record who they are."""
        info = parse_update(update)
        if self.session is None:
            self.session = Session(at, at)
        s = self.session
        s.last = at
        authors = {c: Author(*people.get(c, ("", "")), self.peer) for c in set(info.ranges) | set(people)}
        s.authors.update(authors)
        s.inserted += sum(end - start for start, end in info.ranges.values())
        s.deleted += sum(length for _, _, length in info.deletes)
        return record_authors(doc, authors)

    def deadline(self) -> float | None:
        if self.session is None:
            return None
        return min(self.session.last + self.gap, self.session.started + self.longest)

    def due(self, at: float) -> bool:
        deadline = self.deadline()
        return deadline is not None and at >= deadline

    def close(self, doc: Document, at: float) -> list[Change]:
        """End the session (if any): write its version."""
        s, self.session = self.session, None
        if s is None:
            return []
        # Who they were then: a person who renames later keeps this name here.
        people = [{"client": c, "name": a.name, "color": a.color} for c, a in sorted(s.authors.items())]
        fields = {"started": s.started, "authors": people, "ins": s.inserted, "del": s.deleted}
        entry = _entry(doc, self.peer, s.last, "edit", **fields)
        return _append(doc, entry, "history")


def name_version(doc: Document, label: str, by: Author, at: float) -> tuple[str, list[Change]]:
    """Name the current state. Returns its version id and the changes."""
    label = label.strip()
    if not label:
        raise ValueError("a version's name cannot be empty")
    if len(label) > MAX_LABEL:
        raise ValueError(f"a version's name has at most {MAX_LABEL} characters")
    entry = _entry(doc, by.peer, at, "named", label=label, by={"name": by.name, "color": by.color})
    return entry["id"], _append(doc, entry, "history")


def restore(doc: Document, version_id: str, by: Author, at: float, client_id: int) -> tuple[str, list[Change]]:
    """Make the text that of *version_id* again, as one new change by *by*
    (under the fresh *client_id*), and record it. Concurrent edits elsewhere
    merge with it like any edit. Raises VersionNotFound, VersionNotHeld."""
    history = History(doc)
    version = history.find(version_id)
    target = history.text(version)
    current = doc.text
    dmp = diff_match_patch()
    dmp.Diff_Timeout = 0  # exact, however long: a restore must give the version's text
    diffs = dmp.diff_main(current, target)
    dmp.diff_cleanupEfficiency(diffs)
    edits: list[tuple[int, int, str]] = []  # (at, delete, insert) in code points of the text before
    pos = inserted = deleted = 0
    for op, text in diffs:
        if op == 0:
            pos += len(text)
        elif op == -1:
            edits.append((pos, len(text), ""))
            pos += len(text)
            deleted += len(text)
        else:
            edits.append((pos, 0, text))
            inserted += len(text)
    changes = record_authors(doc, {client_id: by})
    changes += doc.edit_as(client_id, edits, origin="restore")
    if doc.text != target:
        raise LocalProtocolError("a restore did not give the version's text")
    entry = _entry(
        doc, by.peer, at, "restore", restored=version.id, by={"name": by.name, "color": by.color},
        ins=inserted, **{"del": deleted},
    )  # fmt: skip
    return entry["id"], changes + _append(doc, entry, "history")
