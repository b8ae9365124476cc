"""Compaction: fold a document's stored snapshot and update log into one
snapshot, and prove the snapshot loads to the same document before anything
is replaced by it. Deleted content is kept (``skip_gc``): compaction never
makes a version of the history unreadable."""

from __future__ import annotations

from collections.abc import Sequence

from pycrdt import Doc, Text

from crdt.errors import StoreCorrupt, is_crdt_error
from crdt.yupdate import decode_state_vector, delete_set_of

_TEXT = "content"


def _replay(updates: Sequence[bytes]) -> Doc[Text]:
    # Deleted content stays: the history's versions must remain readable.
    doc: Doc[Text] = Doc(skip_gc=True)
    doc.get(_TEXT, type=Text)
    for update in updates:
        doc.apply_update(update)
    return doc


def _fingerprint(doc: Doc[Text]) -> tuple[str, dict[int, int], list[tuple[int, int, int]]]:
    text = str(doc.get(_TEXT, type=Text))
    return text, decode_state_vector(doc.get_state()), delete_set_of(doc.get_update())


def merge_log(name: str, updates: Sequence[bytes]) -> bytes:
    """One update equivalent to *updates* applied in order. Raises
    StoreCorrupt if the result does not load back to the same text, state
    vector and delete set (then nothing must be replaced)."""
    try:
        original = _replay(updates)
        snapshot = original.get_update()
        same = _fingerprint(_replay([snapshot])) == _fingerprint(original)
    except BaseException as exc:  # pycrdt raises ValueError, and PanicException (a BaseException)
        if not is_crdt_error(exc):
            raise
        raise StoreCorrupt(f"document {name!r}: stored updates do not decode: {exc}") from exc
    if not same:
        raise StoreCorrupt(f"document {name!r}: compacted snapshot does not reload identically")
    return snapshot
