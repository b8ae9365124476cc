"""Rows over many real peers: fan-out latency across 20 peers, healing after a
real network partition (Linux network namespaces), load from 50 clients on
one peer, and the bytes a restarted peer receives to catch up.

    python bench/netrows.py            # the four rows at quick sizes, as a table (needs root
                                       # for the heal row's network namespaces)

Each row starts its own ``meshpad serve`` processes and stops them (and
removes its namespaces) whatever happens. Latencies are taken at the
clients: a keystroke has arrived at a client when the state vector of the
client's replica first covers it. pycrdt hands each applied update's state
vector to an observer as the update is applied, so a frame that carries
several keystrokes, or one merged by a peer, is attributed exactly.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
import random
import select
import socket
import string
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pycrdt
from common import ROOT, Row, exists, frame_update, not_measured, percentile, table, wait_sync
from processes import TEST_NETWORK_KEY, Peer, stop_process
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


def distances(links: list[set[int]], origin: int) -> dict[int, int]:
    """Links on the shortest path from *origin* to each peer it can reach."""
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
    return dist


def islands(links: list[set[int]]) -> list[int]:
    """Sizes of the overlay's connected parts, largest first."""
    both = [set(s) for s in links]
    for i, s in enumerate(links):
        for j in s:
            both[j].add(i)  # a link counts for both ends even if one side's view lags
    left = set(range(len(links)))
    sizes = []
    while left:
        part = set(distances(both, min(left)))
        sizes.append(len(part))
        left -= part
    return sorted(sizes, reverse=True)


def overlay(peers: list[Peer]) -> list[set[int]]:
    index = {p.address: i for i, p in enumerate(peers)}
    return [{index[a] for a in connected_addresses(p) if a in index} for p in peers]


def mesh_ready(peers: list[Peer], name: str, timeout: float) -> None:
    """Every peer has a connected link; then *name*, created on the first
    peer, exists on every peer. Raises AssertionError saying how far it got."""
    try:
        wait_sync(lambda: all(connected_addresses(p) for p in peers), timeout, poll=0.2)
        peers[0].post("/api/docs", {"name": name})
        wait_sync(lambda: all(exists(p, name) for p in peers), timeout, poll=0.2)
    except TimeoutError:
        having = sum(1 for p in peers if exists(p, name))
        parts = islands(overlay(peers))
        raise AssertionError(
            f"after {timeout:g} s the document was on {having} of {len(peers)} peers; "
            f"overlay in {len(parts)} parts of {', '.join(map(str, parts))} peers"
        ) from None


def hops_from(peers: list[Peer], origin: int) -> int:
    """Links between *origin* and the peer farthest from it, now (-1 when
    some peer cannot be reached)."""
    dist = distances(overlay(peers), origin)
    return max(dist.values()) if len(dist) == len(peers) else -1


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f}"


def cpu_seconds(pids: list[int]) -> float:
    """User and system CPU time the processes have used so far."""
    ticks = 0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        ticks += int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


class MachineLoad:
    """How busy all the machine's cores were between start and stop (other
    programs included), and how much CPU some processes used meanwhile."""

    def __init__(self, pids: list[int]) -> None:
        self.pids = pids
        self.busy = self.used = self.seconds = 0.0

    @staticmethod
    def _stat() -> tuple[float, float]:
        ticks = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        idle = ticks[3] + ticks[4]
        return sum(ticks) - idle, float(sum(ticks))

    def __enter__(self) -> MachineLoad:
        self._t0, self._cpu0, self._stat0 = time.monotonic(), cpu_seconds(self.pids), self._stat()
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.monotonic() - self._t0
        self.used = cpu_seconds(self.pids) - self._cpu0
        busy, total = self._stat()
        self.busy = (busy - self._stat0[0]) / max(1.0, total - self._stat0[1])

    def describe(self, who: str) -> str:
        return (
            f"{who} used {self.used / self.seconds:.0%} of a core; the machine's {os.cpu_count()} cores were "
            f"{self.busy:.0%} busy (other programs included)"
        )


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


# -- agent: clients in a process of their own ----------------------------------------


class Agent:
    """Clients and API calls in a process of their own: for the heal row inside
    a network namespace (the only place its peers can be reached), for the load
    row so that the observers' clock is not held up by the typists. Reads one
    JSON command per line on stdin and answers each with one JSON line on
    stdout; an error is answered as ``{"error": ...}``."""

    def __init__(self, http: aiohttp.ClientSession) -> None:
        self.http = http
        self.urls: list[str] = []
        self.token_files: list[str | None] = []
        self.name = ""
        self.clients: list[YClient] = []
        self.watched: list[Arrivals] = []

    def headers(self, i: int) -> dict[str, str]:
        """The browser token: a peer answers its API from another address only with it."""
        path = self.token_files[i]
        if path is None or not Path(path).exists():
            return {}
        return {"Authorization": f"Bearer {Path(path).read_text().strip()}"}

    async def get(self, i: int, path: str) -> Any:
        async with self.http.get(self.urls[i] + path, headers=self.headers(i)) as resp:
            if resp.status == 404:
                return None
            resp.raise_for_status()
            return await resp.json()

    async def do_attach(self, urls: list[str], token_files: list[str | None], name: str) -> dict[str, Any]:
        self.urls, self.token_files, self.name = urls, token_files, name
        return {}

    async def do_ready(self, timeout: float) -> dict[str, Any]:
        """Wait until every peer answers /healthz."""

        async def up(i: int) -> bool:
            try:
                return (await self.get(i, "/healthz"))["status"] == "ok"
            except (aiohttp.ClientError, OSError):
                return False

        deadline = time.monotonic() + timeout
        while not all(await asyncio.gather(*(up(i) for i in range(len(self.urls))))):
            if time.monotonic() > deadline:
                raise TimeoutError(f"peers not up after {timeout} s")
            await asyncio.sleep(0.1)
        return {}

    async def do_status(self) -> dict[str, Any]:
        """Per peer: the addresses of its connected links, and the digest of
        the document's text (None while the peer lacks the document)."""

        async def one(i: int) -> dict[str, Any]:
            rows = await self.get(i, "/api/peers")
            doc = await self.get(i, f"/api/docs/{self.name}")
            return {
                "links": [r["address"] for r in rows if r["state"] == "connected"],
                "text": None if doc is None else hashlib.sha256(doc["text"].encode()).hexdigest(),
            }

        return {"peers": await asyncio.gather(*(one(i) for i in range(len(self.urls))))}

    async def do_create(self, text: str) -> dict[str, Any]:
        url = f"{self.urls[0]}/api/docs"
        body = {"name": self.name, "text": text}
        async with self.http.post(url, json=body, headers=self.headers(0)) as resp:
            resp.raise_for_status()
        return {}

    async def do_connect(self, first_id: int) -> dict[str, Any]:
        """One client per peer (with save acknowledgements), each synced."""
        for i, url in enumerate(self.urls):
            ws = await self.http.ws_connect(f"{url}/ws/{self.name}?acks=1", headers=self.headers(i))
            client = YClient(ws, first_id + i)
            await client.send(pycrdt.create_sync_message(client.doc))
            self.clients.append(client)
            self.watched.append(Arrivals(client.doc))
        await wait_for(lambda: all(c.synced for c in self.clients), 30, "clients synced")
        return {}

    async def do_edit(self, seconds: float, rate: float, seed: int) -> dict[str, Any]:
        """Every client edits at *rate* operations a second for *seconds*
        (due times fixed in advance, clients taking turns): four in five
        insert one character at a random place, one in five deletes one.
        Returns when the peers have stored every edit."""
        rng = random.Random(seed)
        n = len(self.clients)
        t0 = time.monotonic() + 0.1
        last = [0] * n
        ops = 0
        for k in range(round(seconds * rate)):
            for i, client in enumerate(self.clients):
                delay = t0 + k / rate + i / (rate * n) - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                size = len(client.text)  # ASCII: characters are bytes
                if rng.random() < 0.8 or size == 0:
                    last[i] = await client.insert(rng.randint(0, size), string.ascii_letters[rng.randrange(52)])
                else:
                    at = rng.randrange(size)
                    del client.text[at : at + 1]
                    last[i] = await client.flush()
                ops += 1
        await wait_for(lambda: all(c.saved >= s for c, s in zip(self.clients, last, strict=True)), 30, "edits stored")
        return {"ops": ops}

    async def do_contents(self, expect: str) -> dict[str, Any]:
        """Per client: digest of its text and when its replica last changed,
        once every client holds the text with digest *expect* (at most 10 s)."""

        def digest(c: YClient) -> str:
            return hashlib.sha256(c.content.encode()).hexdigest()

        with suppress(AssertionError):
            await wait_for(lambda: all(digest(c) == expect for c in self.clients), 10, "clients up to date")
        return {
            "clients": [
                {"text": digest(c), "last_change": w.last_change}
                for c, w in zip(self.clients, self.watched, strict=True)
            ]
        }

    async def do_arrivals(self, expect: dict[str, int], timeout: float) -> dict[str, Any]:
        """Wait (at most *timeout*) until every client has *expect*[client]
        items of each of those Yjs clients; return when each item arrived."""
        wanted = {int(c): n for c, n in expect.items()}
        with suppress(AssertionError):
            await wait_for(
                lambda: all(w.count(c) >= n for w in self.watched for c, n in wanted.items()), timeout, "arrivals"
            )
        return {"times": [{str(c): w.times.get(c, []) for c in wanted} for w in self.watched]}

    async def do_quit(self) -> dict[str, Any]:
        for c in self.clients:
            await c.close()
        self.clients = []
        return {}


async def agent_main() -> None:
    loop = asyncio.get_running_loop()
    stdin = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(stdin), sys.stdin)
    async with aiohttp.ClientSession() as http:
        agent = Agent(http)
        while line := await stdin.readline():
            command = json.loads(line)
            try:
                answer = await getattr(agent, "do_" + command.pop("cmd"))(**command)
            except (aiohttp.ClientError, OSError, TimeoutError, AssertionError, KeyError) as exc:
                answer = {"error": f"{type(exc).__name__}: {exc}"}
            print(json.dumps(answer), flush=True)


class AgentProcess:
    """The benchmark's side of an :class:`Agent`: ``call`` sends a command
    and returns the answer (raising on an error or a silent agent)."""

    def __init__(self, log: Path, prefix: list[str] | None = None) -> None:
        self.log = log
        with open(log, "ab") as err:
            self.proc = subprocess.Popen(
                [*(prefix or []), sys.executable, str(Path(__file__).resolve()), "agent"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=err,
                text=True,
            )

    def send(self, cmd: str, **args: Any) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps({"cmd": cmd, **args}) + "\n")
        self.proc.stdin.flush()

    def receive(self, timeout: float = 120) -> dict[str, Any]:
        assert self.proc.stdout is not None
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        line = self.proc.stdout.readline() if ready else ""
        if not line:
            tail = self.log.read_text(errors="replace")[-2000:]
            raise AssertionError(f"agent did not answer (exit code {self.proc.poll()}): {tail}")
        answer: dict[str, Any] = json.loads(line)
        if "error" in answer:
            raise AssertionError(f"agent: {answer['error']}")
        return answer

    def call(self, cmd: str, **args: Any) -> dict[str, Any]:
        self.send(cmd, **args)
        return self.receive()

    def stop(self) -> None:
        if self.proc.poll() is None:
            with suppress(OSError, AssertionError):
                self.call("quit")
            assert self.proc.stdin is not None
            self.proc.stdin.close()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def call_all(agents: list[AgentProcess], cmd: str, **args: Any) -> list[dict[str, Any]]:
    """The same command to every agent at once; their answers in order."""
    for a in agents:
        a.send(cmd, **args)
    return [a.receive() for a in agents]


# -- load ---------------------------------------------------------------------------

TYPIST_CHARS = string.ascii_letters[:50]  # one distinct character per typist


def masked_frame(payload: bytes) -> bytes:
    """One binary WebSocket frame as a client sends it (RFC 6455: masked)."""
    n = len(payload)
    assert n < 1 << 16
    head = bytes([0x82, 0x80 | n]) if n < 126 else bytes([0x82, 0x80 | 126]) + n.to_bytes(2, "big")
    mask = os.urandom(4)
    key = (mask * (n // 4 + 1))[:n]
    body = (int.from_bytes(payload, "big") ^ int.from_bytes(key, "big")).to_bytes(n, "big")
    return head + mask + body


class Typist(asyncio.Protocol):
    """A y-websocket client that types into its own replica, one character
    after its previous one, and drops what the peer sends it unread.

    A browser applies the others' updates on its own machine. Here 50 clients
    share two cores with the peers: decoding 49 × 10 frames a second each in
    this process would measure this process, so the typist speaks WebSocket
    over a plain connection, never parses what it receives, and asks the
    kernel to wake it only once 64 KB are waiting. The peer's work, which is
    what the row measures, is the same: it sends every update to every
    client. (Typists answer no pings: the peer pings a browser only after
    30 s without a frame from it, and a typist is closed before that.)"""

    def __init__(self, client_id: int, char: str) -> None:
        self.client_id = client_id
        self.char = char
        self.doc: pycrdt.Doc = pycrdt.Doc(client_id=client_id)
        self.text = self.doc.get("content", type=pycrdt.Text)
        self._updates: list[bytes] = []
        self._sub = self.doc.observe(lambda e: self._updates.append(e.update))
        self.sent: list[float] = []  # monotonic time each keystroke was handed over
        self.transport: asyncio.Transport | None = None
        self._head = b""
        self.upgraded: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    @classmethod
    async def connect(cls, host: str, port: int, path: str, client_id: int, char: str) -> Typist:
        typist = cls(client_id, char)
        await asyncio.get_running_loop().create_connection(lambda: typist, host, port)
        assert typist.transport is not None
        key = base64.b64encode(os.urandom(16)).decode()
        typist.transport.write(
            f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode()
        )
        await asyncio.wait_for(typist.upgraded, 10)
        typist.transport.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_RCVLOWAT, 1 << 16)
        return typist

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        if self.upgraded.done():
            return  # the peer's broadcast: dropped unread
        self._head += data
        if b"\r\n\r\n" in self._head:
            status = self._head.split(b"\r\n", 1)[0]
            if b" 101 " in status:
                self.upgraded.set_result(None)
            else:
                self.upgraded.set_exception(ConnectionError(f"upgrade refused: {status.decode(errors='replace')}"))

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.upgraded.done():
            self.upgraded.set_exception(ConnectionError(f"closed before the upgrade: {exc}"))
        if not self.closed.done():
            self.closed.set_result(None)

    def key(self) -> None:
        assert self.transport is not None
        self.sent.append(time.monotonic())
        self.text.insert(len(self.sent) - 1, self.char)  # ASCII: characters are bytes
        self.transport.write(masked_frame(frame_update(self._updates.pop())))

    async def close(self) -> None:
        """Close as a browser does: a close frame, then read until the peer
        closes. (Closing a socket with unread bytes resets the connection,
        and the peer may lose frames it had received but not yet read.)"""
        assert self.transport is not None
        self.transport.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_RCVLOWAT, 1)
        self.transport.write(b"\x88\x80" + os.urandom(4))  # a masked close frame without a status
        with suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(self.closed), 10)
        self.transport.close()


async def _type_on_schedule(a_url: str, name: str, seconds: float, rate: float) -> tuple[list[Typist], list[float]]:
    """50 typists on A; keystroke k of typist i is due at t0 + k / rate +
    i / (rate × 50): they take turns evenly. Due times are absolute, so a late
    send does not delay the ones after it. Returns the typists (with their
    send times) and each send's lag behind its due time."""
    host, port = a_url.removeprefix("http://").rsplit(":", 1)
    typists = [await Typist.connect(host, int(port), f"/ws/{name}", 1000 + i, ch) for i, ch in enumerate(TYPIST_CHARS)]
    n = len(typists)
    t0 = time.monotonic() + 0.5
    lag = []
    for k in range(round(seconds * rate)):
        for i, typist in enumerate(typists):
            due = t0 + k / rate + i / (rate * n)
            delay = due - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            typist.key()
            lag.append(typist.sent[-1] - due)
    return typists, lag


async def _load_run(
    peers: list[Peer], observer: AgentProcess, seconds: float, rate: float
) -> tuple[list[Typist], list[float], list[dict[str, list[float]]], list[str], MachineLoad]:
    """Type on A; then, with the typists still connected (and drained),
    collect the observers' arrival times and every peer's text."""
    assert peers[0].proc is not None
    with MachineLoad([peers[0].proc.pid]) as load:
        typists, lag = await _type_on_schedule(peers[0].url, "load", seconds, rate)
    expect = {str(t.client_id): len(t.sent) for t in typists}
    loop = asyncio.get_running_loop()
    times = await loop.run_in_executor(None, lambda: observer.call("arrivals", expect=expect, timeout=30)["times"])
    texts = await loop.run_in_executor(None, lambda: [p.get("/api/docs/load")["text"] for p in peers])
    await asyncio.gather(*(t.close() for t in typists))
    return typists, lag, times, texts, load


def row_load(work: Path, seconds: float, reference: str) -> Row:
    """5 peers; 50 clients on peer A each type 10 keystrokes a second; one
    client on each other peer observes (in a process of its own). Latency
    from a keystroke's send to its arrival at the other peers' clients, and
    no keystroke lost."""
    name = f"load (50 clients × 10 keys/s on A for {seconds:g} s, 5 peers)"
    target = "p99 ≤ 50 ms, none lost"
    peers: list[Peer] = []
    observer: AgentProcess | None = None
    try:
        peers = start_peers(work, "load", 5, random.Random(5))
        mesh_ready(peers, "load", 120)
        observer = AgentProcess(work / "load-observer.log")
        observer.call("attach", urls=[p.url for p in peers[1:]], token_files=[None] * 4, name="load")
        observer.call("connect", first_id=900)
        typists, lag, times, texts, load = asyncio.run(_load_run(peers, observer, seconds, 10.0))
        per_typist = len(typists[0].sent)
    except (TimeoutError, AssertionError, OSError) as exc:
        return Row(name, f"failed: {exc}", reference, target, False)
    finally:
        if observer is not None:
            observer.stop()
        stop_peers(peers)
    every: list[float] = []
    last: list[float] = []
    missing = 0
    for t in typists:
        for k, sent in enumerate(t.sent):
            arrived = [w[str(t.client_id)][k] for w in times if len(w[str(t.client_id)]) > k]
            missing += len(times) - len(arrived)
            every += [x - sent for x in arrived]
            if len(arrived) == len(times):
                last.append(max(arrived) - sent)
    # Every peer's text holds every typed character, once.
    sent_total = per_typist * len(typists)
    short = [
        f"{p.address} holds {len(text)} of {sent_total} characters"
        for p, text in zip(peers, texts, strict=True)
        if len(text) != sent_total or any(text.count(ch) != per_typist for ch in TYPIST_CHARS)
    ]
    lost = missing > 0 or bool(short)
    p99_last = percentile(last, 99) if last else float("inf")
    span = max(t.sent[-1] for t in typists) - min(t.sent[0] for t in typists)
    measured = (
        f"until every other peer's client has it: p50 {ms(percentile(last, 50))} ms, p99 {ms(p99_last)} ms; "
        f"per arrival p99 {ms(percentile(every, 99))} ms; {sent_total:,} keystrokes at {sent_total / span:.0f}/s "
        f"(send lag behind schedule p99 {ms(percentile(lag, 99))} ms); while typing, {load.describe('peer A')}; "
        + (f"LOST: {missing} arrivals missing at observers; {'; '.join(short)}" if lost else "none lost")
    )
    return Row(name, measured, reference, target, p99_last <= 0.050 and not lost)


# -- heal ---------------------------------------------------------------------------

SUBNET = "10.78.0"


def ip(*args: str) -> None:
    proc = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30)
    if proc.returncode != 0:
        raise AssertionError(f"ip {' '.join(args)}: {proc.stderr.strip()}")


@dataclass
class Halves:
    """Two switches joined by one cable, in network namespaces of their own:
    a bridge per half in a switch namespace, the two bridges joined by a veth
    pair (the cable), and one namespace per host with one veth to its half's
    bridge. All addresses live inside these namespaces. ``cut`` and
    ``restore`` set the cable down and up: packets between the halves are
    dropped in the switch, as when a cable is pulled; within a half nothing
    changes."""

    prefix: str
    per_half: int
    made: list[str] = field(default_factory=list)

    @property
    def switch(self) -> str:
        return f"{self.prefix}sw"

    def host(self, i: int) -> str:
        """Namespace of host *i* (1-based; 1..per_half on the left)."""
        return f"{self.prefix}h{i}"

    def address(self, i: int) -> str:
        return f"{SUBNET}.{i}"

    def client_host(self, side: int) -> int:
        """A host with no peer, for one half's clients (side 0 left, 1 right)."""
        return 101 + side

    def side(self, i: int) -> int:
        return 0 if i <= self.per_half or i == 101 else 1

    def build(self) -> None:
        sw = self.switch
        ip("netns", "add", sw)
        self.made.append(sw)
        for br in ("br0", "br1"):
            ip("-n", sw, "link", "add", br, "type", "bridge")
            ip("-n", sw, "link", "set", br, "up")
        ip("-n", sw, "link", "add", "cable0", "type", "veth", "peer", "name", "cable1")
        for end, br in (("cable0", "br0"), ("cable1", "br1")):
            ip("-n", sw, "link", "set", end, "master", br)
            ip("-n", sw, "link", "set", end, "up")
        for i in [*range(1, 2 * self.per_half + 1), 101, 102]:
            ns = self.host(i)
            ip("netns", "add", ns)
            self.made.append(ns)
            ip("-n", sw, "link", "add", f"s{i}", "type", "veth", "peer", "name", "eth0", "netns", ns)
            ip("-n", sw, "link", "set", f"s{i}", "master", f"br{self.side(i)}")
            ip("-n", sw, "link", "set", f"s{i}", "up")
            ip("-n", ns, "addr", "add", f"{self.address(i)}/24", "dev", "eth0")
            ip("-n", ns, "link", "set", "eth0", "up")
            ip("-n", ns, "link", "set", "lo", "up")

    def cut(self) -> None:
        ip("-n", self.switch, "link", "set", "cable0", "down")

    def restore(self) -> None:
        ip("-n", self.switch, "link", "set", "cable0", "up")

    def remove(self) -> list[str]:
        """Delete every namespace made; return the names that would not go."""
        left = []
        for ns in reversed(self.made):
            try:
                ip("netns", "del", ns)
            except AssertionError:
                left.append(ns)
        return left


class HostPeer:
    """``meshpad serve`` inside a host's namespace, on the host's address."""

    def __init__(self, net: Halves, i: int, work: Path, join: str | None) -> None:
        self.i = i
        self.ns = net.host(i)
        self.address = f"{net.address(i)}:7400"
        self.data = work / f"heal-{i:02d}"
        self.log = work / f"heal-peer-{i:02d}.log"
        self.join = join
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.data.mkdir(parents=True, exist_ok=True)
        cmd = ["ip", "netns", "exec", self.ns, sys.executable, "-m", "server", "serve"]
        cmd += ["--host", self.address.split(":")[0], "--port", "7400", "--data-dir", str(self.data)]
        if self.join:
            cmd += ["--join", self.join]
        env = dict(os.environ, MESHPAD_NETWORK_KEY=TEST_NETWORK_KEY, PYTHONUNBUFFERED="1")
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT, env=env)

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc)


def _texts(agents: list[AgentProcess]) -> list[dict[str, Any]]:
    return [p for answer in call_all(agents, "status") for p in answer["peers"]]


def _wait(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll gently: each poll is two requests to each of the 20 peers, and
    the time of convergence is taken from the clients, not from the poll."""
    try:
        wait_sync(predicate, timeout, poll=0.25)
    except TimeoutError:
        raise AssertionError(f"{what}: not within {timeout:g} s") from None


def row_heal(work: Path, edit_seconds: float) -> Row:
    """20 peers in two halves of a real network (10 hosts per half). The
    cable between the halves is pulled; one client per peer edits for
    *edit_seconds* (5 edits a second each); once each half agrees within
    itself the cable is put back: seconds from then until every peer holds
    identical text (the last change any client sees, each client on its own
    peer)."""
    name = f"heal (20 peers, two halves edit for {edit_seconds:g} s, then reconnected)"
    target = "≤ 2 s"
    per_half = 10
    net = Halves(f"mpn{os.getpid() % 100000}", per_half)
    peers: list[HostPeer] = []
    agents: list[AgentProcess] = []
    rng = random.Random(10)
    try:
        if os.geteuid() != 0:
            return not_measured(name, target, "network namespaces need root")
        net.build()
        for i in range(1, 2 * per_half + 1):
            join = peers[rng.randrange(len(peers))].address if peers else None
            peers.append(HostPeer(net, i, work, join))
        for p in peers:
            p.start()
        for side in (0, 1):
            host = net.client_host(side)
            agent = AgentProcess(work / f"heal-agent-{side}.log", ["ip", "netns", "exec", net.host(host)])
            agents.append(agent)
            mine = [p for p in peers if net.side(p.i) == side]
            agent.call(
                "attach",
                urls=[f"http://{p.address}" for p in mine],
                token_files=[str(p.data / "browser-token") for p in mine],
                name="heal",
            )
        call_all(agents, "ready", timeout=120)
        left = {p.address for p in peers if net.side(p.i) == 0}
        index = {p.address: k for k, p in enumerate(peers)}

        def crossing(status: list[dict[str, Any]]) -> int:
            """Links between the halves, counted once."""
            ends = [
                a for p, s in zip(peers, status, strict=True) for a in s["links"] if (a in left) != (p.address in left)
            ]
            return len(ends) // 2

        _wait(lambda: all(s["links"] for s in _texts(agents)), 120, "every peer connected")
        base = prose(rng, 2000)
        agents[0].call("create", text=base)
        digest = hashlib.sha256(base.encode()).hexdigest()
        try:
            _wait(lambda: all(s["text"] == digest for s in _texts(agents)), 120, "the document on every peer")
        except AssertionError:
            now = _texts(agents)
            having = sum(1 for s in now if s["text"] == digest)
            parts = islands([{index[a] for a in s["links"] if a in index} for s in now])
            raise AssertionError(
                f"after 120 s the document was on {having} of 20 peers; "
                f"overlay in {len(parts)} parts of {', '.join(map(str, parts))} peers"
            ) from None
        for side, agent in enumerate(agents):  # Yjs client ids must differ across all 20 clients
            agent.send("connect", first_id=500 + 100 * side)
        for agent in agents:
            agent.receive()
        across_before = crossing(_texts(agents))

        net.cut()
        for side, agent in enumerate(agents):
            agent.send("edit", seconds=edit_seconds, rate=5.0, seed=side)
        ops = sum(a.receive(timeout=edit_seconds + 120)["ops"] for a in agents)

        def texts_per_half() -> list[int]:
            """Distinct texts in each half."""
            status = _texts(agents)
            return [len({s["text"] for p, s in zip(peers, status, strict=True) if net.side(p.i) == k}) for k in (0, 1)]

        # Heal is measured from one text per half. A half still split (its own
        # overlay in islands) after 30 s is reconnected anyway, and said so.
        settled = ""
        try:
            _wait(lambda: texts_per_half() == [1, 1], 30, "each half identical within itself")
        except AssertionError:
            held = " and ".join(map(str, texts_per_half()))
            settled = f"; when reconnected the halves still held {held} different texts"

        restored = time.monotonic()
        net.restore()
        status: list[dict[str, Any]] = []

        def identical() -> bool:
            status[:] = _texts(agents)
            return len({s["text"] for s in status}) == 1

        try:
            _wait(identical, 60, "identical text on all 20 peers")
        except AssertionError as exc:
            return Row(
                name,
                f"failed: {exc}; {len({s['text'] for s in status})} different texts at the end; links between "
                f"the halves: {across_before} before the cut, {crossing(status)} at the end{settled}",
                "—",
                target,
                False,
            )
        seen = time.monotonic() - restored
        final = status[0]["text"]
        clients = [c for answer in call_all(agents, "contents", expect=final) for c in answer["clients"]]
        if any(c["text"] != final for c in clients):
            raise AssertionError("a client's text differs from its peer's")
        healed = max(c["last_change"] for c in clients) - restored
        across_after = crossing(status)
    except AssertionError as exc:
        return Row(name, f"failed: {exc}", "—", target, False)
    finally:
        for a in agents:
            a.stop()
        with ThreadPoolExecutor(len(peers) or 1) as pool:
            list(pool.map(lambda p: p.stop(), peers))
        left_behind = net.remove()
        if left_behind:
            print(f"namespaces left behind: {left_behind}", file=sys.stderr)
    return Row(
        name,
        f"{healed:.2f} s until the last client saw the merged text (all 20 peers' texts identical when polled "
        f"{seen:.2f} s after); {ops:,} edits during the cut; links between the halves: {across_before} before "
        f"the cut, {across_after} after healing{settled}",
        "—",
        target,
        healed <= 2.0,
    )


# -- main ---------------------------------------------------------------------------


def main() -> None:
    if sys.argv[1:] == ["agent"]:
        asyncio.run(agent_main())
        return
    reference = "keystroke latency row: not measured here (bench/run.py)"
    with tempfile.TemporaryDirectory(prefix="meshpad-netrows-") as tmp:
        work = Path(tmp)
        rows = [
            row_fanout(work, 100, reference),
            row_heal(work, 5.0),
            row_load(work, 8, reference),
            row_catchup(work),
        ]
    print(table(rows))


if __name__ == "__main__":
    main()
