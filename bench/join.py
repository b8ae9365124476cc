"""What a fresh peer takes in when it joins through several sources.

    python bench/join.py                 # 500 documents of 2 KB
    python bench/join.py --docs 10000    # the large case

Four peers on loopback hold the same documents (made on the first through
the API, then synced to the other three). A fifth, with an empty data dir,
starts with ``--join`` to all four at once. Once it lists every document
with the sources' lengths, the row reads what came in on its peer links:
the decrypted peer messages per source (``/api/peers``) and the WebSocket
bytes in all (``/healthz``, handshakes and headers included). Reference:
the minimal state size, the sum over the documents of pycrdt's whole-state
update of the same text, computed in this process.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import aiohttp
import pycrdt
from common import Row, prose, table
from peers import stop_peers
from processes import Peer

SOURCES = 4


def _minimal(text: str) -> int:
    doc = pycrdt.Doc()
    doc.get("content", type=pycrdt.Text).insert(0, text)
    return len(doc.get_update())


async def _create(url: str, texts: dict[str, str]) -> None:
    async with aiohttp.ClientSession() as http:
        gate = asyncio.Semaphore(16)

        async def one(name: str, text: str) -> None:
            async with gate, http.post(f"{url}/api/docs", json={"name": name, "text": text}) as resp:
                if resp.status != 201:
                    raise AssertionError(f"creating {name}: HTTP {resp.status}")

        await asyncio.gather(*(one(name, text) for name, text in texts.items()))


def _listing(peer: Peer) -> dict[str, int]:
    return {d["name"]: d["length"] for d in peer.get("/api/docs")}


def _wait(predicate: Callable[[], bool], timeout: float, what: str) -> float:
    """Seconds until *predicate* holds (a peer too busy to answer within the
    client's timeout has not got there yet)."""
    start = time.monotonic()
    while True:
        try:
            if predicate():
                return time.monotonic() - start
        except TimeoutError:
            pass
        if time.monotonic() - start > timeout:
            raise TimeoutError(f"{what}: not within {timeout:.0f} s")
        time.sleep(0.1)


def row_join(work: Path, docs: int, size: int = 2000) -> Row:
    name = f"join through {SOURCES} sources ({docs:,} documents of {size // 1000} KB)"
    target = "≤ 1.3 × minimal, no source > ½"
    rng = random.Random(docs)
    texts = {f"doc-{i:05d}": prose(rng, size) for i in range(docs)}
    minimal = sum(_minimal(text) for text in texts.values())
    first = Peer(work / f"join{docs}-0").start()
    sources = [first]
    fresh: Peer | None = None
    try:
        asyncio.run(_create(first.url, texts))
        expected = _listing(first)
        for i in range(1, SOURCES):
            sources.append(Peer(work / f"join{docs}-{i}", args=["--join", first.address]).start())
        _wait(lambda: all(_listing(s) == expected for s in sources), 120 + docs / 50, "sources in sync")
        joins = [arg for s in sources for arg in ("--join", s.address)]
        fresh = Peer(work / f"join{docs}-fresh", args=joins).start()
        assert fresh is not None
        seconds = _wait(lambda: _listing(fresh) == expected, 120 + docs / 50, "the fresh peer caught up")
        wire = fresh.get("/healthz")["peer_wire_bytes_in"]
        by_address = {row["address"]: row["bytes_in"] for row in fresh.get("/api/peers")}
        served = [by_address.get(s.address, 0) for s in sources]
    except (TimeoutError, AssertionError, OSError) as exc:
        return Row(name, f"failed: {exc}", "—", target, False)
    finally:
        stop_peers([*sources, *([fresh] if fresh else [])])
    messages = sum(served)
    shares = ", ".join(f"{s / minimal:.0%}" for s in served)
    return Row(
        name,
        f"took in {messages:,} bytes of peer messages, {messages / minimal:.2f} × minimal (sources' shares of "
        f"minimal: {shares}); {wire:,} WebSocket bytes, {wire / minimal:.2f} ×; caught up in {seconds:.1f} s",
        f"minimal state {minimal:,} bytes (pycrdt, whole-state update per document)",
        target,
        messages <= 1.3 * minimal and max(served) <= 0.5 * minimal,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--docs", type=int, default=500)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="meshpad-join-") as tmp:
        print(table([row_join(Path(tmp), args.docs)]))


if __name__ == "__main__":
    main()
