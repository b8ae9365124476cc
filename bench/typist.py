"""A y-websocket client that types and never reads: raw WebSocket over a
plain connection (RFC 6455 client frames), for rows where many clients
share the machine with the peers they measure (the load and relay rows).
"""

from __future__ import annotations

import asyncio
import base64
import os
import socket
import string
import time
from contextlib import suppress

import pycrdt
from common import frame_update

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
