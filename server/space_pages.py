"""The spaces' JSON API (``server.spaces``): list and make spaces, invite
to one, change a member's role, remove a member, move a document.

A space this peer is not in does not exist here: every route answers 404
for it, as for a document of it."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from aiohttp import web

from crdt import history as hist
from crdt.errors import InvalidName
from crdt.names import validate_name
from server import addresses
from server.keys import SETTINGS
from server.pages import json_error, render
from server.runtime import DocumentExists, DocumentNotFound
from server.spaces import SPACES, Space, SpaceError, Spaces

MAX_BODY = 64 * 1024


def add_routes(app: web.Application) -> None:
    app.router.add_get("/api/spaces", api_spaces)
    app.router.add_post("/api/spaces", api_create)
    app.router.add_get("/api/spaces/{space}", api_space)
    app.router.add_post("/api/spaces/{space}/invites", api_invite)
    app.router.add_post("/api/spaces/{space}/rename", api_rename)
    app.router.add_post("/api/spaces/{space}/seal", api_seal)
    app.router.add_post("/api/spaces/{space}/members/{peer}", api_role)
    app.router.add_delete("/api/spaces/{space}/members/{peer}", api_remove)
    app.router.add_post("/api/docs/{name}/move", api_move)
    app.router.add_post("/doc/{name}/move", form_move)


async def payload(request: web.Request) -> dict[str, Any]:
    if not request.can_read_body:
        return {}
    try:
        body = await request.json()
    except ValueError as exc:
        raise json_error(400, "the body must be a JSON object") from exc
    if not isinstance(body, dict):
        raise json_error(400, "the body must be a JSON object")
    return body


def _space(request: web.Request) -> Space:
    try:
        return request.app[SPACES].find(request.match_info["space"])
    except SpaceError as exc:
        raise json_error(404, str(exc)) from exc


def _fail(exc: SpaceError) -> web.HTTPException:
    return json_error(exc.status if exc.status in (400, 403, 404, 409) else 400, str(exc))


def space_json(spaces: Spaces, space: Space, members: bool = False) -> dict[str, Any]:
    body = spaces.summary(space)
    if members:
        body["members"] = spaces.members(space)
        body["open"] = space.roster.open
        body["you"] = space.access.me.hex()
    return body


async def api_spaces(request: web.Request) -> web.Response:
    spaces = request.app[SPACES]
    return web.json_response([space_json(spaces, s) for s in spaces])


async def api_create(request: web.Request) -> web.Response:
    spaces = request.app[SPACES]
    name = (await payload(request)).get("name")
    try:
        validate_name(name)
        space = spaces.create(str(name))
    except InvalidName as exc:
        raise json_error(400, str(exc)) from exc
    except SpaceError as exc:
        raise _fail(exc) from exc
    await spaces.start(space)
    body = space_json(spaces, space, members=True)
    return web.json_response(body, status=201, headers={"Location": f"/api/spaces/{spaces.label(space)}"})


async def api_space(request: web.Request) -> web.Response:
    return web.json_response(space_json(request.app[SPACES], _space(request), members=True))


def invite_text(request: web.Request, space: Space, role: str, address: str | None = None) -> dict[str, Any]:
    """A one-time invite to *space*, at the address others reach this peer at."""
    settings = request.app[SETTINGS]
    reach = addresses.reach(settings.host, settings.port, settings.advertise)
    if address is not None:
        reach = addresses.reach(addresses.host_of(address), settings.port, address)
    if not reach.address:
        raise json_error(409, "this peer accepts no links (--advertise none): nobody could join with an invite")
    invite = request.app[SPACES].invite(space, reach.address, role)
    return {
        "invite": invite.text(),
        "space": request.app[SPACES].label(space),
        "role": role,
        "address": reach.address,
        "reachable": reach.reachable,
        "warning": reach.warning,
        "expires_in_days": 7,
    }


async def api_invite(request: web.Request) -> web.Response:
    space = _space(request)
    body = await payload(request)
    role = body.get("role", "writer")
    address = body.get("address")
    if address is not None:
        try:
            address = addresses.parse_address(address)
        except ValueError as exc:
            raise json_error(400, str(exc)) from exc
    if role not in ("writer", "reader", "admin"):
        raise json_error(400, '"role" is "writer", "reader" or "admin"')
    try:
        return web.json_response(invite_text(request, space, role, address), status=201)
    except SpaceError as exc:
        raise _fail(exc) from exc


def _peer(request: web.Request, space: Space) -> bytes:
    raw = request.match_info["peer"]
    try:
        peer = bytes.fromhex(raw)
    except ValueError:
        peer = b""
    if len(peer) != 16:
        raise json_error(400, "a peer is its 32-digit hex id")
    if peer not in space.roster.members:
        raise json_error(404, f"{raw} is not a member of {space.name}")
    return peer


def _changed(request: web.Request, space: Space, change: Callable[[], None]) -> web.Response:
    """Make a roster change; the answer is the space as it is now."""
    try:
        change()
    except SpaceError as exc:
        raise _fail(exc) from exc
    return web.json_response(space_json(request.app[SPACES], space, members=True))


async def api_role(request: web.Request) -> web.Response:
    space = _space(request)
    peer = _peer(request, space)
    role = (await payload(request)).get("role")
    if role not in ("admin", "writer", "reader"):
        raise json_error(400, '"role" is "admin", "writer" or "reader"')
    return _changed(request, space, lambda: request.app[SPACES].set_role(space, peer, role))


async def api_remove(request: web.Request) -> web.Response:
    space = _space(request)
    peer = _peer(request, space)
    return _changed(request, space, lambda: request.app[SPACES].remove(space, peer))


async def api_seal(request: web.Request) -> web.Response:
    space = _space(request)
    return _changed(request, space, lambda: request.app[SPACES].seal(space))


async def api_rename(request: web.Request) -> web.Response:
    space = _space(request)
    name = (await payload(request)).get("name")
    try:
        validate_name(name)
    except InvalidName as exc:
        raise json_error(400, str(exc)) from exc
    return _changed(request, space, lambda: request.app[SPACES].rename(space, str(name)))


async def move(spaces: Spaces, source: Space, name: str, target: Space, by: hist.Author) -> str:
    """Move *name* from *source* to *target*: its whole state (text, history,
    authors) becomes a document of *target*, and it goes to *source*'s Trash,
    where its members see it leave. Returns how *target* names it."""
    if target is source:
        raise SpaceError(f"{name} is in {source.name} already", 409)
    for space in (source, target):
        if not space.runtime.writable:
            raise SpaceError(f"you may not change {space.name} (your role: {space.role or 'none'})", 403)
    if target.runtime.exists(name):
        raise SpaceError(f"{target.name} has a document called {name!r} already: rename one first", 409)
    session = await source.runtime.session_of(source.runtime.key(name))
    state = session.document.diff(b"\x00")
    await target.runtime.create(name)
    target.runtime.import_state(target.runtime.key(name), state)
    await target.runtime.durable()
    await source.runtime.delete(name, by)
    return spaces.ref(target, name)


async def api_move(request: web.Request) -> web.Response:
    spaces = request.app[SPACES]
    try:
        source, raw = spaces.resolve(request.match_info["name"])
        name = validate_name(raw)
        body = await payload(request)
        target = spaces.find(str(body.get("space") or ""))
        if not source.runtime.exists(name):
            raise DocumentNotFound(f"no document named {name!r}")
        by = hist.Author(str(body.get("by") or "")[:64], "", source.runtime.peer_hex)
        ref = await move(spaces, source, name, target, by)
    except InvalidName as exc:
        raise json_error(400, str(exc)) from exc
    except SpaceError as exc:
        raise _fail(exc) from exc
    except (DocumentNotFound, DocumentExists) as exc:
        raise json_error(404 if isinstance(exc, DocumentNotFound) else 409, str(exc)) from exc
    body = {"name": name, "space": spaces.label(target), "ref": ref}
    return web.json_response(body, headers={"Location": f"/api/docs/{ref}"})


async def form_move(request: web.Request) -> web.Response:
    """The editor's Move form: the document opens again in its new space."""
    spaces = request.app[SPACES]
    form = await request.post()
    try:
        source, raw = spaces.resolve(request.match_info["name"])
        name = validate_name(raw)
        target = spaces.find(str(form.get("space") or ""))
        if not source.runtime.exists(name):
            raise DocumentNotFound(f"no document named {name!r}")
        ref = await move(spaces, source, name, target, hist.Author("", "", source.runtime.peer_hex))
    except (InvalidName, SpaceError, DocumentNotFound, DocumentExists) as exc:
        status = exc.status if isinstance(exc, SpaceError) else 400
        return render(request, "error.html", status=status, title="Cannot move the document", message=str(exc))
    raise web.HTTPSeeOther(f"/doc/{ref}")
