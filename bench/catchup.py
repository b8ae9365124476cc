"""The catch-up row: the bytes a restarted peer receives on its peer links
until it holds what it missed (1% of a 100 KB document changed while it was
stopped), against the minimal Yjs diff for its state vector.

    python bench/catchup.py            # the row, as a table
"""

from __future__ import annotations

import asyncio
import random
import string
import tempfile
import time
from pathlib import Path

import aiohttp
import pycrdt
from common import Row, exists, prose, table, wait_sync
from processes import Peer
from yclient import YClient, wait_for


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
    except (TimeoutError, AssertionError, OSError) as exc:
        return Row(name, f"failed: {exc}", "—", target, False)
    finally:
        b.stop()
        a.stop()
    doc_a, doc_b = pycrdt.Doc(), pycrdt.Doc()
    doc_a.apply_update(state_a)
    doc_b.apply_update(state_b)
    minimal = len(doc_a.get_update(doc_b.get_state()))
    return Row(
        name,
        f"B received {wire:,} bytes on its peer links, {wire / minimal:.2f} × minimal (WebSocket frames with "
        f"headers, Noise handshake included; the decrypted peer messages alone {messages:,} bytes, "
        f"{messages / minimal:.2f} × minimal); {inserted} characters inserted, {deleted} deleted",
        f"minimal Yjs diff against B's state vector {minimal:,} bytes (pycrdt)",
        target,
        wire <= 1.5 * minimal,
    )


if __name__ == "__main__":
    with tempfile.TemporaryDirectory(prefix="meshpad-bench-") as tmp:
        print(table([row_catchup(Path(tmp))]))
