"""A y-websocket client for tests, built on pycrdt's own y-protocols helpers
(not on Meshpad's codec), so that a bug in Meshpad's codec cannot hide behind
the same bug in the client. (``wait_for`` is :func:`waiting.wait_for`, kept
here for the benchmarks that import it from this module.)"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp
from pycrdt import (
    Doc,
    Text,
    YMessageType,
    create_sync_message,
    create_update_message,
    handle_sync_message,
)
from waiting import wait_for as wait_for


def varuint(n: int) -> bytes:
    out = bytearray()
    while n > 0x7F:
        out.append(0x80 | (n & 0x7F))
        n >>= 7
    out.append(n)
    return bytes(out)


def var_bytes(b: bytes) -> bytes:
    return varuint(len(b)) + b


def read_varuint(data: bytes, pos: int) -> tuple[int, int]:
    n = shift = 0
    while True:
        byte = data[pos]
        pos += 1
        n |= (byte & 0x7F) << shift
        if byte < 0x80:
            return n, pos
        shift += 7


def awareness_frame(entries: list[tuple[int, int, Any]]) -> bytes:
    inner = varuint(len(entries))
    for client, clock, state in entries:
        inner += varuint(client) + varuint(clock) + var_bytes(json.dumps(state).encode())
    return varuint(YMessageType.AWARENESS) + var_bytes(inner)


def decode_awareness(frame: bytes) -> list[tuple[int, int, Any]]:
    kind, pos = read_varuint(frame, 0)
    assert kind == YMessageType.AWARENESS
    _, pos = read_varuint(frame, pos)
    count, pos = read_varuint(frame, pos)
    out = []
    for _ in range(count):
        client, pos = read_varuint(frame, pos)
        clock, pos = read_varuint(frame, pos)
        size, pos = read_varuint(frame, pos)
        out.append((client, clock, json.loads(frame[pos : pos + size])))
        pos += size
    return out


class YClient:
    """Connects to ``/ws/{name}``, keeps a pycrdt replica in sync, records
    every frame it receives."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse, client_id: int) -> None:
        self.ws = ws
        self.doc = Doc(client_id=client_id)
        self.text = self.doc.get("content", type=Text)
        self.frames: list[bytes] = []
        self.synced = False
        self.saved = 0
        self.awareness: dict[int, tuple[int, Any]] = {}
        self.closed: asyncio.Event = asyncio.Event()
        self._arrival = asyncio.Event()
        self._remote = False
        self._sub = self.doc.observe(self._on_update)
        self._pending: list[bytes] = []
        self.sent = 0  # frames sent on this connection (what acks count)
        self._reader = asyncio.get_running_loop().create_task(self._read())

    @classmethod
    async def connect(cls, session: Any, url: str, client_id: int) -> YClient:
        ws = await session.ws_connect(url)
        client = cls(ws, client_id)
        await client.send(create_sync_message(client.doc))
        return client

    async def send(self, frame: bytes) -> int:
        """Send one frame; return its number on this connection (1, 2, ...)."""
        self.sent += 1
        number = self.sent
        await self.ws.send_bytes(frame)
        return number

    def _on_update(self, event: Any) -> None:
        if not self._remote:
            self._pending.append(create_update_message(event.update))

    async def flush(self) -> int:
        pending, self._pending = self._pending, []
        number = 0
        for frame in pending:
            number = await self.send(frame)
        return number

    async def insert(self, index: int, text: str) -> int:
        """Insert at a UTF-8 byte *index* (pycrdt's unit); return the number
        of the frame that carried the edit."""
        self.text.insert(index, text)
        return await self.flush()

    async def delete(self, start: int, end: int) -> None:
        del self.text[start:end]
        await self.flush()

    async def _read(self) -> None:
        try:
            async for msg in self.ws:
                if msg.type != aiohttp.WSMsgType.BINARY:
                    continue
                data = bytes(msg.data)
                self.frames.append(data)
                self._arrival.set()
                if data[0] == YMessageType.SYNC:
                    self._remote = True
                    try:
                        reply = handle_sync_message(data[1:], self.doc)
                    finally:
                        self._remote = False
                    if data[1] == 1:
                        self.synced = True
                    if reply is not None:
                        await self.send(reply)
                elif data[0] == YMessageType.AWARENESS:
                    for client, clock, state in decode_awareness(data):
                        self.awareness[client] = (clock, state)
                elif data[0] == 100:
                    self.saved, _ = read_varuint(data, 1)
        finally:
            self.closed.set()
            self._arrival.set()

    async def wait_frames(self, count: int) -> None:
        """Until at least *count* frames have arrived, without polling (a
        measuring client must not spin on a core the peers need)."""
        while len(self.frames) < count and not self.closed.is_set():
            self._arrival.clear()
            await self._arrival.wait()

    @property
    def content(self) -> str:
        return str(self.text)

    def present(self) -> dict[int, Any]:
        return {c: s for c, (_, s) in self.awareness.items() if s is not None}

    async def close(self) -> None:
        await self.ws.close()
        await self.closed.wait()
