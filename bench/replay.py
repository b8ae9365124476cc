"""A real editing trace replayed at full speed by three people on three peers.

    python bench/replay.py              # the first 30,000 edits
    python bench/replay.py --edits 0    # the whole trace (259,778 edits)

The automerge-paper trace becomes a three-person session
(``bench/node/sessions.mjs``): the people take turns of 40 consecutive
edits, each with a Yjs document of their own, each seeing every earlier
turn before typing. Each person's client is on a peer of their own (three
peers on loopback) and sends its updates as fast as its connection takes
them, without waiting for the others: every turn depends on the one before
it, typed by someone else on another peer, so a client keeps running ahead
of its causes. The peers hold such a client back (they stop reading it)
until the causes arrive.

The row counts client disconnects (target: none), the in-band resyncs the
peers asked for (sync step 1 after the first), and checks that every peer
ends with the trace's final text. A client answers the peer's sync step 1
as a Yjs client does, with its whole state: the trace up to the last edit
it typed (it has seen every earlier turn). Reference: pycrdt applying the same updates in typing order
in this process.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import struct
import subprocess
import tempfile
import time
from pathlib import Path

import aiohttp
import pycrdt
from common import NODE_DIR, TRACE, Row, exists, frame_update, npm_install, table, wait_sync
from processes import Peer
from yclient import varuint

PERSONS = 3
TURN = 40
NAME = "trace"


def encode_sessions(edits: int | None, work: Path) -> tuple[list[tuple[int, bytes]], str]:
    """The trace as (person, update) in the order typed, and its final text."""
    out = work / "sessions.bin"
    args = ["node", "sessions.mjs", str(TRACE), str(out), str(PERSONS), str(TURN)]
    if edits:
        args.append(str(edits))
    result = json.loads(subprocess.run(args, cwd=NODE_DIR, check=True, capture_output=True).stdout)
    raw = out.read_bytes()
    updates, pos = [], 0
    while pos < len(raw):
        person, n = struct.unpack_from("<BI", raw, pos)
        updates.append((person, raw[pos + 5 : pos + 5 + n]))
        pos += 5 + n
    return updates, result["text"]


class ReplayClient:
    """One person's connection: sends what they typed, reads everything the
    peer sends (a client that does not read would be closed as too slow),
    and answers the peer's sync step 1 with its state."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse, trace: list[bytes], typed: list[int]) -> None:
        self.ws = ws
        self.trace = trace
        self.typed = typed  # indexes into the trace of this person's updates
        self.sent = 0
        self.step1s = 0
        self.frames = 0
        self.closed_early = False
        self.close_reason = ""
        self.done = False
        self.synced = asyncio.Event()
        self._state = pycrdt.Doc()  # the trace up to this person's last edit sent
        self._applied = 0
        self._reader = asyncio.get_running_loop().create_task(self._read())

    def state(self) -> bytes:
        """Everything up to this person's last edit sent."""
        return self._state.get_update()

    async def _read(self) -> None:
        try:
            async for msg in self.ws:
                if msg.type == aiohttp.WSMsgType.CLOSE:
                    self.close_reason = f"{msg.data} {msg.extra}"
                if msg.type != aiohttp.WSMsgType.BINARY:
                    continue
                data = bytes(msg.data)
                self.frames += 1
                if data[:2] == b"\x00\x00":  # sync step 1
                    self.step1s += 1
                    state = self.state()
                    await self.ws.send_bytes(b"\x00\x01" + varuint(len(state)) + state)
                    self.synced.set()
        except (aiohttp.ClientError, ConnectionError) as exc:
            self.close_reason = self.close_reason or f"reading: {exc!r}"
        finally:
            if not self.done:
                self.closed_early = True
                self.close_reason = self.close_reason or f"closed with {self.ws.close_code}"
            self.synced.set()

    async def type_all(self) -> None:
        await self.synced.wait()  # the first sync, before typing
        try:
            for i in self.typed:
                while self._applied <= i:  # in typing order: every cause is there
                    self._state.apply_update(self.trace[self._applied])
                    self._applied += 1
                self.sent += 1
                await self.ws.send_bytes(frame_update(self.trace[i]))
        except (aiohttp.ClientError, ConnectionError) as exc:
            self.closed_early = True
            self.close_reason = self.close_reason or f"sending: {exc!r} (close code {self.ws.close_code})"

    async def close(self) -> None:
        self.done = True
        await self.ws.close()
        await self._reader


async def _replay(peers: list[Peer], updates: list[tuple[int, bytes]], final: str) -> tuple[float, list[ReplayClient]]:
    trace = [update for _, update in updates]
    typed: list[list[int]] = [[] for _ in range(PERSONS)]
    for i, (person, _) in enumerate(updates):
        typed[person].append(i)
    async with aiohttp.ClientSession() as http:
        clients = []
        for peer, mine in zip(peers, typed, strict=True):
            ws = await http.ws_connect(f"{peer.url}/ws/{NAME}", max_msg_size=0, compress=0)
            clients.append(ReplayClient(ws, trace, mine))
        start = time.perf_counter()
        await asyncio.gather(*(c.type_all() for c in clients))
        deadline = time.monotonic() + 300
        for peer in peers:
            while await _text(http, peer) != final:
                if time.monotonic() > deadline or any(c.closed_early for c in clients):
                    raise AssertionError(f"{peer.url} does not hold the trace's final text")
                await asyncio.sleep(0.2)
        seconds = time.perf_counter() - start
        for c in clients:
            await c.close()
    return seconds, clients


async def _text(http: aiohttp.ClientSession, peer: Peer) -> str:
    async with http.get(f"{peer.url}/api/docs/{NAME}") as resp:
        return str((await resp.json())["text"])


def _reference(updates: list[tuple[int, bytes]]) -> float:
    doc = pycrdt.Doc()
    start = time.perf_counter()
    for _, update in updates:
        doc.apply_update(update)
    return time.perf_counter() - start


def row_replay(work: Path, edits: int | None) -> Row:
    updates, final = encode_sessions(edits, work)
    name = f"trace replay ({len(updates):,} updates, {PERSONS} people on {PERSONS} peers, turns of {TURN} edits)"
    target = "0 disconnects, final text everywhere"
    first = Peer(work / "replay-0").start()
    peers = [first]
    try:
        peers += [Peer(work / f"replay-{i}", args=["--join", first.address]).start() for i in range(1, PERSONS)]
        first.post("/api/docs", {"name": NAME})
        wait_sync(lambda: all(exists(p, NAME) for p in peers), 30, poll=0.1)
        seconds, clients = asyncio.run(_replay(peers, updates, final))
    except (AssertionError, OSError, TimeoutError) as exc:
        return Row(name, f"failed: {exc}", "—", target, False)
    finally:
        for peer in peers:
            peer.stop()
    disconnects = sum(c.closed_early for c in clients)
    reasons = "; ".join(sorted({c.close_reason for c in clients if c.closed_early}))
    resyncs = sum(max(0, c.step1s - 1) for c in clients)
    reference = _reference(updates)
    return Row(
        name,
        f"{disconnects} client disconnects{f' ({reasons})' if reasons else ''}, {resyncs} in-band resyncs; "
        f"every peer holds the final text "
        f"{seconds:.1f} s after the clients started ({len(updates) / seconds:,.0f} updates/s)",
        f"pycrdt applies the same updates in {reference:.2f} s ({len(updates) / reference:,.0f}/s)",
        target,
        disconnects == 0,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--edits", type=int, default=30_000, help="edits of the trace to replay (0: all)")
    args = parser.parse_args()
    npm_install()
    with tempfile.TemporaryDirectory(prefix="meshpad-replay-") as tmp:
        print(table([row_replay(Path(tmp), args.edits or None)]))


if __name__ == "__main__":
    main()
