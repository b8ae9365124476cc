"""Every named limit on what a remote party may cost, each shown to bite."""

from __future__ import annotations

import random

import pytest

from crdt import peerwire as pw
from crdt.document import MAX_DOCUMENT_BYTES, Document, DocumentTooLarge
from crdt.errors import RemoteProtocolError
from crdt.limits import (
    BAN_BASE,
    LINK_MESSAGE_BURST,
    LINK_MESSAGES_PER_SECOND,
    STRIKES_BEFORE_BAN,
    BanList,
    TokenBucket,
)
from crdt.node import Node


def node() -> Node:
    counter = iter(range(1, 10_000))
    n = Node(b"\x01" * 16, "127.0.0.1:1", random.Random(1), lambda: next(counter))
    n.link_opened(1, False, "127.0.0.1", 0.0)
    n.receive(1, pw.encode(pw.Hello(pw.VERSION, b"\x02" * 16, "127.0.0.1:2", 5)), 0.0)
    return n


def test_messages_per_second_per_link():
    n = node()
    ping = pw.encode(pw.Ping(1))
    now = 0.0  # the same instant as the HELLO
    sent = 0
    with pytest.raises(RemoteProtocolError, match="messages per second"):
        while True:
            n.receive(1, ping, now)  # all at one instant: only the burst is allowed
            sent += 1
    assert sent == int(LINK_MESSAGE_BURST) - 1  # the HELLO took one token
    bucket = TokenBucket(LINK_MESSAGES_PER_SECOND, LINK_MESSAGE_BURST)
    assert all(bucket.take(t / LINK_MESSAGES_PER_SECOND) for t in range(100_000))  # a steady rate is fine


def test_largest_frame():
    with pytest.raises(RemoteProtocolError, match="too large"):
        pw.decode(bytes([pw.T.PING]) + bytes(pw.MAX_FRAME_BYTES))


def test_largest_document():
    author = Document("big", 7)
    chunk = "x" * (1024 * 1024)
    updates = []
    while sum(len(u) for u in updates) <= MAX_DOCUMENT_BYTES:
        updates.extend(c.update for c in author.edit("me", insert=chunk, at=len(author.text)))
    replica = Document("big", 8)
    with pytest.raises(DocumentTooLarge, match="bytes over the limit") as refused:
        for update in updates:
            replica.receive(update, "peer")
    assert replica.size <= MAX_DOCUMENT_BYTES
    assert len(replica.text) < len(author.text)
    # The refusal says by how much: the refused update would have gone this far past the limit.
    assert refused.value.limit == MAX_DOCUMENT_BYTES
    assert refused.value.over == replica.size + len(updates[len(replica.text) // len(chunk)]) - MAX_DOCUMENT_BYTES
    assert isinstance(refused.value, RemoteProtocolError)


def test_peer_messages_that_break_counts_are_refused():
    too_many = pw.Peers(tuple((bytes(16), f"h{i}:1") for i in range(pw.MAX_PEERS_PER_MESSAGE + 1)))
    with pytest.raises(RemoteProtocolError, match="too many peers"):
        pw.decode(pw.encode(too_many))
    with pytest.raises(RemoteProtocolError, match="too long"):
        pw.decode(pw.encode(pw.Hello(pw.VERSION, bytes(16), "h" * (pw.MAX_ADDRESS_BYTES + 1), 0)))


def test_ban_with_backoff():
    bans = BanList()
    now = 100.0
    for _ in range(STRIKES_BEFORE_BAN - 1):
        assert bans.strike("198.51.100.7", now) is None
    first = bans.strike("198.51.100.7", now)
    assert first == now + BAN_BASE
    assert bans.is_banned("198.51.100.7", now + BAN_BASE / 2)
    assert not bans.is_banned("198.51.100.7", now + BAN_BASE + 1)
    assert not bans.is_banned("198.51.100.8", now)
    for _ in range(STRIKES_BEFORE_BAN):
        second = bans.strike("198.51.100.7", now + 20)
    assert second == now + 20 + 2 * BAN_BASE  # the next ban is twice as long


def test_ihave_bookkeeping_is_bounded():
    """IHAVEs naming thousands of clients in hundreds of documents make the
    peer remember at most _MAX_MISSING_IDS clocks and ranges, one GRAFT asks
    for what it remembered, and then nothing is left."""
    from crdt.node import _MAX_MISSING_IDS, SendPeer

    n = node()
    for d in range(40):
        ends = tuple((client, 7) for client in range(1, pw.MAX_IHAVE_RANGES + 1))
        n.receive(1, pw.encode(pw.IHave(f"doc{d}", ends, ())), 0.0)
    assert 0 < n.push._missing_ids <= _MAX_MISSING_IDS
    remembered = len(n.push._missing)
    assert remembered == _MAX_MISSING_IDS // pw.MAX_IHAVE_RANGES
    grafts = [pw.decode(e.data) for e in n.tick(1.0) if isinstance(e, SendPeer)]
    asked = [name for g in grafts if isinstance(g, pw.Graft) for name, _ in g.documents]
    assert len(asked) == remembered and n.push._missing_ids == 0 and not n.push._missing
