"""The document-life rows: what unloading idle documents buys and costs.

    python bench/life.py               # the three rows, as a table
    python bench/life.py --quick       # fewer documents and samples

* memory: a peer whose store holds many 2 KB documents, started with a short
  ``--unload-after``; its resident memory once every document has been
  opened and has gone idle, against the same process's when it had just
  started (the peak while opening is reported too);
* reload: a GET of a 100 KB document made by many edits, unloaded (the peer
  runs with ``--max-loaded 1 --unload-after 0.5`` and the GET comes after
  longer than that and the 1 s sweep), against the same GET right after,
  while it is loaded;
* idle cost: three peers holding the same documents and 100 tombstones
  (documents deleted, then deleted forever, on one of them), the bytes each
  sends on its peer links while nothing happens, against the same peers
  before the tombstones existed.

The stores are written directly (``SQLiteStore`` and ``crdt.store.Write``,
updates made by pycrdt through ``crdt.document.Document``): the schema the
peer itself writes, without spending minutes on the API.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import shutil
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

import aiohttp
from common import Row, percentile, prose, rss_mb, table, wait_sync
from peers import stop_peers
from processes import Peer

from crdt.document import Document
from crdt.store import Write
from server.sqlite_store import DB_FILE, SQLiteStore


def _store(data: Path, texts: dict[str, str]) -> None:
    """Documents of one edit each, written as the peer writes them."""
    store = SQLiteStore(data)
    batch = []
    for i, (name, text) in enumerate(texts.items()):
        doc = Document(name, i + 1)
        for change in doc.edit("seed", insert=text):
            batch.append(Write(name, change.update, length=len(doc.text), at=time.time() - len(texts) + i))
    store.write(batch)
    store.close()


def _stable_rss(pid: int, window: float, deadline: float, floor: float = 0.0) -> float:
    """Resident MB once it has moved by less than 1 MB for *window* seconds
    (after at least *floor* seconds), or when *deadline* seconds have passed."""
    start = time.monotonic()
    samples: list[tuple[float, float]] = []
    while True:
        now = time.monotonic()
        samples.append((now, rss_mb(pid)))
        samples = [s for s in samples if s[0] >= now - window]
        values = [v for _, v in samples]
        waited = now - start
        if waited >= max(floor, window) and max(values) - min(values) < 1.0:
            return values[-1]
        if waited >= deadline:
            return values[-1]
        time.sleep(0.25)


class _Peak:
    """The highest resident memory of *pid*, sampled every 50 ms."""

    def __init__(self, pid: int) -> None:
        self.pid, self.peak = pid, 0.0
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._done.is_set():
            self.peak = max(self.peak, rss_mb(self.pid))
            self._done.wait(0.05)

    def __enter__(self) -> _Peak:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._done.set()
        self._thread.join()


async def _open_all(url: str, names: list[str]) -> None:
    async with aiohttp.ClientSession() as http:
        gate = asyncio.Semaphore(4)

        async def one(name: str) -> None:
            async with gate, http.get(f"{url}/api/docs/{name}") as resp:
                if resp.status != 200:
                    raise AssertionError(f"opening {name}: HTTP {resp.status}")
                await resp.read()

        await asyncio.gather(*(one(n) for n in names))


def row_memory(work: Path, docs: int, quick: bool) -> Row:
    unload_after = 2.0
    name = f"memory after idle ({docs:,} documents of 2 KB{', quick run' if quick else ''})"
    target = "≤ cold start + 50 MB"
    rng = random.Random(docs)
    texts = {f"m{i:05d}": prose(rng, 2000) for i in range(docs)}
    data = work / f"life-memory-{docs}"
    _store(data, texts)
    peer = Peer(data, args=["--unload-after", str(unload_after)])
    try:
        peer.start(timeout=120)
        assert peer.proc is not None
        pid = peer.proc.pid
        # Settled: the start-up loads done and the first sweeps past.
        cold = _stable_rss(pid, window=3, deadline=30, floor=unload_after + 2)
        start = time.monotonic()
        with _Peak(pid) as peak:
            asyncio.run(_open_all(peer.url, list(texts)))
        opening = time.monotonic() - start
        after = _stable_rss(pid, window=5, deadline=60, floor=unload_after + 3)
        listed = len(peer.get("/api/docs"))
        assert listed == docs, f"the peer lists {listed} documents, not {docs}"
    except (TimeoutError, AssertionError, OSError) as exc:
        return Row(name, f"failed: {exc}", "—", target, False)
    finally:
        peer.stop()
    return Row(
        name,
        f"{after:.0f} MB resident after idle ({after - cold:+.0f} MB); peak {peak.peak:.0f} MB while opening "
        f"every document once ({opening:.1f} s; --unload-after {unload_after:g}, --max-loaded 1000)",
        f"cold start, same process: {cold:.0f} MB",
        target,
        after <= cold + 50,
    )


def _cpu(pid: int) -> float:
    """Seconds the threads of *pid* have run on a CPU (/proc schedstat, ns)."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError, ValueError, IndexError):  # a thread that ended meanwhile
            total += int((task / "schedstat").read_text().split()[0])
    return total / 1e9


def _timed_get(url: str, pid: int) -> tuple[float, float]:
    """Wall seconds of one GET, and the CPU seconds the peer spent meanwhile."""
    cpu = _cpu(pid)
    start = time.perf_counter()
    with urllib.request.urlopen(url, timeout=10) as resp:
        resp.read()
    return time.perf_counter() - start, _cpu(pid) - cpu


def row_reload(work: Path, samples: int) -> Row:
    unload_after = 0.5
    edits = 500
    name = "reload an unloaded 100 KB document (GET /api/docs/{name})"
    target = "p99 ≤ 50 ms"
    rng = random.Random(7)
    doc = Document("big", 1)
    writes = []
    for _ in range(edits):
        chunk = prose(rng, 200)
        for change in doc.edit("seed", insert=chunk, at=rng.randint(0, len(doc.text))):
            writes.append(Write("big", change.update, length=len(doc.text), at=time.time()))
    size = len(doc.text)
    data = work / "life-reload"
    store = SQLiteStore(data)
    store.write(writes)
    store.close()
    peer = Peer(data, args=["--max-loaded", "1", "--unload-after", str(unload_after)])
    cold: list[float] = []
    warm: list[float] = []
    cold_cpu: list[float] = []
    warm_cpu: list[float] = []
    try:
        peer.start(timeout=60)
        assert peer.proc is not None
        url = f"{peer.url}/api/docs/big"
        assert peer.get("/api/docs/big")["length"] == size
        for _ in range(samples):
            time.sleep(unload_after + 1.0 + 0.7)  # idle, the 1 s sweep, the unload's flush
            seconds, cpu = _timed_get(url, peer.proc.pid)
            cold.append(seconds)
            cold_cpu.append(cpu)
            seconds, cpu = _timed_get(url, peer.proc.pid)
            warm.append(seconds)
            warm_cpu.append(cpu)
    except (TimeoutError, AssertionError, OSError) as exc:
        return Row(name, f"failed: {exc}", "—", target, False)
    finally:
        peer.stop()

    def p(values: list[float]) -> str:
        return f"p50 {percentile(values, 50) * 1000:.1f} ms, p99 {percentile(values, 99) * 1000:.1f} ms"

    return Row(
        name,
        f"{p(cold)} ({samples} samples; {size // 1000} KB of text made by {edits} edits at random places); "
        f"the peer's CPU time per GET {p(cold_cpu)}; machine load average {os.getloadavg()[0]:.1f}",
        f"the same GET while loaded: {p(warm)}; CPU {p(warm_cpu)}",
        target,
        percentile(cold, 99) <= 0.05,
    )


def _delete(url: str) -> None:
    urllib.request.urlopen(urllib.request.Request(url, method="DELETE"), timeout=10).close()


def _wait(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    try:
        wait_sync(predicate, timeout, poll=0.2)
    except TimeoutError:
        raise TimeoutError(f"{what}: not within {timeout:.0f} s") from None


def _in_sync(peers: list[Peer], count: int) -> bool:
    """Every peer lists *count* documents, has an empty Trash, and a
    connected link; every connected link has finished a sync check."""
    for p in peers:
        links = [r for r in p.get("/api/peers") if r["state"] == "connected"]
        if not links or any(r["last_sync_check_s_ago"] is None for r in links):
            return False
        if len(p.get("/api/docs")) != count or p.get("/api/trash"):
            return False
    return True


def _idle_rates(peers: list[Peer], seconds: float) -> list[float]:
    """Bytes each peer sends on its peer links per second, over *seconds*."""
    before = [p.get("/healthz")["peer_wire_bytes_out"] for p in peers]
    time.sleep(seconds)
    after = [p.get("/healthz")["peer_wire_bytes_out"] for p in peers]
    return [(b - a) / seconds for a, b in zip(before, after, strict=True)]


def row_idle_tombstones(work: Path, docs: int, seconds: float, quick: bool) -> Row:
    tombstones = 100
    name = f"idle cost with tombstones ({docs:,} documents and {tombstones} tombstones in sync, 3 peers"
    name += ", quick run)" if quick else ")"
    target = "≤ 200 B/s per peer"
    rng = random.Random(docs + 1)
    texts = {f"i{i:05d}": prose(rng, 200) for i in range(docs)}
    seed = work / f"life-idle-{docs}-seed"
    _store(seed, texts)
    dirs = [work / f"life-idle-{docs}-{i}" for i in range(3)]
    for d in dirs:
        d.mkdir(parents=True)
        for f in seed.glob(DB_FILE + "*"):
            shutil.copy(f, d / f.name)
    first = Peer(dirs[0])
    peers = [first, *(Peer(d, args=["--join", first.address]) for d in dirs[1:])]
    settle = 5.0
    try:
        for p in peers:
            p.start(timeout=120)
        _wait(lambda: _in_sync(peers, docs), 120, "the peers in sync")
        time.sleep(settle)
        before = _idle_rates(peers, seconds)
        for n in list(texts)[:tombstones]:
            _delete(f"{first.url}/api/docs/{n}")
            _delete(f"{first.url}/api/trash/{n}")
        _wait(lambda: _in_sync(peers, docs - tombstones), 120, "the tombstones on every peer")
        time.sleep(settle)
        rates = _idle_rates(peers, seconds)
    except (TimeoutError, AssertionError, OSError) as exc:
        return Row(name, f"failed: {exc}", "—", target, False)
    finally:
        stop_peers(peers)

    def show(values: list[float]) -> str:
        return f"{sum(values) / len(values):.0f} B/s sent per peer (max {max(values):.0f})"

    return Row(
        name,
        f"{show(rates)} over {seconds:g} s",
        f"the same peers before the tombstones: {show(before)}",
        target,
        max(rates) <= 200,
    )


def rows_life(work: Path, quick: bool) -> list[Row]:
    return [
        row_memory(work, 2000 if quick else 10_000, quick),
        row_reload(work, 10 if quick else 50),
        row_idle_tombstones(work, 2000 if quick else 10_000, 5 if quick else 20, quick),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer documents and samples")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="meshpad-life-") as tmp:
        print(table(rows_life(Path(tmp), args.quick)))


if __name__ == "__main__":
    main()
