"""The app factory, used by the ``meshpad`` command and by the tests alike."""

from __future__ import annotations

import asyncio
import getpass
import logging
import re
import time
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime

import jinja2
import markupsafe
from aiohttp import web
from aiohttp.typedefs import Handler

from crdt.errors import StoreError
from crdt.limits import BanList
from crdt.node import Config
from crdt.store import Store
from server import (
    addresses,
    browser_ws,
    discovery,
    history_pages,
    identity,
    life_pages,
    metrics,
    pages,
    peer_pages,
    security,
    space_html,
    space_pages,
)
from server import peering as peering_module
from server.assets import StaticFiles, asset_root
from server.keys import BROWSER_SOCKETS, BROWSER_TOKEN, NETWORK_KEY, PEERING, RUNTIME, SETTINGS, STATIC, TEMPLATES
from server.peering import Peering
from server.runtime import Runtime
from server.settings import Settings
from server.spaces import SPACES, Space, Spaces, parse_space_invite
from server.sqlite_store import SQLiteStore

log = logging.getLogger(__name__)
METRICS_PORT = web.AppKey("metrics_port", int)  # the port --metrics-address bound


def _when(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _thousands(n: int) -> str:
    return f"{n:,}"


def _prose(text: str, capital: bool = True) -> markupsafe.Markup:
    """A message written for the terminal, for a page: capitalised (unless
    it goes inside a sentence), and `commands` in code."""
    escaped = str(markupsafe.escape(text[:1].upper() + text[1:] if capital else text))
    return markupsafe.Markup(re.sub(r"`([^`]+)`", r"<code>\1</code>", escaped))


def _plural(n: int, noun: str) -> str:
    """``3 documents``, ``1 document``, with thousands separated."""
    return f"{n:,} {noun}{'' if n == 1 else 's'}"


@web.middleware
async def not_found(request: web.Request, handler: Handler) -> web.StreamResponse:
    """A path no route knows gets the site's own page (or JSON under /api/),
    not aiohttp's bare "404: Not Found"."""
    try:
        return await handler(request)
    except (web.HTTPNotFound, web.HTTPMethodNotAllowed) as exc:
        if request.match_info.http_exception is None:
            raise  # a route's own answer, with its own message
        missing = isinstance(exc, web.HTTPNotFound)
        headers = {} if missing else {"Allow": exc.headers.get("Allow", "")}
        message = "no such page" if missing else f"{request.method} is not allowed here"
        if request.path.startswith("/api/"):
            return web.json_response({"error": message}, status=exc.status, headers=headers)
        html = (
            request.app[TEMPLATES]
            .get_template("error.html")
            .render(
                request=request,
                title="Page not found" if missing else "Not allowed",
                message=message.capitalize() + ".",
            )
        )
        return web.Response(text=html, content_type="text/html", status=exc.status, headers=headers)


@web.middleware
async def store_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """A store that cannot be read is reported, with the file, not hidden."""
    try:
        return await handler(request)
    except StoreError as exc:
        log.error("%s %s: %s", request.method, request.path, exc)
        if request.path.startswith("/api/"):
            return web.json_response({"error": str(exc)}, status=500)
        return web.Response(text=f"Meshpad cannot read its store: {exc}", status=500)


def member_name(settings: Settings) -> str:
    """The name this peer goes by in its spaces (``--name``, else the login name)."""
    if settings.name:
        return settings.name
    try:
        return getpass.getuser()[:64]
    except (KeyError, OSError):
        return ""


def create_app(settings: Settings, *, store: Store | None = None, config: Config | None = None) -> web.Application:
    """Build the peer's application. The store opens when the app starts
    (``SQLiteStore`` in ``settings.data_dir`` unless one is given)."""
    token = security.load_token(settings.data_dir)
    app = web.Application(
        client_max_size=pages.MAX_IMPORT_BYTES + 64 * 1024, middlewares=[security.guard(token), not_found, store_errors]
    )
    app[BROWSER_TOKEN] = token
    root = asset_root()
    static = StaticFiles(root / "static")
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(root / "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
    )
    env.globals["static_url"] = static.url
    env.filters["when"] = _when
    env.filters["iso"] = _iso
    env.filters["thousands"] = _thousands
    env.filters["plural"] = _plural
    env.filters["prose"] = _prose
    app[SETTINGS] = settings
    app[STATIC] = static
    app[TEMPLATES] = env
    app[BROWSER_SOCKETS] = set()

    app[NETWORK_KEY] = identity.network_key_text(settings.data_dir, settings.network_key, settings.invited_key)
    me = identity.load_identity(settings.data_dir, app[NETWORK_KEY])
    if settings.unload_after is not None or settings.max_loaded is not None:
        base = config or Config()
        config = replace(
            base,
            unload_after=settings.unload_after if settings.unload_after is not None else base.unload_after,
            max_loaded=settings.max_loaded if settings.max_loaded is not None else base.max_loaded,
        )
    gauges = app[metrics.METRICS] = metrics.Metrics()
    spaces = app[SPACES] = Spaces(settings.data_dir, me.private_key, me.peer_id, member_name(settings), time.time)
    shared_bans = BanList()

    def build(space: Space) -> None:
        first = not spaces.spaces or space is spaces.spaces[0]
        given = store if (store is not None and first) else None
        where = space.dir
        space.runtime = Runtime(
            (lambda: given) if given is not None else (lambda: SQLiteStore(where)),
            peer_id=lambda: me.peer_id,
            listen=settings.listen_address(),
            config=config,
            session_gap=settings.session_gap,
            save_peers=lambda peers: identity.save_peers(where, peers),
            on_commit=gauges.observe_commit,
            access=space.access,
            on_space=lambda effect: spaces.on_effect(space, effect),
        )
        space.peering = Peering(space.runtime, spaces.identity_for(space))
        space.peering.bans = shared_bans
        space.peering.enabled = not space.removed
        space.peering.closed_by_peer = lambda reason: spaces.refused(space, reason)

    spaces.load(app[NETWORK_KEY])
    for space in spaces:
        build(space)
    spaces.build = build
    runtime = spaces.first.runtime
    peering = spaces.first.peering
    gauges.watch(runtime, peering, spaces)
    app[RUNTIME] = runtime
    app[PEERING] = peering
    where = discovery.plan(settings.discovery, settings.host, settings.advertise)
    lan = app[discovery.DISCOVERY] = discovery.Discovery(runtime, me.network_key, me.peer_id, settings.port, where)
    supervisors: dict[Space, asyncio.Task[None]] = {}

    async def start_space(space: Space, joins: list[str]) -> None:
        await space.runtime.start()
        space.runtime.gossip.restore_peers(identity.load_peers(space.dir))
        if space.join:
            joins = [*joins, space.join["address"]]
        started: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        supervisor = asyncio.create_task(space.peering.run(started, joins))
        # Started, or failed before it could start: either way, do not hang.
        await asyncio.wait([started, supervisor], return_when=asyncio.FIRST_COMPLETED)
        if supervisor.done():
            await space.runtime.stop()
            supervisor.result()  # raises what stopped it
            raise RuntimeError("the peer links stopped while starting")
        supervisors[space] = supervisor

    async def stop_space(space: Space) -> None:
        space.peering.stop()
        supervisor = supervisors.pop(space, None)
        if supervisor is not None:
            await supervisor
        await space.runtime.stop()

    spaces.start = lambda space: start_space(space, [])

    async def runtime_ctx(app: web.Application) -> AsyncIterator[None]:
        joined: dict[Space, list[str]] = {}
        for address, invite in settings.join:
            found = parse_space_invite(invite) if invite and invite.startswith(addresses.INVITE_PREFIX) else None
            if found is not None:
                target = spaces.join(found)  # built by spaces.build, started below
                if target is not spaces.first:
                    joined.setdefault(target, []).append(address)
                    continue
            joined.setdefault(spaces.first, []).append(address)
        started: list[Space] = []
        try:
            for space in list(spaces):
                await start_space(space, joined.get(space, []))
                started.append(space)
        except BaseException:
            for space in reversed(started):
                await stop_space(space)
            raise
        await lan.start()
        try:
            yield
        finally:
            await lan.stop()
            for space in list(spaces):
                space.peering.stop()
            for space in reversed(list(spaces)):
                if space in supervisors or space.runtime.engine is not None:
                    await stop_space(space)

    app.cleanup_ctx.append(runtime_ctx)
    if settings.metrics_address is not None:
        host, port = settings.metrics_address

        async def metrics_ctx(app: web.Application) -> AsyncIterator[None]:
            runner, app[METRICS_PORT] = await metrics.serve_separately(gauges, host, port)
            try:
                yield
            finally:
                await runner.cleanup()

        app.cleanup_ctx.append(metrics_ctx)
    app.on_shutdown.append(browser_ws.close_all)

    async def close_links(app: web.Application) -> None:
        for space in spaces:  # inbound peer handlers end with their links, so shutdown does not wait on them
            space.peering.stop()

    app.on_shutdown.append(close_links)
    pages.add_routes(app)
    peer_pages.add_routes(app)
    history_pages.add_routes(app)
    life_pages.add_routes(app)
    space_pages.add_routes(app)
    space_html.add_routes(app)
    app.router.add_get("/ws/{name}", browser_ws.handle)
    app.router.add_get("/peer", peering_module.handle)
    app.router.add_get("/metrics", metrics.handle)
    app.router.add_get("/static/{digest}/{path:.+}", static.handle)
    return app
