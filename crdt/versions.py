"""What a document's history lists: versions and the people behind them, as
plain values, and version ids as they come from outside. Reading them out of
a document, and writing them into it, is :mod:`crdt.history`'s.

Rules kept here:

* A version's id is its snapshot's id (:attr:`crdt.entries.Snapshot.id`):
  16 characters of letters, digits, '-' and '_' (:func:`check_id`).
* Entries with the same snapshot are one version (:func:`merge_versions`):
  the later one's time, its kind unless that is ``edit``, every author once,
  the larger counts, and a label if either has one.
* An author record is untrusted replicated data: a field that is not a
  string reads as "", and each is cut to its limit.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from crdt import entries

_ID = re.compile(r"[A-Za-z0-9_-]{16}")


class VersionNotFound(LookupError):
    """No entry of this document has the id."""


class VersionNotHeld(LookupError):
    """The version covers changes this replica does not hold yet."""


def check_id(text: object) -> str:
    """A version id as given in a URL or a request; raises ValueError."""
    if not isinstance(text, str) or _ID.fullmatch(text) is None:
        raise ValueError("a version id is 16 characters of letters, digits, '-' and '_'")
    return text


@dataclass(frozen=True, slots=True)
class Author:
    name: str
    color: str
    peer: str  # the peer (hex id) that vouches for it; "" when unknown

    def as_json(self) -> dict[str, str]:
        return {"name": self.name, "color": self.color, "peer": self.peer}

    @classmethod
    def from_json(cls, value: Mapping[str, object]) -> Author:
        """An author as recorded in a document: what is not a string reads
        as "", and each field is cut to its limit."""
        name, color = _text(value.get("name"), entries.MAX_NAME), _text(value.get("color"), 16)
        return cls(name, color, _text(value.get("peer"), 64))


UNKNOWN = Author("", "", "")


@dataclass(slots=True)
class Version:
    id: str
    at: float
    kind: str  # "edit", "named", "restore"
    peer: str
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


def _text(value: object, limit: int = entries.MAX_LABEL) -> str:
    return value[:limit] if isinstance(value, str) else ""


def version_of(e: entries.Entry, peer: str) -> Version:
    """The version an entry describes, written through *peer*; each person
    is listed once."""
    people = [Author(p.name, p.color, peer) for p in e.authors]
    unique: list[Author] = []
    for a in people:
        if all((a.name, a.peer) != (b.name, b.peer) for b in unique):
            unique.append(a)
    return Version(e.id, e.at, e.kind, peer, unique, e.inserted, e.deleted, e.label, e.restored)


def merge_versions(a: Version, b: Version) -> Version:
    """Two entries of one snapshot: keep the later's time and kind, every
    author, the counts of the edit, and a label if either has one."""
    new, old = (a, b) if a.at >= b.at else (b, a)
    authors = list(old.authors)
    for x in new.authors:
        if all((x.name, x.peer) != (y.name, y.peer) for y in authors):
            authors.append(x)
    return Version(
        new.id, new.at, new.kind if new.kind != "edit" else old.kind, new.peer, authors,
        max(a.inserted, b.inserted), max(a.deleted, b.deleted), new.label or old.label, new.restored or old.restored,
    )  # fmt: skip
