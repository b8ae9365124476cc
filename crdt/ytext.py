"""A document's text as pycrdt holds it, and the work done on throwaway
copies of a document's state (never on the replica itself).

Rules kept here:

* The text is the root ``Text`` named :data:`TEXT_NAME`. Every copy keeps
  deleted content (``skip_gc``), like the replica it is made from.
* Positions given to pycrdt ``Text`` count UTF-8 bytes; Python positions count
  code points. :func:`utf8_offset` converts.
* Each function builds its own ``Doc`` from bytes and returns bytes, text or
  a verdict; nothing observes a document it changes. What pycrdt raises on
  bad data is left to the caller, who knows whom to blame.
"""

from __future__ import annotations

from collections.abc import Sequence

from pycrdt import Doc, Text

from crdt.yupdate import StateVector, decode_state_vector, delete_set_of, parse_update

TEXT_NAME = "content"


def utf8_offset(text: str, index: int) -> int:
    """The pycrdt (UTF-8 byte) position of code-point position *index*."""
    return len(text[:index].encode("utf-8"))


def text_of(update: bytes) -> str:
    """The text of a document that *update* builds from nothing."""
    doc: Doc[Text] = Doc(skip_gc=True)
    text = doc.get(TEXT_NAME, type=Text)
    doc.apply_update(update)
    return str(text)


def edits_as(state: bytes, current: str, client_id: int, edits: Sequence[tuple[int, int, str]]) -> list[bytes]:
    """The updates that apply *edits* ((at, delete, insert), in code points of
    *current*, in increasing order, not overlapping) in one transaction by
    *client_id*, made on a copy of *state* (whose text is *current*)."""
    scratch: Doc[Text] = Doc(client_id=client_id, skip_gc=True)
    text = scratch.get(TEXT_NAME, type=Text)
    scratch.apply_update(state)
    captured: list[bytes] = []
    subscription = scratch.observe(lambda event: captured.append(bytes(event.update)))
    with scratch.transaction():
        for at, delete, insert in reversed(edits):
            start = utf8_offset(current, at)
            if delete:
                del text[start : utf8_offset(current, at + delete)]
            if insert:
                text.insert(start, insert)
    scratch.unobserve(subscription)
    return captured


def survives_reload(base: bytes, update: bytes) -> bool:
    """Apply *update* to a copy of *base*, then replay the copy the way the
    store would (*base*, then the new delta): True when the replay holds the
    same text, state vector and delete set. Raises RemoteProtocolError when
    the delta itself is unreadable; pycrdt's errors pass through."""
    scratch: Doc[Text] = Doc(skip_gc=True)
    scratch.get(TEXT_NAME, type=Text)
    scratch.apply_update(base)
    deltas: list[bytes] = []
    subscription = scratch.observe(lambda event: deltas.append(bytes(event.update)))
    scratch.apply_update(update)
    scratch.unobserve(subscription)
    replay: Doc[Text] = Doc(skip_gc=True)
    replayed = replay.get(TEXT_NAME, type=Text)
    replay.apply_update(base)
    for delta in deltas:
        parse_update(delta)  # what we would store and push must be readable
        replay.apply_update(delta)
    return _fingerprint(replay, str(replayed)) == _fingerprint(scratch, str(scratch.get(TEXT_NAME, type=Text)))


def _fingerprint(doc: Doc[Text], text: str) -> tuple[str, StateVector, list[tuple[int, int, int]]]:
    return text, decode_state_vector(doc.get_state()), delete_set_of(doc.get_update(doc.get_state()))
