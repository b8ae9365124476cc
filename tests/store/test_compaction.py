"""merge_log (crdt/compaction.py): one verified snapshot from a stored log,
or StoreCorrupt and nothing else."""

from __future__ import annotations

import pytest
from contract import edits, fingerprint
from pycrdt import Doc, Map, Text

from crdt.compaction import merge_log
from crdt.errors import StoreCorrupt

# "hello" typed by client 5 into the root Text "content".
HELLO = bytes.fromhex("01010500040107636f6e74656e740568656c6c6f00")


def test_the_snapshot_replays_to_the_same_document() -> None:
    updates, texts = edits(200, seed=4)
    snapshot = merge_log("doc", updates)
    assert fingerprint([snapshot]) == fingerprint(updates)
    assert fingerprint([snapshot])[0] == texts[-1]


def test_a_snapshot_can_be_folded_again() -> None:
    updates, _ = edits(50, seed=5)
    first = merge_log("doc", updates[:30])
    second = merge_log("doc", [first, *updates[30:]])
    assert fingerprint([second]) == fingerprint(updates)


def test_other_shared_types_survive_compaction() -> None:
    doc = Doc(client_id=3)
    log: list[bytes] = []
    doc.observe(lambda event: log.append(bytes(event.update)))
    doc.get("content", type=Text).insert(0, "text")
    meta = doc.get("meta", type=Map)
    meta["title"] = "Ünïcode 😀"
    replica = Doc()
    replica.apply_update(merge_log("doc", log))
    assert replica.get("meta", type=Map).to_py() == {"title": "Ünïcode 😀"}
    assert str(replica.get("content", type=Text)) == "text"


def test_an_empty_log_gives_an_empty_document() -> None:
    assert fingerprint([merge_log("doc", [])]) == fingerprint([])


BROKEN_LOGS = {
    "garbage": [b"not an update"],
    "truncated": [HELLO[:-3]],
    "garbage-after-good": [HELLO, b"\xff\xff\xff\xff"],
    # A client block with zero structs after a good update: pycrdt panics
    # (PanicException derives from BaseException, not Exception).
    "pycrdt-panics": [
        HELLO,
        bytes.fromhex(
            "01000500010107636f6e74656e7402840501036c6c6fc40501050201582801016d0161017c3f8000002701016d"
            "0174024900050701710105010002"
        ),
    ],
    # pycrdt accepts shared type 9, then the check's own reader refuses the
    # re-encoded snapshot with RemoteProtocolError.
    "shared-type-9": [bytes.fromhex("010105002701016d0174090000")],
}


@pytest.mark.parametrize("log", BROKEN_LOGS.values(), ids=BROKEN_LOGS.keys())
def test_a_log_that_does_not_decode_is_store_corrupt(log: list[bytes]) -> None:
    with pytest.raises(StoreCorrupt) as refused:
        merge_log("my-doc", log)
    assert "my-doc" in str(refused.value)
