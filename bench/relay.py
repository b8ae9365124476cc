"""What a peer costs per message it relays, and how many it can relay.

    python bench/relay.py            # both rows at quick sizes, as a table

Six peers on loopback in a star: five leaves join the hub, peer 0, with
``--advertise none``, so no leaf learns another's address and every
change from a leaf reaches the others through the hub. The hub has 5 links
and 5 browser clients on the document: each keystroke it gets from one
leaf it integrates, stores, sends to its 5 browsers and pushes on to the 4
other leaves.

* **CPU per relayed keystroke**: one person types on leaf 1 at a steady
  250 keys/s, slow enough that each keystroke is a message of its own
  everywhere. The hub's CPU time (``/proc``, user + system, every thread)
  over the run, divided by the keystrokes. Reference: pycrdt applying the
  same keystrokes in this process.
* **Relay saturation**: the hub runs in a cgroup that gives it 10 % of one
  core (CFS quota), and typists on the leaves, each keystroke its own
  frame, offer it more than that can carry. What it delivers to its
  browsers per second, divided by its share of a core, is the rate at
  which it fills one core. A saturated peer takes what has arrived
  together as one batch (one push and one browser frame per document and
  origin), so the row also says how many keystrokes its messages carried.
  The other peers and the clients need the rest of this 2-core machine,
  which is why the hub is limited rather than given a core: nothing here
  could offer it a full core's worth.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import aiohttp
import pycrdt
from common import Row, exists, not_measured, table, wait_sync
from measure import cpu_seconds
from peers import stop_peers
from processes import Peer
from typist import TYPIST_CHARS, Typist
from yclient import YClient, wait_for

LEAVES = 5
BROWSERS = 5
NAME = "relay"
CGROUP_CPU = Path("/sys/fs/cgroup/cpu")  # cgroup v1 CPU controller
HUB_SHARE = 0.10  # of one core, in the saturation row


def _star(work: Path, prefix: str) -> list[Peer]:
    hub = Peer(work / f"{prefix}-hub").start()
    leaves = [Peer(work / f"{prefix}-{i}", args=["--join", hub.address, "--advertise", "none"]) for i in range(LEAVES)]
    for leaf in leaves:
        leaf.start()
    peers = [hub, *leaves]
    try:
        wait_sync(lambda: _links(hub) == LEAVES and all(_links(leaf) == 1 for leaf in leaves), 60, poll=0.1)
        hub.post("/api/docs", {"name": NAME})
        wait_sync(lambda: all(exists(p, NAME) for p in peers), 30, poll=0.1)
    except BaseException:
        stop_peers(peers)
        raise
    return peers


def _links(peer: Peer) -> int:
    return sum(1 for row in peer.get("/api/peers") if row["state"] == "connected")


async def _hub_browsers(http: aiohttp.ClientSession, hub: Peer, first_id: int) -> list[YClient]:
    return [await YClient.connect(http, f"{hub.url}/ws/{NAME}", first_id + i) for i in range(BROWSERS)]


async def _steady(peers: list[Peer], keys: int, rate: float) -> tuple[float, list[float], list[bytes], float]:
    """One person on leaf 1 types *keys* keystrokes at *rate* a second.
    Returns the hub's CPU seconds per keystroke, the leaves', the updates
    typed, and the seconds it took."""
    hub, writer_peer = peers[0], peers[1]
    async with aiohttp.ClientSession() as http:
        writer = await YClient.connect(http, f"{writer_peer.url}/ws/{NAME}", 1)
        readers = await _hub_browsers(http, hub, 100)
        others = [await YClient.connect(http, f"{p.url}/ws/{NAME}", 200 + i) for i, p in enumerate(peers[2:])]
        await wait_for(lambda: all(c.synced for c in [writer, *readers, *others]), 30, "every client synced")
        typed: list[bytes] = []
        sub = writer.doc.observe(lambda event: typed.append(event.update))
        pids = [p.proc.pid for p in peers if p.proc is not None]
        before = [cpu_seconds([pid]) for pid in pids]
        start = time.monotonic()
        for k in range(keys):
            pause = start + k / rate - time.monotonic()
            if pause > 0:
                await asyncio.sleep(pause)  # the typing schedule, not a wait for a condition
            await writer.insert(k, "k")
        await wait_for(lambda: all(len(c.text) == keys for c in [*readers, *others]), 60, "every client has it all")
        seconds = time.monotonic() - start
        used = [(cpu_seconds([pid]) - b) / keys for pid, b in zip(pids, before, strict=True)]
        writer.doc.unobserve(sub)
        for c in [writer, *readers, *others]:
            await c.close()
    return used[0], used[1:], typed, seconds


def _pycrdt_apply(updates: list[bytes]) -> float:
    """Seconds pycrdt takes to apply one of *updates* (best of 5)."""
    best = float("inf")
    for _ in range(5):
        doc = pycrdt.Doc()
        doc.get("content", type=pycrdt.Text)
        t0 = time.perf_counter()
        for update in updates:
            doc.apply_update(update)
        best = min(best, (time.perf_counter() - t0) / len(updates))
    return best


def row_relay_cpu(work: Path, keys: int) -> Row:
    name = f"CPU per relayed keystroke ({keys:,} keys at 250/s; the hub of a star: 5 links, 5 browsers)"
    peers = _star(work, "relay-cpu")
    try:
        hub, leaves, typed, seconds = asyncio.run(_steady(peers, keys, 250.0))
    finally:
        stop_peers(peers)
    apply = _pycrdt_apply(typed)
    return Row(
        name,
        f"{hub * 1000:.3f} ms for the hub, which sent each keystroke to 5 browsers and 4 links "
        f"(the writer's peer {leaves[0] * 1000:.3f} ms, a leaf with one browser "
        f"{sorted(leaves[1:])[len(leaves[1:]) // 2] * 1000:.3f} ms); {keys / seconds:.0f} keys/s typed",
        f"pycrdt applies one of these keystrokes in {apply * 1e6:.1f} µs",
        "≤ 0.5 ms",
        hub <= 0.0005,
    )


@contextmanager
def cpu_share(pid: int, share: float) -> Iterator[None]:
    """Run process *pid* (every thread) in a cgroup limited to *share* of
    one core: a 2 ms quota per period, the period set from the share."""
    group = CGROUP_CPU / f"meshpad-bench-{os.getpid()}"
    group.mkdir()
    try:
        (group / "cpu.cfs_period_us").write_text(str(round(2000 / share)))
        (group / "cpu.cfs_quota_us").write_text("2000")
        (group / "cgroup.procs").write_text(str(pid))
        yield
    finally:
        for task in (group / "cgroup.procs").read_text().split():
            (CGROUP_CPU / "cgroup.procs").write_text(task)  # back to the root group
        group.rmdir()


async def _offer(peers: list[Peer], typists: int, rate: float, seconds: float) -> tuple[float, float, int, int]:
    """*typists* on the leaves type *rate* keystrokes a second each for
    *seconds*, each keystroke its own frame, taking turns evenly. Returns
    the seconds until the hub's browsers had everything, the hub's CPU
    seconds meanwhile, the keystrokes, and the frames its browsers got."""
    clients = []
    for i in range(typists):
        host, port = peers[1 + i % LEAVES].address.rsplit(":", 1)
        clients.append(await Typist.connect(host, int(port), f"/ws/{NAME}", 10_000 + i, TYPIST_CHARS[i]))
    hub = peers[0].proc
    assert hub is not None
    async with aiohttp.ClientSession() as http:
        readers = await _hub_browsers(http, peers[0], 100)
        await wait_for(lambda: all(r.synced for r in readers), 60, "the hub's browsers synced")
        keys = round(seconds * rate)
        total = keys * typists
        frames0 = sum(len(r.frames) for r in readers)
        cpu0 = cpu_seconds([hub.pid])
        start = time.monotonic()
        for k in range(keys):
            for i, typist in enumerate(clients):
                pause = start + k / rate + i / (rate * typists) - time.monotonic()
                if pause > 0:
                    await asyncio.sleep(pause)  # the typing schedule, not a wait for a condition
                typist.key()
        await wait_for(lambda: all(len(r.text) == total for r in readers), 300, "the hub's browsers have it all")
        took = time.monotonic() - start
        cpu = cpu_seconds([hub.pid]) - cpu0
        frames = sum(len(r.frames) for r in readers) - frames0
        for r in readers:
            await r.close()
    await asyncio.gather(*(t.close() for t in clients))
    return took, cpu, total, frames


def row_relay_saturation(work: Path, seconds: float) -> Row:
    typists, rate = 40, 20.0
    name = (
        f"relay saturation (the hub limited to {HUB_SHARE:.0%} of a core; {typists} typists on the leaves "
        f"offer {typists * rate:,.0f} keys/s for {seconds:g} s)"
    )
    target = "≥ 5,000 keys/s on one core"
    if not os.access(CGROUP_CPU / "cgroup.procs", os.W_OK):
        return not_measured(name, target, f"needs root and the cgroup v1 CPU controller at {CGROUP_CPU}")
    peers = _star(work, "relay-flood")
    try:
        assert peers[0].proc is not None
        with cpu_share(peers[0].proc.pid, HUB_SHARE):
            took, cpu, total, frames = asyncio.run(_offer(peers, typists, rate, seconds))
    finally:
        stop_peers(peers)
    per_core = total / took / HUB_SHARE
    return Row(
        name,
        f"{per_core:,.0f} keys/s per core: it delivered {total:,} keystrokes to each of its 5 browsers in "
        f"{took:.1f} s ({total / took:,.0f}/s) using {cpu / took:.1%} of a core; "
        f"{total * BROWSERS / max(1, frames):.1f} keystrokes per browser frame",
        "the CPU row: one keystroke per message",
        target,
        per_core >= 5000,
    )


def main() -> None:
    import tempfile

    with tempfile.TemporaryDirectory(prefix="meshpad-bench-") as tmp:
        work = Path(tmp)
        print(table([row_relay_cpu(work, 1000), row_relay_saturation(work, 5.0)]))


if __name__ == "__main__":
    main()
