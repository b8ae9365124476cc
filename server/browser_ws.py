"""``WS /ws/{name}``: the y-websocket endpoint for browsers (and any stock
Yjs ``WebsocketProvider``). This is the one place where frames from browsers
enter: whatever they hold, the worst outcome is that this connection closes
with a reason; the document and the other connections are untouched."""

from __future__ import annotations

import asyncio
import logging
from contextlib import suppress

from aiohttp import WSCloseCode, WSMsgType, web

from crdt.engine import CLOSE_DELETED
from crdt.errors import InvalidName
from crdt.names import validate_name
from server.keys import BROWSER_SOCKETS
from server.runtime import Connection, DocumentGone, Runtime
from server.spaces import SPACES, SpaceError

log = logging.getLogger(__name__)

# Largest frame a browser may send. A whole-document sync of a large document
# is one frame; 16 MiB is far above any text a person writes.
MAX_FRAME_BYTES = 16 * 1024 * 1024


async def handle(request: web.Request) -> web.StreamResponse:
    """Nothing about a document changes, nor is one created, before the
    request has proved to be a valid WebSocket upgrade: the guard
    (``server.security``) has checked its origin and token by then, and a
    plain GET (an ``<img>``, a no-cors fetch from another site) only gets 400."""
    try:
        space, raw = request.app[SPACES].resolve(request.match_info["name"])
        name = validate_name(raw)
    except SpaceError as exc:
        raise web.HTTPNotFound(text=str(exc)) from exc
    except InvalidName as exc:
        raise web.HTTPBadRequest(text=str(exc)) from exc
    ws = web.WebSocketResponse(max_msg_size=MAX_FRAME_BYTES, heartbeat=30.0, compress=False)
    if not ws.can_prepare(request).ok:
        raise web.HTTPBadRequest(text="this address takes a WebSocket (the y-websocket protocol), not a plain request")
    runtime = space.runtime
    if not runtime.writable and request.query.get("key") != "1" and not runtime.exists(name):
        raise web.HTTPNotFound(text=f"no document {name!r} (and you may not make one in {space.name})")
    # ?key=1: the path names the document's key (the editor's, which follows
    # it through renames); else its name, as any y-websocket client gives it.
    if request.query.get("key") == "1":
        key = name
        if not runtime.core.node.replicas.holds(key) and key not in runtime.damaged:
            raise web.HTTPNotFound(text=f"no document with the key {key!r}")
    else:
        key = runtime.key_for(name)
    if key in runtime.damaged:
        runtime.check_readable(key)  # a damaged document is refused before the upgrade
    await ws.prepare(request)
    try:
        await (runtime.session_of(key) if key == name else runtime.session(name))
        conn = runtime.attach(key, wants_acks=request.query.get("acks") == "1", remote=request.remote or "")
    except DocumentGone as exc:
        await ws.close(code=CLOSE_DELETED, message=str(exc).encode()[:120])
        return ws
    sockets = request.app[BROWSER_SOCKETS]
    sockets.add(ws)
    try:
        async with asyncio.TaskGroup() as tasks:
            tasks.create_task(conn.outbox.pump(ws))
            await _read(ws, conn, runtime)
            conn.close("closed")
    finally:
        runtime.detach(conn)
        sockets.discard(ws)
    return ws


async def _read(ws: web.WebSocketResponse, conn: Connection, runtime: Runtime) -> None:
    readable = conn.readable  # cleared while the peer waits for the causes of this browser's updates
    while conn.close_reason is None:
        if not readable.is_set():
            await readable.wait()
        msg = await ws.receive()
        if msg.type in (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED):
            break
        if conn.close_reason is not None:
            break
        if msg.type == WSMsgType.BINARY:
            runtime.receive(conn, msg.data)  # a refused frame closes conn, seen above
        elif msg.type == WSMsgType.TEXT:
            runtime.core.frames_refused += 1
            log.warning("closing browser connection to %r from %s: text frame", conn.name, conn.remote)
            conn.close("protocol error: binary frames only")
            break
        elif msg.type == WSMsgType.ERROR:
            log.info("browser connection to %r from %s failed: %s", conn.name, conn.remote, ws.exception())
            break


async def close_all(app: web.Application) -> None:
    sockets: set[web.WebSocketResponse] = app[BROWSER_SOCKETS]
    for ws in list(sockets):
        with suppress(ConnectionError, RuntimeError):
            await ws.close(code=WSCloseCode.GOING_AWAY, message=b"peer shutting down")
