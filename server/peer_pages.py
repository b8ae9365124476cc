"""HTTP routes about other peers: the Peers page, ``GET /api/peers``,
``POST /api/peers`` (dial an address or an invite), ``GET /api/invite``
(what another machine joins with) and ``GET /api/discovery`` (finding peers
on the local network, ``server.discovery``). A row of a peer found on the
local network says ``"found": "lan"``.

An address or invite that a person types is checked here with
``server.addresses``; an invite for another network is refused with a reason
rather than dialled, since its handshakes could only fail.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from aiohttp import web

from crdt.roster import legacy_space_id
from crdt.secure import network_key_from_text
from server import addresses
from server.discovery import DISCOVERY
from server.keys import NETWORK_KEY, RUNTIME, SETTINGS
from server.pages import json_error, render
from server.spaces import SPACES, parse_space_invite

# How often the Peers page refreshes its table (static/peers.js reads it from the page).
REFRESH_SECONDS = 2.0
JOIN_RULE = "an invite (meshpad://HOST:PORT#KEY, as `meshpad invite` prints it) or a peer address HOST:PORT"


def add_routes(app: web.Application) -> None:
    app.router.add_get("/peers", peers_page)
    app.router.add_get("/peers/table", peers_table)
    app.router.add_post("/peers", connect_from_form)
    app.router.add_get("/api/peers", api_peers)
    app.router.add_post("/api/peers", api_connect)
    app.router.add_get("/api/invite", api_invite)
    app.router.add_get("/api/discovery", api_discovery)


# -- what others dial ------------------------------------------------------------------


def invite(request: web.Request, address: str | None = None) -> dict[str, Any]:
    """This peer's invite and what a person should know about it."""
    settings = request.app[SETTINGS]
    reach = addresses.reach(settings.host, settings.port, settings.advertise)
    if address is not None:
        reach = addresses.reach(addresses.host_of(address), settings.port, address)
    key = request.app[NETWORK_KEY]
    return {
        "invite": addresses.make_invite(reach.address, key) if reach.address else None,
        "address": reach.address,
        "reachable": reach.reachable,
        "warning": reach.warning,
        "other_addresses": list(reach.others),
    }


async def api_invite(request: web.Request) -> web.Response:
    address = request.query.get("address")
    if address is not None:
        try:
            address = addresses.parse_address(address)
        except ValueError as exc:
            raise json_error(400, str(exc)) from exc
    return web.json_response(invite(request, address))


# -- the table -------------------------------------------------------------------------


def peer_rows(request: web.Request) -> list[dict[str, Any]]:
    """The node's rows as JSON: times become seconds ago."""
    runtime = request.app[RUNTIME]
    now = runtime.now()
    rows = []
    for row in runtime.gossip.peer_rows(now):
        body = asdict(row)
        heard, check = body.pop("last_heard"), body.pop("last_sync_check")
        body["last_heard_s_ago"] = None if heard is None else round(now - heard, 2)
        body["last_sync_check_s_ago"] = None if check is None else round(now - check, 2)
        body["found"] = "lan" if runtime.found_on_lan_at(row.id, row.address) else None
        rows.append(body)
    return rows


async def api_peers(request: web.Request) -> web.Response:
    return web.json_response(peer_rows(request))


async def api_discovery(request: web.Request) -> web.Response:
    """Finding peers on the local network: whether it runs, where, and what it heard."""
    return web.json_response(request.app[DISCOVERY].snapshot())


def _table_context(request: web.Request) -> dict[str, Any]:
    node = request.app[RUNTIME].gossip
    return {"peers": peer_rows(request), "documents": len(node.documents), "lan": request.app[DISCOVERY].snapshot()}


async def peers_table(request: web.Request) -> web.Response:
    """The table alone, for the page's script to refresh it in place."""
    return render(request, "peers_table.html", **_table_context(request))


async def peers_page(request: web.Request, *, error: str | None = None, typed: str = "") -> web.Response:
    node = request.app[RUNTIME].gossip
    return render(
        request,
        "peers.html",
        status=400 if error else 200,
        peer_id=node.peer_id.hex(),
        listen=node.listen,
        invite=invite(request),
        join_rule=JOIN_RULE,
        refresh_seconds=REFRESH_SECONDS,
        error=error,
        typed=typed,
        **_table_context(request),
    )


# -- joining -----------------------------------------------------------------------------


async def _join(request: web.Request, text: object) -> str:
    """Dial what a person gave; returns the address. An invite to a space
    this peer is not in yet joins that space; an old network invite of
    another network adds that network as a space. Raises ValueError."""
    if not isinstance(text, str) or not text.strip():
        raise ValueError(f"give {JOIN_RULE}")
    address, key = addresses.parse_join(text)
    spaces = request.app[SPACES]
    space = spaces.first
    if key is not None and key.startswith(addresses.INVITE_PREFIX):
        invite = parse_space_invite(key)
        assert invite is not None
        known = spaces.by_id(invite.space)
        space = spaces.join(invite)
        if known is None:
            await spaces.start(space)  # dials the invite's address with its token
            return address
        space.access.token = invite.token if space.access.joining else b""
    elif key is not None and key != request.app[NETWORK_KEY]:
        known = spaces.by_id(legacy_space_id(network_key_from_text(key)))
        space = spaces.join_network(key)
        if known is None:
            await spaces.start(space)
    runtime = space.runtime
    if runtime.engine is None:
        return address  # still starting: it dials the invite's address itself
    runtime.perform(runtime.core.join(address, runtime.now()))
    return address


async def api_connect(request: web.Request) -> web.Response:
    try:
        payload = await request.json()
    except ValueError as exc:
        raise json_error(400, f'body must be JSON: {{"address": {JOIN_RULE}}}') from exc
    try:
        address = await _join(request, payload.get("address") if isinstance(payload, dict) else None)
    except ValueError as exc:
        raise json_error(400, str(exc)) from exc
    return web.json_response({"address": address, "status": "dialling"}, status=202)


async def connect_from_form(request: web.Request) -> web.Response:
    form = await request.post()
    typed = str(form.get("address") or "")
    try:
        await _join(request, typed)
    except ValueError as exc:
        return await peers_page(request, error=str(exc), typed=typed)
    raise web.HTTPSeeOther("/peers")
