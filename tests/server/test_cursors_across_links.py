"""Remote cursors and the links they came through (server.runtime): a link
that fails takes its cursors with it at once; a link closed by a shuffle
(its peer alive, reachable through other links) does not."""

from __future__ import annotations

import pytest

from crdt import peerwire as pw
from crdt import ywire
from server.keys import RUNTIME


@pytest.mark.parametrize(("bye", "kept"), [(None, False), ("shuffle: replaced by a link to another peer", True)])
async def test_cursors_of_a_closed_link(client, bye: str | None, kept: bool) -> None:
    runtime = client.app[RUNTIME]
    session = await runtime.session("notes")
    engine = runtime.core
    now = runtime.now()
    engine.link_opened(900, False, "127.0.0.1", now)
    hello = pw.Hello(pw.VERSION, b"\x07" * 16, "127.0.0.1:9", 5, runtime.access.roster.space_id)
    engine.peer_frame(900, pw.encode(hello), now)
    cursor = ywire.awareness_update([ywire.AwarenessEntry(77, 1, '{"user":{"name":"Ada"}}')])
    engine.peer_frame(900, pw.encode(pw.Awareness("notes", cursor)), now)
    assert session.awareness_count() == 1
    if bye is not None:
        engine.peer_frame(900, pw.encode(pw.Bye(bye)), now)  # the other end shuffled the link out
    engine.link_closed(900, now)
    assert session.awareness_count() == (1 if kept else 0)
