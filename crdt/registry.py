"""Which documents exist, under which names, and which are in the Trash,
sans-IO: a function of every document's meta (``crdt.meta``) and the
tombstones, so every replica that holds the same documents shows the same.

Owns: the meta of every document this peer holds (loaded or not), the
tombstones, and what follows from them, recomputed when either changes.

Rules kept here:

1. A document is live unless it is in the Trash; the forgotten are not held.
2. Two live documents may end up with one name (two renames made apart).
   The one with the smaller key keeps it; each other is shown as
   ``name-2``, ``name-3``, … (in key order, skipping names in use), on every
   replica alike. The same holds within the Trash.
3. A name that is no longer any live document's leads to the live document
   that had it (its key, or one of its old names): old links keep working.
4. A new document takes its name as its key, unless that key is held,
   forgotten or some live document's old name; then the key gets a random
   suffix.
"""

from __future__ import annotations

import random
from collections.abc import Iterable
from dataclasses import dataclass

from crdt.meta import Deletion, Meta, Tombstone, suffixed
from crdt.names import MAX_NAME_LENGTH, validate_name


@dataclass(frozen=True, slots=True)
class TrashEntry:
    key: str
    name: str
    deleted: Deletion
    changed_after_delete: bool


class Registry:
    def __init__(self) -> None:
        self.metas: dict[str, Meta] = {}
        self.forgotten: dict[str, Tombstone] = {}
        self._live: dict[str, str] | None = None  # name -> key
        self._names: dict[str, str] = {}  # key -> name (live and trashed)
        self._trash: dict[str, str] = {}  # name -> key
        self._moved: dict[str, str] = {}  # (3) old name -> key

    def set(self, key: str, meta: Meta) -> None:
        if self.metas.get(key) != meta:
            self.metas[key] = meta
            self._live = None

    def setdefault(self, key: str) -> None:
        """A document that has just arrived: live until its meta says more."""
        if key not in self.metas:
            self.set(key, Meta())

    def drop(self, key: str) -> None:
        if self.metas.pop(key, None) is not None:
            self._live = None

    def add_tombstones(self, tombstones: Iterable[Tombstone]) -> list[str]:
        """Record tombstones; returns the keys newly forgotten."""
        new = [t.key for t in tombstones if t.key not in self.forgotten]
        for t in tombstones:
            self.forgotten.setdefault(t.key, t)
        return new

    # -- what follows ------------------------------------------------------------

    def live(self) -> dict[str, str]:
        """Every live document: name -> key."""
        self._compute()
        assert self._live is not None
        return self._live

    def name(self, key: str) -> str:
        self._compute()
        return self._names.get(key, key)

    def is_live(self, key: str) -> bool:
        meta = self.metas.get(key)
        return meta is not None and meta.deleted is None

    def is_trashed(self, key: str) -> bool:
        meta = self.metas.get(key)
        return meta is not None and meta.deleted is not None

    def resolve(self, name: str) -> str | None:
        """The key of the live document called *name*."""
        return self.live().get(name)

    def moved(self, name: str) -> str | None:
        """(3) The key of the live document that was called *name*."""
        self._compute()
        return self._moved.get(name)

    def trash(self) -> list[TrashEntry]:
        """The Trash, the latest deletion first."""
        self._compute()
        entries = []
        for name, key in self._trash.items():
            meta = self.metas[key]
            assert meta.deleted is not None
            entries.append(TrashEntry(key, name, meta.deleted, meta.changed_after_delete))
        entries.sort(key=lambda e: (-e.deleted.at, e.name))
        return entries

    def trashed(self, name: str) -> str | None:
        """The key of the document in the Trash called *name* (or keyed so)."""
        self._compute()
        found = self._trash.get(name)
        if found is None and self.is_trashed(name):
            return name
        return found

    def new_key(self, name: str, rng: random.Random) -> str:
        """(4) The key for a new document called *name*."""
        validate_name(name)
        self._compute()
        key = name
        while key in self.metas or key in self.forgotten or key in self._moved:
            key = f"{name[: MAX_NAME_LENGTH - 9]}.{rng.getrandbits(32):08x}"
        return key

    # -- internals ---------------------------------------------------------------

    def _compute(self) -> None:
        if self._live is not None:
            return
        live = [(k, m) for k, m in self.metas.items() if m.deleted is None]
        trashed = [(k, m) for k, m in self.metas.items() if m.deleted is not None]
        self._live = _assign(live)
        self._trash = _assign(trashed)
        self._names = {key: name for name, key in self._live.items()}
        self._names.update({key: name for name, key in self._trash.items()})
        moved: dict[str, str] = {}
        for key, meta in sorted(live):
            for old in sorted(meta.aliases | {key}):
                if old not in self._live:
                    moved.setdefault(old, key)
        self._moved = moved


def _assign(docs: list[tuple[str, Meta]]) -> dict[str, str]:
    """(2) name -> key, one name per document."""
    wanted: dict[str, list[str]] = {}
    for key, meta in docs:
        wanted.setdefault(meta.name_of(key), []).append(key)
    taken = set(wanted)
    out: dict[str, str] = {}
    for name in sorted(wanted):
        keys = sorted(wanted[name])
        out[name] = keys[0]
        n = 2
        for key in keys[1:]:
            while suffixed(name, n) in taken:
                n += 1
            taken.add(suffixed(name, n))
            out[suffixed(name, n)] = key
    return out
