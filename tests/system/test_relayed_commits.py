"""Changes a peer only relays are committed late (``server.storage``):
real processes and kill -9 show what that may cost and what it may not.

* Nothing a browser was told is saved is lost, and a local edit made on top
  of relayed text is on disk together with that text.
* What a killed peer had relayed but not committed comes back from its
  peers by anti-entropy (``docs/durability.md``).
"""

from __future__ import annotations

import aiohttp
import pytest
from processes import Peer
from waiting import wait_for
from yclient import YClient

pytestmark = pytest.mark.slow


@pytest.fixture
def pair(tmp_path):
    a = Peer(tmp_path / "a").start()
    b = Peer(tmp_path / "b", args=["--join", a.address]).start()
    yield a, b
    a.stop()
    b.stop()


async def _linked(a: Peer, b: Peer) -> None:
    await wait_for(lambda: any(r["state"] == "connected" for r in b.get("/api/peers")), what="b linked to a")


async def test_a_local_edit_on_relayed_text_is_saved_with_that_text(pair, tmp_path):
    a, b = pair
    await _linked(a, b)
    async with aiohttp.ClientSession() as http:
        writer = await YClient.connect(http, f"{a.url}/ws/notes?acks=1", 11)
        reader = await YClient.connect(http, f"{b.url}/ws/notes?acks=1", 22)
        await wait_for(lambda: writer.synced and reader.synced, what="both synced")
        frame = await writer.insert(0, "relayed text")
        await wait_for(lambda: writer.saved >= frame, what="a saved the writer's edit")
        await wait_for(lambda: reader.content == "relayed text", what="b relayed it to its browser")
        # At once, well within b's relayed commit delay: type on top of it.
        frame = await reader.insert(len("relayed text"), " local")
        await wait_for(lambda: reader.saved >= frame, what="b saved the local edit")
        a.kill()
        b.kill()
        await writer.closed.wait()
        await reader.closed.wait()
    # b comes back alone: a is gone and b forgets it, so nothing can fill a gap.
    (b.data_dir / "peers.json").unlink(missing_ok=True)
    b.args = []
    b.start()
    assert b.get("/api/docs/notes")["text"] == "relayed text local"


async def test_what_a_killed_relay_had_not_committed_comes_back_from_its_peers(pair):
    a, b = pair
    await _linked(a, b)
    async with aiohttp.ClientSession() as http:
        writer = await YClient.connect(http, f"{a.url}/ws/burst?acks=1", 33)
        reader = await YClient.connect(http, f"{b.url}/ws/burst", 44)
        await wait_for(lambda: writer.synced and reader.synced, what="both synced")
        last = 0
        for k in range(300):
            last = await writer.insert(len(writer.text), f"<{k}>")
        expected = "".join(f"<{k}>" for k in range(300))
        await wait_for(lambda: writer.saved >= last, what="a saved every edit")
        await wait_for(lambda: reader.content == expected, what="b relayed every edit")
        b.kill()  # within the relayed commit delay of the last edits
        await reader.closed.wait()
        await writer.close()
    b.start()
    await wait_for(lambda: b.get("/api/docs/burst")["text"] == expected, timeout=20, what="b caught up from a")
    assert a.get("/api/docs/burst")["text"] == expected
