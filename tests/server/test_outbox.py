"""The outbox over a real WebSocket: a frame put while nothing is queued
is written in the producer's call; when the socket pushes back, frames
queue behind the send in progress and arrive whole and in order."""

from __future__ import annotations

import asyncio

from aiohttp import WSMsgType, web
from waiting import wait_for

from server.outbox import Outbox


def _app(outboxes: list[Outbox], done: asyncio.Event) -> web.Application:
    async def handler(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        outbox = Outbox(max_bytes=64 * 1024 * 1024)
        outboxes.append(outbox)
        pump = asyncio.create_task(outbox.pump(ws))
        await done.wait()
        outbox.close("bye")
        await pump
        return ws

    app = web.Application()
    app.router.add_get("/", handler)
    return app


async def _outbox_of(outboxes: list[Outbox]) -> Outbox:
    await wait_for(lambda: outboxes and outboxes[0]._ws is not None, what="the writer to run", interval=0.001)
    return outboxes[0]


async def test_frames_put_on_an_idle_outbox_are_written_at_once(aiohttp_client) -> None:
    outboxes: list[Outbox] = []
    done = asyncio.Event()
    client = await aiohttp_client(_app(outboxes, done))
    ws = await client.ws_connect("/")
    outbox = await _outbox_of(outboxes)
    for i in range(100):
        assert outbox.put(b"frame %d" % i)
    assert outbox.direct == 100 and not outbox.frames
    got = [(await ws.receive()).data for _ in range(100)]
    assert got == [b"frame %d" % i for i in range(100)]
    done.set()
    assert (await ws.receive()).type == WSMsgType.CLOSE


async def test_when_the_socket_pushes_back_frames_queue_in_order(aiohttp_client) -> None:
    outboxes: list[Outbox] = []
    done = asyncio.Event()
    client = await aiohttp_client(_app(outboxes, done))
    ws = await client.ws_connect("/", max_msg_size=0)
    outbox = await _outbox_of(outboxes)
    chunk = 256 * 1024
    count = 160  # 40 MB: more than the kernel and the transport buffer hold unread
    for i in range(count):
        assert outbox.put(i.to_bytes(4, "big") * (chunk // 4))
    assert outbox.direct < count, "the socket never pushed back: the test did not test queueing"
    assert outbox.frames, "frames put while a send waits must queue behind it"
    for i in range(count):
        msg = await ws.receive()
        assert msg.type == WSMsgType.BINARY and len(msg.data) == chunk
        assert msg.data[:4] == i.to_bytes(4, "big"), f"frame {i} out of order"
    await wait_for(lambda: not (outbox.frames or outbox._busy), what="the outbox idle", interval=0.001)
    assert outbox.put(b"after")  # idle again: written at once
    assert (await ws.receive()).data == b"after"
    done.set()
    assert (await ws.receive()).type == WSMsgType.CLOSE
