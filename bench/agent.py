"""Clients in a process of their own, driven by JSON commands: the
:class:`Agent` runs as ``python bench/agent.py`` (inside a network namespace
when a prefix such as ``ip netns exec NS`` is given), reads one command per
line on stdin and answers each with one line on stdout; the row's side is an
:class:`AgentProcess`. An agent's clients keep their own clock apart from
the row's (the load row's observers) or reach peers that only exist inside
a namespace (the heal row).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import random
import select
import string
import subprocess
import sys
import time
from contextlib import suppress
from pathlib import Path
from typing import Any

import aiohttp
import common  # noqa: F401 - puts tests/ on sys.path, for yclient
import pycrdt
from measure import Arrivals
from yclient import YClient, wait_for


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
                [*(prefix or []), sys.executable, str(Path(__file__).resolve())],
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


if __name__ == "__main__":
    asyncio.run(agent_main())
