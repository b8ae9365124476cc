"""Meshpad benchmarks: programs that print tables, never tests.

    python bench/run.py --quick        # under 5 minutes on 2 cores, prints the table
    python bench/run.py                # the full run; writes docs/benchmarks.md

Every row names the reference it is compared with, measured in the same run
(shared machines drift; ratios hold). Needs node and npm for the reference
server and the trace encoder (installed from bench/node/package.json and its
lockfile on first use), and Debian's chromium for the browser rows.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import aiohttp
import pycrdt
from browser import rows_browser
from catchup import row_catchup
from common import (
    NODE_DIR,
    ROOT,
    Row,
    encode_trace,
    exists,
    frame_update,
    get_json,
    npm_install,
    percentile,
    post_json,
    rss_mb,
    table,
    wait_sync,
)
from fanout import row_fanout
from heal import row_heal
from history import rows_history
from join import row_join
from life import rows_life
from load import row_load
from processes import Peer, free_port
from relay import row_relay_cpu, row_relay_saturation
from replay import row_replay
from rounds import row_rounds
from search import rows_search
from yclient import YClient, read_varuint, wait_for

# -- rows -------------------------------------------------------------------------


async def pipeline(url: str, updates: list[bytes], acks: bool) -> float:
    """Send every update in one pipelined burst; return seconds until the
    server has processed the last one (Meshpad: acknowledged as stored; the
    Yjs server: answered a sync step 1 sent after them)."""
    frames = [frame_update(u) for u in updates]
    async with aiohttp.ClientSession() as http:
        ws = await http.ws_connect(url, max_msg_size=0, compress=0)
        start = time.perf_counter()
        for f in frames:
            await ws.send_bytes(f)
        if acks:
            target = len(frames)
            async for msg in ws:
                data = bytes(msg.data)
                if data[0] == 100:
                    n, _ = read_varuint(data, 1)
                    if n >= target:
                        break
        else:
            await ws.send_bytes(b"\x00\x00\x01\x00")  # sync step 1 with an empty state vector
            async for msg in ws:
                data = bytes(msg.data)
                if data[:2] == b"\x00\x01":
                    break
        elapsed = time.perf_counter() - start
        await ws.close()
    return elapsed


def row_ingest(updates: list[bytes], final: str, work: Path) -> tuple[list[Row], float]:
    n = len(updates)
    # Floor: pycrdt applying the same updates in one process.
    doc: pycrdt.Doc = pycrdt.Doc()
    start = time.perf_counter()
    for u in updates:
        doc.apply_update(u)
    floor = n / (time.perf_counter() - start)
    # The stock Yjs server.
    port = free_port()
    node = subprocess.Popen(
        ["node", "node_modules/y-websocket/bin/server.js"],
        cwd=NODE_DIR,
        env=dict(os.environ, HOST="127.0.0.1", PORT=str(port)),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "the Yjs server did not start"
                time.sleep(0.05)
        yjs = n / asyncio.run(pipeline(f"ws://127.0.0.1:{port}/bench", updates, acks=False))
    finally:
        node.terminate()
        node.wait()
    # Meshpad: until stored.
    peer = Peer(work / "ingest").start()
    try:
        seconds = asyncio.run(pipeline(f"ws://127.0.0.1:{peer.port}/ws/bench?acks=1", updates, acks=True))
        ours = n / seconds
        text = get_json(f"{peer.url}/api/docs/bench")["text"]  # type: ignore[index]
        assert text == final, "the peer does not hold the trace's text"
    finally:
        peer.stop()
    met = ours >= yjs and ours >= 25_000 and ours >= 0.5 * floor
    row = Row(
        f"ingest ({n:,} edits, until stored)",
        f"{ours:,.0f} updates/s ({ours / floor:.2f} × pycrdt in-process)",
        f"Yjs server {yjs:,.0f}/s; pycrdt in-process {floor:,.0f}/s",
        "≥ Yjs server, ≥ 25,000/s and ≥ 0.5 × pycrdt",
        met,
    )
    return [row], seconds


def row_end_to_end(updates: list[bytes], final: str, work: Path, ingest_seconds: float) -> Row:
    a = Peer(work / "e2e-a").start()
    b = Peer(work / "e2e-b", args=["--join", a.address]).start()
    try:
        wait_sync(lambda: any(r["state"] == "connected" for r in get_json(f"{b.url}/api/peers")), 20)  # type: ignore[index, union-attr]
        post_json(f"{a.url}/api/docs", {"name": "e2e"})
        wait_sync(lambda: exists(b, "e2e"), 20)
        start = time.perf_counter()
        asyncio.run(pipeline(f"ws://127.0.0.1:{a.port}/ws/e2e?acks=1", updates, acks=True))
        a_done = time.perf_counter() - start
        wait_sync(lambda: get_json(f"{b.url}/api/docs/e2e")["length"] == len(final), 600, poll=0.02)  # type: ignore[index]
        b_done = time.perf_counter() - start
        assert get_json(f"{b.url}/api/docs/e2e")["text"] == final  # type: ignore[index]
    finally:
        b.stop()
        a.stop()
    return Row(
        "end-to-end (same trace, A → B)",
        f"B done after {b_done:.2f} s ({b_done / a_done:.2f} × A's {a_done:.2f} s)",
        f"ingest row: {ingest_seconds:.2f} s",
        "B within 1.5 × A",
        b_done <= 1.5 * a_done,
    )


async def loopback_round_trips(count: int) -> list[float]:
    from aiohttp import web

    async def echo(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        async for msg in ws:
            await ws.send_bytes(msg.data)
        return ws

    app = web.Application()
    app.router.add_get("/", echo)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    samples = []
    async with aiohttp.ClientSession() as http:
        ws = await http.ws_connect(f"http://127.0.0.1:{port}/")
        for _ in range(count):
            start = time.perf_counter()
            await ws.send_bytes(b"\x00\x02\x1bxxxxxxxxxxxxxxxxxxxxxxxxxxx")
            await ws.receive()
            samples.append(time.perf_counter() - start)
        await ws.close()
    await runner.cleanup()
    return samples


async def keystrokes(a: Peer, b: Peer, count: int) -> tuple[list[float], int, int]:
    """Type *count* characters on A one at a time; time until B's client has
    each. Also returns A's wire bytes for the keystrokes and the idle bytes
    of a quiet interval as long."""
    async with aiohttp.ClientSession() as http:
        writer = await YClient.connect(http, f"{a.url}/ws/keys", 71)
        reader = await YClient.connect(http, f"{b.url}/ws/keys", 72)
        await wait_for(lambda: writer.synced and reader.synced, 10)
        samples = []
        wire0 = get_json(f"{a.url}/healthz")["peer_wire_bytes_out"]  # type: ignore[index]
        t0 = time.perf_counter()
        for i in range(count):
            before = len(reader.frames)
            start = time.perf_counter()
            await writer.insert(i, "k")
            await reader.wait_frames(before + 1)
            assert len(reader.frames) > before, "the reading client was disconnected"
            samples.append(time.perf_counter() - start)
        typing = time.perf_counter() - t0
        wire1 = get_json(f"{a.url}/healthz")["peer_wire_bytes_out"]  # type: ignore[index]
        await asyncio.sleep(typing)
        wire2 = get_json(f"{a.url}/healthz")["peer_wire_bytes_out"]  # type: ignore[index]
        await writer.close()
        await reader.close()
    return samples, int(wire1 - wire0), int(wire2 - wire1)  # type: ignore[operator]


def rows_latency_and_wire(work: Path, count: int) -> list[Row]:
    floor = asyncio.run(loopback_round_trips(count))
    a = Peer(work / "lat-a").start()
    b = Peer(work / "lat-b", args=["--join", a.address]).start()
    try:
        wait_sync(lambda: any(r["state"] == "connected" for r in get_json(f"{b.url}/api/peers")), 20)  # type: ignore[index, union-attr]
        post_json(f"{a.url}/api/docs", {"name": "keys"})
        wait_sync(lambda: exists(b, "keys"), 20)
        samples, typed_bytes, idle_bytes = asyncio.run(keystrokes(a, b, count))
    finally:
        b.stop()
        a.stop()
    p50, p99 = percentile(samples, 50) * 1000, percentile(samples, 99) * 1000
    f50, f99 = percentile(floor, 50) * 1000, percentile(floor, 99) * 1000
    per_key = (typed_bytes - idle_bytes) / count
    doc: pycrdt.Doc = pycrdt.Doc()
    text = doc.get("content", type=pycrdt.Text)
    sizes: list[int] = []
    doc.observe(lambda e: sizes.append(len(e.update)))
    for i in range(200):
        text.insert(i, "k")
    bare = statistics.mean(sizes)
    return [
        Row(
            f"keystroke latency ({count:,} keys, A → B)",
            f"p50 {p50:.2f} ms, p99 {p99:.2f} ms",
            f"loopback WebSocket round trip p50 {f50:.3f} ms, p99 {f99:.3f} ms",
            "p50 ≤ 2 ms, p99 ≤ 5 ms",
            p50 <= 2 and p99 <= 5,
        ),
        Row(
            "wire cost per keystroke (A → B)",
            f"{per_key:.1f} bytes",
            f"bare Yjs update {bare:.1f} bytes (pycrdt client ids)",
            "≤ 64 bytes",
            per_key <= 64,
        ),
    ]


def row_idle(work: Path, docs: int, seconds: float) -> Row:
    a = Peer(work / "idle-a").start()
    b = Peer(work / "idle-b", args=["--join", a.address]).start()
    try:
        for i in range(docs):
            post_json(f"{a.url}/api/docs", {"name": f"d{i:05d}", "text": f"document {i}"})
        wait_sync(lambda: len(get_json(f"{b.url}/api/docs")) == docs, 120)  # type: ignore[arg-type]
        time.sleep(3)  # let the last anti-entropy rounds settle
        out0 = get_json(f"{a.url}/healthz")["peer_wire_bytes_out"]  # type: ignore[index]
        time.sleep(seconds)
        out1 = get_json(f"{a.url}/healthz")["peer_wire_bytes_out"]  # type: ignore[index]
    finally:
        b.stop()
        a.stop()
    rate = (out1 - out0) / seconds  # type: ignore[operator]
    return Row(
        f"idle cost ({docs:,} documents in sync)",
        f"{rate:.0f} B/s sent per peer",
        "—",
        "≤ 200 B/s",
        rate <= 200,
    )


def row_cold_start(work: Path, docs: int) -> Row:
    from crdt.document import Document
    from crdt.store import Write
    from server.sqlite_store import SQLiteStore

    data = work / "cold"
    store = SQLiteStore(data)
    batch = []
    for i in range(docs):
        doc = Document(f"c{i:05d}", i + 1)
        for change in doc.edit("seed", insert=f"document number {i}\n" * 5):
            batch.append(Write(doc.name, change.update, length=len(doc.text), at=time.time()))
    store.write(batch)
    store.close()
    peer = Peer(data)
    start = time.perf_counter()
    peer.start(timeout=120)
    seconds = time.perf_counter() - start
    assert peer.proc is not None
    memory = rss_mb(peer.proc.pid)
    count = len(get_json(f"{peer.url}/api/docs"))  # type: ignore[arg-type]
    peer.stop()
    assert count == docs
    return Row(
        f"cold start ({docs:,} stored documents)",
        f"{seconds:.2f} s to /healthz, {memory:.0f} MB resident",
        "—",
        "≤ 3 s, ≤ 300 MB",
        seconds <= 3 and memory <= 300,
    )


# -- main ---------------------------------------------------------------------------


def machine() -> str:
    node = subprocess.run(["node", "--version"], capture_output=True, text=True).stdout.strip()
    return (
        f"{os.cpu_count()} cores, {platform.processor() or platform.machine()}, Python {platform.python_version()}, "
        f"pycrdt {pycrdt.__version__ if hasattr(pycrdt, '__version__') else '0.14.13'}, node {node}"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a smaller run (under 5 minutes), table only")
    args = parser.parse_args()
    if shutil.which("node") is None:
        print("bench/run.py needs node and npm for the reference server", file=sys.stderr)
        return 2
    npm_install()
    quick = args.quick
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="meshpad-bench-") as tmp:
        work = Path(tmp)
        updates, final = encode_trace(30_000 if quick else None, work)
        ingest_rows, ingest_seconds = row_ingest(updates, final, work)
        rows += ingest_rows
        rows.append(row_end_to_end(updates, final, work, ingest_seconds))
        latency_rows = rows_latency_and_wire(work, 500 if quick else 2000)
        rows += latency_rows
        keystroke = f"keystroke latency row: {latency_rows[0].measured}"
        rows.append(row_fanout(work, 100 if quick else 300, keystroke))
        rows.append(row_heal(work, 5 if quick else 10))
        rows.append(row_rounds(100, 10 if quick else 40))
        if not quick:
            rows.append(row_rounds(1000, 5))
        rows.append(row_catchup(work))
        rows.append(row_join(work, 500))
        if not quick:
            rows.append(row_join(work, 10_000))
        rows.append(row_replay(work, 30_000 if quick else None))
        rows.append(row_relay_cpu(work, 1000 if quick else 3000))
        rows.append(row_relay_saturation(work, 8 if quick else 20))
        rows.append(row_idle(work, 200 if quick else 1000, 5 if quick else 20))
        rows.append(row_load(work, 8 if quick else 20, keystroke))
        rows.append(row_cold_start(work, 2000 if quick else 10_000))
        rows += rows_life(work, quick)
        rows += rows_search(work, quick)
        rows += rows_history(updates, work)
        rows += rows_browser(work, quick, keystroke)
    out = table(rows)
    print(out, flush=True)
    if not quick:
        report = ROOT / "docs" / "benchmarks.md"
        # The run replaces the table; the analysis below it (from the first
        # "## " heading on) is kept.
        old = report.read_text() if report.exists() else ""
        analysis = old[old.index("\n## ") :] if "\n## " in old else ""
        report.write_text(
            "# Benchmarks\n\n"
            f"Full run of `python bench/run.py` on {time.strftime('%Y-%m-%d')}: {machine()}.\n"
            "References are measured in the same run. Reproduce with `python bench/run.py` "
            "(`--quick` for a smaller run that prints the table only).\n\n" + out + "\n" + analysis
        )
        print(f"\nwrote {report}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
