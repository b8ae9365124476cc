"""The fan-out row: 20 real peers on loopback, joined at random through
single addresses; one client types, one client on each other peer reads,
and each keystroke is timed until the farthest client has it.

    python bench/fanout.py             # 100 keystrokes, as a table

Latencies are taken at the clients: a keystroke has arrived at a client when
the state vector of the client's replica first covers it (bench/measure.py),
so a frame that carries several keystrokes, or one merged by a peer, is
attributed exactly.
"""

from __future__ import annotations

import asyncio
import os
import random
import tempfile
import time
from pathlib import Path

import aiohttp
from common import Row, percentile, table
from measure import Arrivals, MachineLoad, ms
from peers import hops_from, mesh_ready, start_peers, stop_peers
from processes import Peer
from yclient import YClient, wait_for

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
        wire = sum(p.get("/healthz")["peer_wire_bytes_out"] for p in peers)
        with MachineLoad([p.proc.pid for p in peers if p.proc is not None]) as load:
            samples = asyncio.run(_fanout_keys(peers[0].url, [p.url for p in peers[1:]], "fanout", keys))
        wire = sum(p.get("/healthz")["peer_wire_bytes_out"] for p in peers) - wire
    except (TimeoutError, AssertionError, OSError) as exc:
        return Row(name, f"failed: {exc}", reference, target, False)
    finally:
        stop_peers(peers)
    p50, p99 = percentile(samples, 50), percentile(samples, 99)
    return Row(
        name,
        f"p50 {ms(p50)} ms, p99 {ms(p99)} ms (farthest peer {hops} links away at the start); per keystroke "
        f"the 20 peers used {ms(load.used / keys)} ms of CPU in all and sent each other {wire / keys:,.0f} bytes "
        f"(idle traffic included); the machine's {os.cpu_count()} cores were {load.busy:.0%} busy",
        reference,
        target,
        p99 <= 0.020,
    )


if __name__ == "__main__":
    with tempfile.TemporaryDirectory(prefix="meshpad-bench-") as tmp:
        print(table([row_fanout(Path(tmp), 100, "keystroke latency row: not measured here (bench/run.py)")]))
