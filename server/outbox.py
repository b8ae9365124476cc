"""A bounded queue of frames for one WebSocket, and the writer task that
drains it. Producers never wait: when the bound is passed the connection is
closed with a reason (what each kind of connection does then is stated where
the bound is chosen). Closing lets the writer send what is queued, then close
the socket with the reason; a reason starting "protocol error" closes with
1008, anything else with 1000."""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable
from contextlib import suppress

import aiohttp
from aiohttp import WSCloseCode, web

log = logging.getLogger(__name__)
AnyWebSocket = web.WebSocketResponse | aiohttp.ClientWebSocketResponse


class Outbox:
    def __init__(
        self,
        max_frames: int | None = None,
        max_bytes: int | None = None,
        coalesce: Callable[[list[bytes]], list[bytes]] | None = None,
    ) -> None:
        self.max_frames = max_frames
        self.max_bytes = max_bytes
        # Rewrites what is queued, when more than one frame waits, into fewer
        # frames that mean the same to the receiver.
        self.coalesce = coalesce
        self.frames: deque[bytes] = deque()
        self.queued_bytes = 0
        self.close_reason: str | None = None
        self.close_code: int | None = None  # None: from the reason (see the module's doc)
        self._wakeup = asyncio.Event()

    def put(self, data: bytes) -> bool:
        """Queue a frame; False (and the connection closing) if it does not fit."""
        if self.close_reason is not None:
            return False
        if (self.max_frames is not None and len(self.frames) >= self.max_frames) or (
            self.max_bytes is not None and self.queued_bytes + len(data) > self.max_bytes
        ):
            self.close("outbox full: the other side is too slow")
            return False
        self.frames.append(data)
        self.queued_bytes += len(data)
        self._wakeup.set()
        return True

    def close(self, reason: str, code: int | None = None) -> None:
        if self.close_reason is None:
            self.close_reason = reason
            self.close_code = code
            self._wakeup.set()

    async def pump(self, ws: AnyWebSocket) -> None:
        """The writer task: send frames in order until closed, then close *ws*."""
        try:
            while True:
                while self.frames:
                    if self.coalesce is not None and len(self.frames) > 1:
                        batch = list(self.frames)
                        self.frames.clear()
                        self.queued_bytes = 0
                        for data in self.coalesce(batch):
                            await ws.send_bytes(data)
                        continue
                    data = self.frames.popleft()
                    self.queued_bytes -= len(data)
                    await ws.send_bytes(data)
                if self.close_reason is not None:
                    break
                self._wakeup.clear()
                await self._wakeup.wait()
        except (ConnectionError, RuntimeError) as exc:
            log.debug("write failed: %s", exc)
        finally:
            reason = self.close_reason or "closed"
            code = self.close_code
            if code is None:
                code = WSCloseCode.POLICY_VIOLATION if reason.startswith("protocol error") else WSCloseCode.OK
            with suppress(ConnectionError, RuntimeError):
                await ws.close(code=code, message=reason.encode()[:120])
