"""A real ``meshpad serve`` process: restart keeps every document byte for
byte, and a kill -9 loses no edit that was acknowledged as saved."""

from __future__ import annotations

import asyncio
import random

import aiohttp
import pytest
from processes import Peer
from waiting import wait_for
from yclient import YClient

pytestmark = pytest.mark.slow


@pytest.fixture
def peer(tmp_path):
    p = Peer(tmp_path / "data").start()
    yield p
    p.stop()


async def test_ctrl_c_and_restart_keep_documents(peer):
    texts = {"a": "plain", "b": "ünïcödé 😀 text\r\nwith CRLF\n", "c": "x" * 5000}
    async with aiohttp.ClientSession(peer.url) as http:
        for name, text in texts.items():
            assert (await http.post("/api/docs", json={"name": name, "text": text})).status == 201
    assert peer.interrupt() == 0
    peer.start()
    async with aiohttp.ClientSession(peer.url) as http:
        for name, text in texts.items():
            got = await (await http.get(f"/api/docs/{name}")).json()
            assert got["text"].encode() == text.encode()
        listed = {d["name"]: d["length"] for d in await (await http.get("/api/docs")).json()}
        assert listed == {n: len(t) for n, t in texts.items()}


async def _type(client: YClient, tag: str, rng: random.Random, log: list[tuple[int, str]], stop: asyncio.Event) -> None:
    step = 0
    while not stop.is_set():
        token = f"<{tag}{step}>"
        at = len(client.text) if rng.random() < 0.8 else 0  # byte offsets of ASCII text
        frame = await client.insert(at, token)
        log.append((frame, token))
        step += 1
        await asyncio.sleep(0)


async def test_kill_9_during_burst_loses_no_saved_edit(peer):
    """Three clients type as fast as they can; the peer is killed with
    SIGKILL mid-burst. Every edit whose frame was acknowledged before the kill
    must be in the document after a restart, and the store must open."""
    rng = random.Random(7)
    stop = asyncio.Event()
    async with aiohttp.ClientSession(peer.url) as http:
        clients = [await YClient.connect(http, "/ws/burst?acks=1", 1000 + i) for i in range(3)]
        for c in clients:
            await wait_for(lambda c=c: c.synced)
        logs: list[list[tuple[int, str]]] = [[] for _ in clients]
        typists = [asyncio.create_task(_type(c, chr(97 + i), rng, logs[i], stop)) for i, c in enumerate(clients)]
        await wait_for(lambda: all(c.saved > 50 for c in clients), what="a good number of acks")
        peer.kill()
        acked = [c.saved for c in clients]  # acks that arrived before the kill
        stop.set()
        await asyncio.gather(*typists, return_exceptions=True)
    must_survive = [token for i, log in enumerate(logs) for frame, token in log if frame <= acked[i]]
    typed = sum(len(log) for log in logs)
    assert len(must_survive) >= 3 * 40
    peer.start()
    async with aiohttp.ClientSession(peer.url) as http:
        text = (await (await http.get("/api/docs/burst")).json())["text"]
    lost = [t for t in must_survive if t not in text]
    assert not lost, f"{len(lost)} of {len(must_survive)} saved edits lost (of {typed} typed)"
