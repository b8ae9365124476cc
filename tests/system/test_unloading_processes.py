"""Real ``meshpad serve`` processes that unload idle documents (``crdt.engine``
rule 7): peers' messages for documents that are not in memory wait for them
to load and are not lost, and a kill -9 while documents are being unloaded
and loaded again loses no edit that was acknowledged as saved."""

from __future__ import annotations

import asyncio
import random
import time
import urllib.error

import aiohttp
import pytest
from processes import Peer
from waiting import wait_for
from yclient import YClient

pytestmark = pytest.mark.slow

UNLOAD_SWEEP = 1.0  # crdt.engine.UNLOAD_SWEEP_SECONDS


@pytest.fixture
def cluster(tmp_path):
    started: list[Peer] = []

    def start(name: str, *args: str) -> Peer:
        peer = Peer(tmp_path / name, args=list(args)).start()
        started.append(peer)
        return peer

    yield start
    for peer in started:
        peer.stop()


def text_of(peer: Peer, name: str) -> str | None:
    try:
        return peer.get(f"/api/docs/{name}")["text"]
    except urllib.error.HTTPError as exc:
        assert exc.code == 404, f"{name}: {exc.code} {exc.read()!r}"
        return None


def lengths(peer: Peer) -> dict[str, int]:
    """The documents list (which reads summaries: it loads nothing)."""
    return {d["name"]: d["length"] for d in peer.get("/api/docs")}


async def edit(http: aiohttp.ClientSession, url: str, client_id: int, text: str) -> str:
    """Append *text* in a browser; return once it is saved. Returns what the
    browser saw on opening."""
    y = await YClient.connect(http, f"{url}?acks=1", client_id)
    try:
        await wait_for(lambda: y.synced, what=f"{url}: sync step 2")
        seen = y.content
        frame = await y.insert(len(y.text), text)
        await wait_for(lambda: y.saved >= frame, what=f"{url}: saved")
        return seen
    finally:
        await y.close()


async def test_peers_replicate_documents_they_have_unloaded(cluster):
    flags = ("--max-loaded", "2", "--unload-after", "0.3", "--session-gap", "0.2")
    a = cluster("a", *flags)
    b = cluster("b", "--join", a.address, *flags)
    texts = {f"doc{i}": f"made on a, number {i}\n" + "abc" * i for i in range(20)}
    for name, text in texts.items():
        assert a.post("/api/docs", {"name": name, "text": text}) == 201
    made = time.monotonic()

    # b loads each on demand to answer; the peers' traffic reaches documents
    # either has unloaded (each holds 2 of 20 in memory) and are loaded again.
    def b_has_all() -> bool:
        return all(text_of(b, name) == text for name, text in texts.items())

    await wait_for(b_has_all, timeout=20, what=lambda: f"b to hold the 20 documents: {lengths(b)}")
    # Long enough that a has unloaded all but two (a sweep after unload_after).
    await wait_for(lambda: time.monotonic() - made > 0.3 + 2 * UNLOAD_SWEEP, timeout=5)

    edited = {f"doc{i}": f"<edited on b {i}>" for i in (0, 3, 7, 12, 19)}
    async with aiohttp.ClientSession() as http:
        for i, (name, extra) in enumerate(edited.items()):
            assert await edit(http, f"{b.url}/ws/{name}", 900 + i, extra) == texts[name]
    expected = {name: text + edited.get(name, "") for name, text in texts.items()}
    # a sees the edits through the documents list first (its summaries: no
    # browser or API call loads them there), so what loads them on a is b's
    # messages, then reads them back.
    await wait_for(
        lambda: lengths(a) == {n: len(t) for n, t in expected.items()},
        timeout=20,
        what=lambda: f"a's lengths to show b's edits: {lengths(a)}",
    )
    for name, text in expected.items():
        assert text_of(a, name) == text, name
        assert text_of(b, name) == text, name
    read = time.monotonic()

    # And the other way: edits on a reach what b has unloaded since it read them.
    await wait_for(lambda: time.monotonic() - read > 0.3 + 2 * UNLOAD_SWEEP, timeout=5)
    more = {f"doc{i}": f"<edited on a {i}>" for i in (1, 7, 18)}
    async with aiohttp.ClientSession() as http:
        for i, (name, extra) in enumerate(more.items()):
            assert await edit(http, f"{a.url}/ws/{name}", 950 + i, extra) == expected[name]
    expected = {name: text + more.get(name, "") for name, text in expected.items()}
    await wait_for(
        lambda: lengths(b) == {n: len(t) for n, t in expected.items()},
        timeout=20,
        what=lambda: f"b's lengths to show a's edits: {lengths(b)}",
    )
    for name, text in expected.items():
        assert text_of(b, name) == text, name
        assert text_of(a, name) == text, name
    assert a.get("/healthz")["status"] == "ok" and b.get("/healthz")["status"] == "ok"


async def _create(
    http: aiohttp.ClientSession, tag: str, acked: dict[str, list[str]], order: list[str], tried: set[str]
) -> None:
    """Create documents one after another; each 201 means it is on disk."""
    i = 0
    while True:
        name = f"{tag}-{i}"
        text = f"created {name}\n"
        tried.add(name)  # one whose answer the kill cuts off may or may not be there
        resp = await http.post("/api/docs", json={"name": name, "text": text})
        assert resp.status == 201, await resp.text()
        acked[name] = [text]
        order.append(name)
        i += 1


async def _edit(
    http: aiohttp.ClientSession, tag: str, rng: random.Random, acked: dict[str, list[str]], order: list[str]
) -> None:
    """Open a document created earlier (most likely unloaded by now), append
    a token, wait until it is saved, close; again."""
    step = 0
    while True:
        if not order:
            await asyncio.sleep(0.01)
            continue
        name = rng.choice(order)
        token = f"<{tag}{step}>"
        y = await YClient.connect(http, f"/ws/{name}?acks=1", rng.randrange(1, 2**31))
        await wait_for(lambda y=y: y.synced, what=f"{name}: sync step 2")
        assert y.content.startswith(acked[name][0]), (name, y.content)
        frame = await y.insert(len(y.text), token)
        await wait_for(lambda y=y, frame=frame: y.saved >= frame, what=f"{name}: saved")
        acked[name].append(token)
        await y.close()
        step += 1


async def test_kill_9_while_documents_unload_loses_no_saved_edit(tmp_path):
    rng = random.Random(20240611)
    peer = Peer(tmp_path / "data", args=["--max-loaded", "1", "--unload-after", "0.1", "--session-gap", "0.1"])
    acked: dict[str, list[str]] = {}  # document -> its created text, then each token saved
    tried: set[str] = set()  # every document asked for
    try:
        peer.start()
        for round_ in range(4):
            order = list(acked)
            start_count = sum(len(v) for v in acked.values())
            async with aiohttp.ClientSession(peer.url) as http:
                tasks = [
                    asyncio.create_task(_create(http, f"r{round_}", acked, order, tried)),
                    asyncio.create_task(_edit(http, f"r{round_}a", random.Random(rng.random()), acked, order)),
                    asyncio.create_task(_edit(http, f"r{round_}b", random.Random(rng.random()), acked, order)),
                ]
                # Long enough for unloads to run (a sweep a second), then at a
                # random moment.
                threshold = start_count + rng.randint(15, 60)
                started = time.monotonic()

                def ready(threshold=threshold, started=started, tasks=tasks) -> bool:
                    failed = [t for t in tasks if t.done()]
                    if failed:
                        failed[0].result()  # raises what stopped it
                    saved = sum(len(v) for v in acked.values())
                    return saved >= threshold and time.monotonic() - started > UNLOAD_SWEEP + 0.2

                await wait_for(ready, timeout=20, what="enough saved edits")
                peer.kill()
                for t in tasks:
                    t.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
            peer.start()
            health = peer.get("/healthz")
            listed = lengths(peer)
            assert health["status"] == "ok" and health["documents"] == len(listed), health
            assert set(acked) <= set(listed) <= tried, (set(acked) - set(listed), set(listed) - tried)
            for name, length in listed.items():  # everything there reads back, whole
                text = text_of(peer, name)
                assert text is not None and len(text) == length, (name, length, text)
            for name, parts in acked.items():
                text = text_of(peer, name)
                assert text is not None, f"round {round_}: {name} lost"
                assert text.startswith(parts[0]), (name, text)
                lost = [token for token in parts[1:] if token not in text]
                assert not lost, f"round {round_}: {name} lost saved edits {lost}: {text!r}"
        edits = sum(len(v) - 1 for v in acked.values())
        assert len(acked) >= 4 * 5 and edits >= 4 * 5, (len(acked), edits)
        assert "cannot be read" not in peer.log()
    finally:
        peer.stop()
