"""Peer links: ``WS /peer`` for inbound links, a dialer for outbound ones, and
the one timer that drives the replication node.

Each link has a bounded outbox drained by its writer task. Overflow policy:
a link whose outbox passes OUTBOX_BYTES is closed with a reason; the node
redials and anti-entropy repairs whatever the dropped frames carried. Frames
from a link enter the core through exactly one call (``Node.receive``);
whatever they hold, the worst outcome is that this link closes.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from contextlib import suppress
from dataclasses import dataclass, field

import aiohttp
from aiohttp import WSCloseCode, WSMsgType, web

from crdt import node as core
from crdt import peerwire
from crdt.errors import RemoteProtocolError
from server.runtime import Runtime

log = logging.getLogger(__name__)

AnyWebSocket = web.WebSocketResponse | aiohttp.ClientWebSocketResponse
OUTBOX_BYTES = 32 * 1024 * 1024  # queued for one peer before the link is dropped
DIAL_TIMEOUT = 5.0  # seconds to open a link, TCP and WebSocket handshake included


@dataclass(eq=False)
class PeerLink:
    id: int
    address: str
    wakeup: asyncio.Event = field(default_factory=asyncio.Event)
    outbox: deque[bytes] = field(default_factory=deque)
    queued: int = 0
    close_reason: str | None = None

    def send(self, data: bytes) -> None:
        if self.close_reason is not None:
            return
        if self.queued + len(data) > OUTBOX_BYTES:
            self.close("outbox full: peer too slow")
            return
        self.outbox.append(data)
        self.queued += len(data)
        self.wakeup.set()

    def close(self, reason: str) -> None:
        if self.close_reason is None:
            self.close_reason = reason
            self.wakeup.set()


class Peering:
    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.links: dict[int, PeerLink] = {}
        self._next_link = 0
        self._timer: asyncio.TimerHandle | None = None
        self._tasks: asyncio.TaskGroup | None = None
        self._client: aiohttp.ClientSession | None = None
        self._stopping = False
        self.refused = 0
        runtime.network = self.perform

    # -- life cycle --------------------------------------------------------

    async def run(self, started: asyncio.Event, joins: list[str]) -> None:
        """Owns every dial task; returns when :meth:`stop` is called."""
        async with aiohttp.ClientSession() as client, asyncio.TaskGroup() as tasks:
            self._client = client
            self._tasks = tasks
            node = self.runtime.gossip
            now = self.runtime.now()
            for address in joins:
                self.perform(node.join(address, now))
            self.perform(node.tick(now))
            started.set()
            stop = asyncio.get_running_loop().create_future()
            self._stop_future = stop
            await stop
        self._tasks = None

    def stop(self) -> None:
        self._stopping = True
        if self._timer is not None:
            self._timer.cancel()
        for link in list(self.links.values()):
            link.close("peer shutting down")
        fut = getattr(self, "_stop_future", None)
        if fut is not None and not fut.done():
            fut.set_result(None)

    # -- effects -----------------------------------------------------------

    def perform(self, effects: list[core.Effect]) -> None:
        for effect in self.runtime.perform_node(effects):
            if isinstance(effect, core.SendPeer):
                link = self.links.get(effect.link)
                if link is not None:
                    link.send(effect.data)
            elif isinstance(effect, core.Dial):
                if self._tasks is not None and not self._stopping:
                    self._tasks.create_task(self._dial(effect.address))
            elif isinstance(effect, core.CloseLink):
                link = self.links.get(effect.link)
                if link is not None:
                    log.info("closing link to %s: %s", link.address, effect.reason)
                    link.close(effect.reason)
        self._arm()

    def _arm(self) -> None:
        if self._stopping or self.runtime.node is None:
            return
        loop = asyncio.get_running_loop()
        when = self.runtime.gossip.next_deadline(loop.time())
        if self._timer is not None:
            if self._timer.when() <= when:
                return
            self._timer.cancel()
        self._timer = loop.call_at(when, self._fire)

    def _fire(self) -> None:
        self._timer = None
        self.perform(self.runtime.gossip.tick(self.runtime.now()))

    # -- links -------------------------------------------------------------

    async def _dial(self, address: str) -> None:
        assert self._client is not None
        try:
            async with asyncio.timeout(DIAL_TIMEOUT):
                ws = await self._client.ws_connect(
                    f"http://{address}/peer", max_msg_size=peerwire.MAX_FRAME_BYTES, compress=0
                )
        except (aiohttp.ClientError, OSError, TimeoutError, ValueError) as exc:
            log.debug("dial %s failed: %s", address, exc)
            self.perform(self.runtime.gossip.dial_failed(address, self.runtime.now()))
            return
        await self.serve(ws, outbound=True, address=address)

    async def serve(self, ws: AnyWebSocket, outbound: bool, address: str) -> None:
        self._next_link += 1
        link = PeerLink(self._next_link, address)
        self.links[link.id] = link
        node = self.runtime.gossip
        try:
            self.perform(node.link_opened(link.id, outbound, address, self.runtime.now()))
            async with asyncio.TaskGroup() as tasks:
                tasks.create_task(self._write(ws, link))
                await self._read(ws, link)
                link.close("closed")
        finally:
            del self.links[link.id]
            self.runtime.link_closed(link.id)
            if not self._stopping:
                self.perform(node.link_closed(link.id, self.runtime.now()))

    async def _read(self, ws: AnyWebSocket, link: PeerLink) -> None:
        node = self.runtime.gossip
        async for msg in ws:
            if link.close_reason is not None:
                return
            if msg.type == WSMsgType.BINARY:
                try:
                    effects = node.receive(link.id, msg.data, self.runtime.now())
                except RemoteProtocolError as exc:
                    self.refused += 1
                    log.warning("closing link to %s: protocol error: %s", link.address, exc)
                    link.close(f"protocol error: {exc}")
                    return
                self.perform(effects)
            elif msg.type == WSMsgType.TEXT:
                self.refused += 1
                log.warning("closing link to %s: text frame", link.address)
                link.close("protocol error: binary frames only")
                return
            else:
                return

    async def _write(self, ws: AnyWebSocket, link: PeerLink) -> None:
        try:
            while True:
                while link.outbox:
                    data = link.outbox.popleft()
                    link.queued -= len(data)
                    await ws.send_bytes(data)
                if link.close_reason is not None:
                    break
                link.wakeup.clear()
                await link.wakeup.wait()
        except (ConnectionError, RuntimeError) as exc:
            log.debug("write to %s failed: %s", link.address, exc)
        finally:
            reason = link.close_reason or "closed"
            code = WSCloseCode.POLICY_VIOLATION if reason.startswith("protocol error") else WSCloseCode.OK
            with suppress(ConnectionError, RuntimeError):
                await ws.close(code=code, message=reason.encode()[:120])


async def handle(request: web.Request) -> web.StreamResponse:
    """``WS /peer``: a link opened by another peer."""
    from server.keys import PEERING

    peering = request.app[PEERING]
    ws = web.WebSocketResponse(max_msg_size=peerwire.MAX_FRAME_BYTES, compress=False)
    await ws.prepare(request)
    await peering.serve(ws, outbound=False, address=request.remote or "")
    return ws
