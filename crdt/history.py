"""Every change can be seen, attributed and undone: a document's history,
kept in the document itself, sans-IO (the values it lists, versions and
their authors, are :mod:`crdt.versions`').

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

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from diff_match_patch import diff_match_patch  # type: ignore[import-untyped]

from crdt import entries, timeline, ystructs
from crdt.document import Change, Document
from crdt.entries import Snapshot, merged
from crdt.errors import LocalProtocolError
from crdt.timeline import DeleteIndex, Run, Span

# The history's values live in crdt.versions; the core, the server and the
# tests name them through this module (history.Author, history.UNKNOWN, ...).
from crdt.versions import UNKNOWN as UNKNOWN
from crdt.versions import Author as Author
from crdt.versions import Version as Version
from crdt.versions import VersionNotFound as VersionNotFound
from crdt.versions import VersionNotHeld as VersionNotHeld
from crdt.versions import check_id as check_id
from crdt.versions import merge_versions, version_of
from crdt.yupdate import parse_update

HISTORY = "meshpad:history"
AUTHORS = "meshpad:authors"
# An editing session ends after this long without an edit, or once it has
# lasted SESSION_MAX (so a long session still leaves versions behind).
SESSION_GAP = 60.0
SESSION_MAX = 600.0


# -- snapshots ------------------------------------------------------------------------


def snapshot_of(doc: Document) -> Snapshot:
    return Snapshot({c: k for c, k in doc.state_vector().items() if k > 0}, merged(doc.delete_set()))


# -- what the document holds ----------------------------------------------------------


class History:
    """The history of one replica, read from its document. What is derived
    (the listing, resolved snapshots, the order of characters) is cached
    until the document changes; resolved snapshots are kept for good (an id
    names one snapshot)."""

    def __init__(self, doc: Document) -> None:
        self.doc = doc
        self._snapshots: dict[str, Snapshot] = {}
        self._generation = -1
        self._versions: list[Version] = []
        self._runs: tuple[int, list[Run] | None] = (-1, None)

    # -- reading -------------------------------------------------------------

    def records(self) -> list[Any]:
        return self.doc.root_array(HISTORY)

    def authors(self) -> dict[int, Author]:
        out: dict[int, Author] = {}
        for key, value in self.doc.root_map(AUTHORS).items():
            if key.isdigit() and isinstance(value, dict):
                out[int(key)] = Author.from_json(value)
        return out

    def versions(self) -> list[Version]:
        """Every version, newest first; entries with the same snapshot (the
        same state named twice at once) are one version. Listed from the
        entries' own words: a snapshot is resolved, and checked against its
        id, when a version is opened (:meth:`snapshot`)."""
        if self._generation != self.doc.generation:
            by_id: dict[str, Version] = {}
            writers = self.authors()
            for record in self.records():
                try:
                    e = entries.decode(record, snapshot=False)
                except ValueError:
                    continue
                version = version_of(e, writers.get(e.writer, UNKNOWN).peer)
                known = by_id.get(version.id)
                by_id[version.id] = version if known is None else merge_versions(known, version)
            self._versions = sorted(by_id.values(), key=lambda v: (v.at, v.id), reverse=True)
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

    def snapshot(self, version_id: str) -> Snapshot:
        """The snapshot of a version: its writer's chain of entries up to it,
        accumulated and checked against the id. Raises VersionNotFound when
        no entry resolves to it."""
        found = self._snapshots.get(version_id)
        if found is not None:
            return found
        decoded: list[entries.Entry] = []
        for record in self.records():
            try:
                decoded.append(entries.decode(record))
            except ValueError:
                continue
        for target in [e for e in decoded if e.id == version_id]:
            chain = entries.Chain()
            for e in decoded:
                if e.writer == target.writer:
                    chain.add(e)
                    if e is target:
                        break
            snap = chain.snapshot()
            if snap.id == version_id:
                self._snapshots[version_id] = snap
                return snap
        raise VersionNotFound(version_id)

    def holds(self, version: Version) -> bool:
        sv = self.doc.state_vector()
        return all(sv.get(c, 0) >= k for c, k in self.snapshot(version.id).sv.items())

    def text(self, version: Version) -> str:
        """The text of *version*. Raises VersionNotHeld."""
        if not self.holds(version):
            raise VersionNotHeld(version.id)
        snap = self.snapshot(version.id)
        runs = self.runs()
        if runs is not None:
            # Content that reached this replica already deleted (a browser's
            # garbage-collected copy, sent after a crash of this peer) has no
            # characters here: a version that shows it cannot be read here.
            if timeline.unreadable(runs, snap.sv, snap.ds):
                raise VersionNotHeld(version.id)
            return timeline.text_at(runs, snap.sv, snap.ds)
        return self.doc.text_of(ystructs.cut(self.doc.encode_state(), snap.sv, snap.ds))

    def compare(self, version: Version, older: Version | None) -> list[Span] | None:
        """*version*'s text with what changed since *older*, by client; None
        when the order of characters cannot be read (then only text)."""
        if not self.holds(version) or (older is not None and not self.holds(older)):
            raise VersionNotHeld(version.id)
        runs = self.runs()
        if runs is None:
            return None
        new = self.snapshot(version.id)
        before = None
        if older is not None:
            old = self.snapshot(older.id)
            before = (old.sv, old.ds)
        return timeline.compare(runs, before, (new.sv, new.ds))

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

    def last_of(self, writer: int) -> Snapshot | None:
        """The snapshot of the last entry this writer wrote, if it checks."""
        last: entries.Entry | None = None
        for record in self.records():
            try:
                e = entries.decode(record, snapshot=False)
            except ValueError:
                continue
            if e.writer == writer:
                last = e
        if last is None:
            return None
        try:
            return self.snapshot(last.id)
        except VersionNotFound:
            return None


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


def _append(
    doc: Document, peer: str, at: float, kind: str, people: list[entries.Person], **fields: Any
) -> tuple[str, list[Change]]:
    """Append an entry naming this replica's state: a delta against this
    writer's last entry, or the whole snapshot for a writer's first."""
    # The writer is recorded as an author of nothing: it says which peer wrote its entries.
    changes = record_authors(doc, {doc.client_id: Author("", "", peer)})
    snap = snapshot_of(doc)
    base = History(doc).last_of(doc.client_id)
    grows = base is not None and all(snap.sv.get(c, 0) >= k for c, k in base.sv.items())
    if base is None or not grows:
        sv, ds, full = dict(snap.sv), list(snap.ds), True
    else:
        sv = {c: k for c, k in snap.sv.items() if base.sv.get(c, 0) != k}
        had = DeleteIndex(base.ds)
        ds = [(c, a, b - a) for c, k, n in snap.ds for a, b in had.kept(c, k, k + n)]
        full = False
    entry = entries.Entry(kind, at, snap.id, doc.client_id, full, sv, ds, authors=people, **fields)
    record = entries.encode(entry)
    return snap.id, changes + doc.write_root_array(HISTORY, lambda root: root.append(record), "history")


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
        people = [entries.Person(c, a.name, a.color) for c, a in sorted(s.authors.items())]
        _, changes = _append(
            doc, self.peer, s.last, "edit", people, started=s.started, inserted=s.inserted, deleted=s.deleted
        )
        return changes


def name_version(doc: Document, label: str, by: Author, at: float) -> tuple[str, list[Change]]:
    """Name the current state. Returns its version id and the changes."""
    label = label.strip()
    if not label:
        raise ValueError("a version's name cannot be empty")
    if len(label) > entries.MAX_LABEL:
        raise ValueError(f"a version's name has at most {entries.MAX_LABEL} characters")
    return _append(doc, by.peer, at, "named", [entries.Person(0, by.name, by.color)], label=label)


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
    restored_id, more = _append(
        doc, by.peer, at, "restore", [entries.Person(client_id, by.name, by.color)],
        restored=version.id, inserted=inserted, deleted=deleted,
    )  # fmt: skip
    return restored_id, changes + more
