"""A document's life as replicated state: its name, whether it is in the
Trash, and the documents deleted forever, sans-IO.

A document is known on the wire and in the store by its *key*, which never
changes: the name it was made with (or, when that name was taken, the name
and a random suffix). What a person sees is its *name*, which lives in the
document itself, with its deletions, in three root maps that replicate with
its text (so anti-entropy digests cover them, and a peer that missed a
delete learns it in the first round that finds the document different):

==========================  ===============================================
``meshpad:meta``            ``name``: the name given by the last rename
``meshpad:names``           every name it had before (old links redirect)
``meshpad:deletes``         delete id -> ``{at, by, peer, hash}``
``meshpad:restores``        delete id -> ``{at, by, peer}``: undone deletes
==========================  ===============================================

The documents deleted forever are a document of their own, ``.forgotten``
(a key no person can type), whose root map ``meshpad:forgotten`` maps a key
to ``{at, by, peer, name}``. It only grows: a tombstone is never pruned.

Merge rules (``docs/protocol.md`` §9):

1. **Rename.** The last rename wins; two concurrent renames of a document
   resolve as Yjs resolves two concurrent writes of one map key (the write
   with the higher client id), on every replica alike.
2. **Delete and restore.** The Trash is an observed-remove set: a document
   is in the Trash while one of its deletes is not restored, and a restore
   undoes only the deletes its replica had seen. So a delete concurrent with
   an edit, or with a restore of an earlier delete, wins, and nothing is
   lost: the edits are in the trashed copy, which says it changed after the
   delete (its text no longer has the hash the delete recorded).
3. **Delete forever** wins over everything: a key in ``.forgotten`` is
   dropped by every replica that holds it, with what it held, and is never
   made again from a peer's data.
4. Whatever a map holds that does not follow these shapes is ignored: the
   maps are written by peers and browsers, and are untrusted.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pycrdt import Map

from crdt.document import Change, Document
from crdt.names import MAX_NAME_LENGTH, is_valid_name
from crdt.ydoc import LIFE_ROOTS

META, NAMES, DELETES, RESTORES, FORGOTTEN = LIFE_ROOTS
FORGOTTEN_KEY = ".forgotten"  # the document of tombstones: a key, never a name
MAX_WHO = 80  # characters kept of who did it


@dataclass(frozen=True, slots=True)
class Deletion:
    id: str
    at: float  # seconds since the epoch
    by: str  # the person's name, "" when unknown
    peer: str  # the peer (hex id) it was done on
    text_hash: str  # the text's hash when it was deleted

    @property
    def who(self) -> str:
        return self.by or (f"peer {self.peer[:8]}" if self.peer else "someone")


@dataclass(frozen=True, slots=True)
class Meta:
    """What the registry needs of one document."""

    name: str | None = None  # the name given by a rename; None: its key
    aliases: frozenset[str] = frozenset()
    deleted: Deletion | None = None  # the latest delete not restored
    changed_after_delete: bool = False

    def name_of(self, key: str) -> str:
        return self.name or key


@dataclass(frozen=True, slots=True)
class Tombstone:
    key: str
    at: float
    by: str
    peer: str
    name: str


def text_hash(text: str) -> str:
    return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16).hexdigest()


def _when(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


def _who(value: object) -> str:
    return value[:MAX_WHO] if isinstance(value, str) else ""


def _deletion(delete_id: str, value: object) -> Deletion | None:
    if not isinstance(value, Mapping):
        return None
    at = _when(value.get("at"))
    digest = value.get("hash")
    if at is None or not isinstance(digest, str):
        return None
    return Deletion(delete_id, at, _who(value.get("by")), _who(value.get("peer")), digest)


def read(doc: Document) -> Meta:
    """The document's meta, as its roots hold it now (rule 4)."""
    meta = doc.root_map(META)
    name = meta.get("name")
    aliases = frozenset(n for n in doc.root_map(NAMES) if is_valid_name(n))
    restored = set(doc.root_map(RESTORES))
    deleted: Deletion | None = None
    for delete_id, value in doc.root_map(DELETES).items():
        if delete_id in restored:
            continue
        found = _deletion(delete_id, value)
        if found is not None and (deleted is None or (found.at, found.id) > (deleted.at, deleted.id)):
            deleted = found
    changed = deleted is not None and text_hash(doc.text) != deleted.text_hash
    return Meta(name if is_valid_name(name) else None, aliases, deleted, changed)


def rename(doc: Document, key: str, old: str, new: str, at: float) -> list[Change]:
    def write_names(root: Map[Any]) -> None:
        # Both: the old name redirects, and so does this one if a concurrent
        # rename wins over it (rule 1).
        if old != key:
            root[old] = at
        root[new] = at

    changes = doc.write_root_map(NAMES, write_names, "local")
    return changes + doc.write_root_map(META, lambda root: root.__setitem__("name", new), "local")


def trash(doc: Document, delete_id: str, by: str, peer: str, at: float) -> list[Change]:
    record = {"at": at, "by": by[:MAX_WHO], "peer": peer, "hash": text_hash(doc.text)}
    return doc.write_root_map(DELETES, lambda root: root.__setitem__(delete_id, record), "local")


def restore(doc: Document, by: str, peer: str, at: float) -> list[Change]:
    """Undo every delete this replica has seen (rule 2)."""
    record = {"at": at, "by": by[:MAX_WHO], "peer": peer}
    done = set(doc.root_map(RESTORES))
    pending = [d for d in doc.root_map(DELETES) if d not in done]

    def write(root: Map[Any]) -> None:
        for delete_id in pending:
            root[delete_id] = record

    return doc.write_root_map(RESTORES, write, "local") if pending else []


def tombstones(doc: Document) -> dict[str, Tombstone]:
    found: dict[str, Tombstone] = {}
    for key, value in doc.root_map(FORGOTTEN).items():
        if not isinstance(value, Mapping) or not (is_valid_name(key)):
            continue
        at = _when(value.get("at"))
        name = value.get("name")
        found[key] = Tombstone(
            key,
            at or 0.0,
            _who(value.get("by")),
            _who(value.get("peer")),
            name if isinstance(name, str) and is_valid_name(name) else key,
        )
    return found


def forget(doc: Document, key: str, name: str, by: str, peer: str, at: float) -> list[Change]:
    record = {"at": at, "by": by[:MAX_WHO], "peer": peer, "name": name}
    return doc.write_root_map(FORGOTTEN, lambda root: root.__setitem__(key, record), "local")


def suffixed(name: str, n: int) -> str:
    """``name-n``, cut so that it stays a valid name."""
    tail = f"-{n}"
    return name[: MAX_NAME_LENGTH - len(tail)] + tail
