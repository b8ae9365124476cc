"""A raw peer-protocol client for tests: it holds a peer's keys (read from
that peer's data dir), dials another peer's ``/peer``, runs the Noise
handshake and HELLO for one space, then sends whatever messages the test
wants and keeps every message it receives (answering PING, so the link
stays up while the test is slow).

It is a real peer as far as the other side can tell: the same channel
(``crdt.secure``) and the same encoding (``crdt.peerwire``) as ``meshpad
serve``, but no rules of its own about what it may send."""

from __future__ import annotations

import asyncio
import base64
import json
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from waiting import wait_for

from crdt import peerwire as pw
from crdt import roster as rs
from crdt.secure import Identity, SecureChannel


def _unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass(frozen=True)
class PeerKeys:
    """What a peer's data dir holds that a link of one space needs."""

    private_key: bytes  # X25519: the peer's identity (its id is derived from it)
    signing_key: bytes  # Ed25519 seed: signs its roster ops
    space: bytes  # the space's id
    space_key: bytes  # the space's key of the newest epoch this peer holds
    epoch: int

    @classmethod
    def read(cls, data_dir: Path, space: bytes) -> PeerKeys:
        private_key = base64.b64decode((data_dir / "identity-key").read_text().strip(), validate=True)
        signing_key = base64.b64decode((data_dir / "signing-key").read_text().strip(), validate=True)
        entries = json.loads((data_dir / "spaces.json").read_text())["spaces"]
        entry = next(e for e in entries if bytes.fromhex(e["id"]) == space)
        keys = json.loads((data_dir / entry["dir"] / "space-keys").read_text())["keys"]
        newest = max(keys, key=lambda k: int(k["epoch"]))
        return cls(private_key, signing_key, space, _unb64url(newest["key"]), int(newest["epoch"]))

    @property
    def identity(self) -> Identity:
        return Identity(self.private_key, self.space_key)

    @property
    def peer_id(self) -> bytes:
        return self.identity.peer_id

    @property
    def sign_public(self) -> bytes:
        return rs.Signer(self.signing_key, self.peer_id).public_key


@dataclass(eq=False)
class RawLink:
    """One link, dialled by :meth:`open`."""

    ws: aiohttp.ClientWebSocketResponse
    channel: SecureChannel
    received: list[pw.Message] = field(default_factory=list)
    closed: str | None = None  # why the other side closed the link (the WebSocket close message)
    _reader: asyncio.Task[None] | None = None

    @classmethod
    async def open(cls, http: aiohttp.ClientSession, url: str, keys: PeerKeys, name: str = "raw") -> RawLink:
        """Dial *url* (``http://host:port``), handshake and say HELLO for
        ``keys.space``. Raises AssertionError when the handshake fails."""
        ws = await http.ws_connect(f"{url}/peer", max_msg_size=pw.MAX_FRAME_BYTES * 2, compress=0)
        channel = SecureChannel(keys.identity, initiator=True)
        for frame in channel.start():
            await ws.send_bytes(frame)
        msg = await asyncio.wait_for(ws.receive(), 10)
        assert msg.type == aiohttp.WSMsgType.BINARY, f"handshake refused: {msg.type} {msg.extra!r}"
        replies, _ = channel.receive(msg.data)
        for frame in replies:
            await ws.send_bytes(frame)
        assert channel.established
        link = cls(ws, channel)
        hello = pw.Hello(
            pw.VERSION, keys.peer_id, "", secrets.randbits(32), space=keys.space, sign_key=keys.sign_public, name=name
        )
        await link.send(hello)
        link._reader = asyncio.create_task(link._read())
        return link

    async def send(self, msg: pw.Message) -> None:
        await self.ws.send_bytes(self.channel.encrypt(pw.encode(msg)))

    async def _read(self) -> None:
        while True:
            msg = await self.ws.receive()
            if msg.type != aiohttp.WSMsgType.BINARY:
                self.closed = str(msg.extra or self.ws.close_code or msg.type)
                return
            _, plain = self.channel.receive(msg.data)
            assert plain is not None
            message = pw.decode(plain)
            self.received.append(message)
            if isinstance(message, pw.Ping):
                await self.send(pw.Pong(message.nonce))

    def of(self, kind: type[Any]) -> list[Any]:
        return [m for m in self.received if isinstance(m, kind)]

    async def admitted_or_closed(self) -> pw.Hello | str:
        """The other side's HELLO once it has admitted this link (a peer
        sends its HELLO before it reads ours, and ROSTER_HEADS once it has
        admitted the link: ``crdt.access``), or the reason it closed the
        link with."""
        found = await wait_for(
            lambda: self.closed or (self.of(pw.RosterHeads) and self.of(pw.Hello)),
            timeout=10,
            what=lambda: f"the link admitted or closed; got {self.received!r}",
        )
        return found if isinstance(found, str) else found[0]

    async def ready(self) -> pw.Hello:
        """The other side's HELLO: it admitted this link."""
        found = await self.admitted_or_closed()
        assert isinstance(found, pw.Hello), f"the link was closed: {found}"
        return found

    async def refused(self) -> str:
        """The reason the other side closed the link with."""
        return await wait_for(lambda: self.closed, timeout=15, what=lambda: f"the link closed; got {self.received!r}")

    async def sync(self, name: str, state_vector: bytes) -> bytes:
        """SYNC_STEP1 for *name*; the update of the SYNC_STEP2 that answers it."""
        before = len(self.received)
        await self.send(pw.SyncStep1(name, state_vector, False))

        def answer() -> pw.SyncStep2 | None:
            return next((m for m in self.received[before:] if isinstance(m, pw.SyncStep2) and m.name == name), None)

        found = await wait_for(
            lambda: answer() or self.closed, timeout=10, what=lambda: f"SYNC_STEP2 of {name}; got {self.received!r}"
        )
        assert isinstance(found, pw.SyncStep2), f"the link was closed: {found}"
        return found.update

    async def close(self) -> None:
        await self.ws.close()
        if self._reader is not None:
            await self._reader
