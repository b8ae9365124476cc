"""A bounded queue of frames for one WebSocket, and the writer task that
drains it. Producers never wait: when the bound is passed the connection is
closed with a reason (what each kind of connection does then is stated where
the bound is chosen). Closing lets the writer send what is queued, then close
the socket with the reason; a reason starting "protocol error" closes with
1008, anything else with 1000.

A frame put while nothing is queued and the writer is idle is written at
once, in the producer's call: for an uncompressed frame aiohttp's send puts
the bytes in the transport before it first suspends, and it suspends only
when the socket pushes back. So the common case costs no task wake-up, and
when the socket does push back, the writer finishes that send and the frames
queue behind it, in order, as before.
"""

from __future__ import annotations

import asyncio
import logging
import types
from collections import deque
from collections.abc import Callable, Coroutine, Generator
from contextlib import suppress
from typing import Any

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
        self.direct = 0  # frames written in the producer's call (no wake-up of the writer)
        self._wakeup = asyncio.Event()
        self._ws: AnyWebSocket | None = None  # set while the writer runs
        self._busy = False  # the writer is in a send (frames put now must queue behind it)
        self._suspended: tuple[Coroutine[Any, Any, None], Any] | None = None  # a direct send waiting to drain

    def put(self, data: bytes) -> bool:
        """Queue a frame; False (and the connection closing) if it does not fit."""
        if self.close_reason is not None:
            return False
        if self._ws is not None and not self._busy and not self.frames:
            self._send_now(self._ws, data)
            return True
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

    def _send_now(self, ws: AnyWebSocket, data: bytes) -> None:
        """Start ``ws.send_bytes(data)`` here; if it suspends (the socket
        pushes back, the frame already written), the writer finishes it."""
        send = ws.send_bytes(data)
        try:
            waiting = send.send(None)
        except StopIteration:
            self.direct += 1
            return
        except (ConnectionError, RuntimeError) as exc:
            log.debug("write failed: %s", exc)
            self.close(self.close_reason or "closed")
            return
        self._suspended = (send, waiting)
        self._busy = True
        self._wakeup.set()

    async def pump(self, ws: AnyWebSocket) -> None:
        """The writer task: send frames in order until closed, then close *ws*."""
        self._ws = ws
        try:
            while True:
                if self._suspended is not None:
                    send, waiting = self._suspended
                    self._suspended = None
                    await _resume(send, waiting)
                self._busy = True
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
                self._busy = False
                if self.close_reason is not None:
                    break
                self._wakeup.clear()
                await self._wakeup.wait()
        except (ConnectionError, RuntimeError) as exc:
            log.debug("write failed: %s", exc)
        finally:
            self._ws = None
            self._busy = True
            if self._suspended is not None:
                self._suspended[0].close()
                self._suspended = None
            reason = self.close_reason or "closed"
            code = self.close_code
            if code is None:
                code = WSCloseCode.POLICY_VIOLATION if reason.startswith("protocol error") else WSCloseCode.OK
            with suppress(ConnectionError, RuntimeError):
                await ws.close(code=code, message=reason.encode()[:120])


@types.coroutine
def _resume(send: Coroutine[Any, Any, None], waiting: Any) -> Generator[Any, Any, None]:
    """Run *send*, started by hand and suspended on *waiting*, to its end
    in the calling task: what the task would have done had it started it."""
    while True:
        try:
            value = yield waiting
        except BaseException as exc:  # a cancellation goes to the send, as it would have
            try:
                waiting = send.throw(exc)
            except StopIteration:
                return
        else:
            try:
                waiting = send.send(value)
            except StopIteration:
                return
