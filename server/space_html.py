"""The spaces' HTML pages: ``/spaces`` (this peer's spaces and a form to
make one) and ``/spaces/{space}`` (its members, their roles, invites).

The pages' script (``static/space.js``) acts through the JSON API of
``server.space_pages``; the forms here do the same without script, and
answer with the page again (an invite shown, or what went wrong)."""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from crdt.errors import InvalidName
from crdt.names import validate_name
from crdt.roster import MAX_SPACE_NAME
from server.pages import ago, render
from server.space_pages import invite_text
from server.spaces import SPACES, Space, SpaceError

ROLES = ("admin", "writer", "reader")
INVITE_ROLES = ("writer", "reader")
SPACE_NAME_RULE = (
    f"a space name is 1 to {MAX_SPACE_NAME} characters of letters A-Z a-z, digits 0-9, "
    "'-', '_' or '.', and does not start with '.'"
)


def add_routes(app: web.Application) -> None:
    app.router.add_get("/spaces", spaces_page)
    app.router.add_post("/spaces", create_from_form)
    app.router.add_get("/spaces/{space}", space_page)
    app.router.add_post("/spaces/{space}/invite", invite_from_form)
    app.router.add_post("/spaces/{space}/seal", seal_from_form)
    app.router.add_post("/spaces/{space}/rename", rename_from_form)
    app.router.add_post("/spaces/{space}/members/{peer}", role_from_form)
    app.router.add_post("/spaces/{space}/members/{peer}/remove", remove_from_form)


# -- /spaces ---------------------------------------------------------------------


async def spaces_page(request: web.Request, *, status: int = 200, problem: str = "", typed: str = "") -> web.Response:
    spaces = request.app[SPACES]
    rows = [spaces.summary(s) for s in spaces]
    return render(
        request,
        "spaces.html",
        status=status,
        rows=rows,
        problem=problem,
        typed=typed,
        name_rule=SPACE_NAME_RULE,
        max_name=MAX_SPACE_NAME,
    )


async def create_from_form(request: web.Request) -> web.Response:
    spaces = request.app[SPACES]
    form = await request.post()
    typed = str(form.get("name", "")).strip()
    try:
        validate_name(typed)
        space = spaces.create(typed)
    except InvalidName:
        problem = f"“{typed}” is not a space name: {SPACE_NAME_RULE}." if typed else "Give the space a name."
        return await spaces_page(request, status=400, problem=problem, typed=typed)
    except SpaceError as exc:
        status = exc.status if exc.status in (400, 409) else 400
        return await spaces_page(request, status=status, problem=_sentence(str(exc)), typed=typed)
    await spaces.start(space)
    raise web.HTTPSeeOther(f"/spaces/{spaces.label(space)}")


# -- /spaces/{space} ---------------------------------------------------------------


def _sentence(text: str) -> str:
    text = text.strip()
    if not text:
        return text
    text = text[0].upper() + text[1:]
    return text if text.endswith((".", "!", "?")) else text + "."


def _find(request: web.Request) -> Space:
    try:
        return request.app[SPACES].find(request.match_info["space"])
    except SpaceError as exc:
        raise web.HTTPNotFound(
            text=render(request, "error.html", status=404, title="No such space", message=_sentence(str(exc))).text,
            content_type="text/html",
        ) from exc


def _members(request: web.Request, space: Space) -> list[dict[str, Any]]:
    spaces = request.app[SPACES]
    now = spaces.wall()
    rows = []
    for m in spaces.members(space):
        if m["me"]:
            seen = "you"
        elif m["connected"]:
            seen = "connected"
        elif m["last_seen"] is None:
            seen = "not seen yet"
        else:
            seen = ago(m["last_seen"], now)
        who = m["name"] or m["peer"][:12]
        rows.append(m | {"seen": seen, "who": who, "short": m["peer"][:12]})
    return rows


async def space_page(
    request: web.Request, *, status: int = 200, problem: str = "", invite: dict[str, Any] | None = None
) -> web.Response:
    spaces = request.app[SPACES]
    space = _find(request)
    label = spaces.label(space)
    admin = space.role == "admin" and not space.removed and not space.joining
    return render(
        request,
        "space.html",
        status=status,
        space=spaces.summary(space),
        label=label,
        members=_members(request, space),
        admin=admin,
        open=space.roster.open,
        roles=ROLES,
        invite_roles=INVITE_ROLES,
        invite=invite,
        problem=problem,
        api=f"/api/spaces/{label}",
        base=f"/spaces/{label}",
        name_rule=SPACE_NAME_RULE,
        max_name=MAX_SPACE_NAME,
    )


async def _refused(request: web.Request, exc: SpaceError | web.HTTPException) -> web.Response:
    """The space page again, saying why *exc* refused what the form asked."""
    if isinstance(exc, SpaceError):
        status, message = (exc.status if exc.status in (400, 403, 404, 409) else 400), str(exc)
    else:
        status = exc.status
        try:
            message = json.loads(exc.text or "{}")["error"]
        except (ValueError, KeyError, TypeError):
            message = exc.text or exc.reason
    return await space_page(request, status=status, problem=_sentence(message))


def _peer(request: web.Request, space: Space) -> bytes | None:
    try:
        peer = bytes.fromhex(request.match_info["peer"])
    except ValueError:
        return None
    return peer if peer in space.roster.members else None


async def invite_from_form(request: web.Request) -> web.Response:
    spaces = request.app[SPACES]
    space = _find(request)
    role = str((await request.post()).get("role", "writer"))
    if role not in INVITE_ROLES:
        return await space_page(request, status=400, problem="An invite is for a writer or a reader.")
    try:
        invite = invite_text(request, space, role)
    except (SpaceError, web.HTTPException) as exc:
        return await _refused(request, exc)
    invite["space"] = spaces.label(space)
    return await space_page(request, status=201, invite=invite)


async def seal_from_form(request: web.Request) -> web.Response:
    spaces = request.app[SPACES]
    space = _find(request)
    try:
        spaces.seal(space)
    except SpaceError as exc:
        return await _refused(request, exc)
    raise web.HTTPSeeOther(f"/spaces/{spaces.label(space)}")


async def rename_from_form(request: web.Request) -> web.Response:
    spaces = request.app[SPACES]
    space = _find(request)
    typed = str((await request.post()).get("name", "")).strip()
    try:
        validate_name(typed)
        spaces.rename(space, typed)
    except InvalidName:
        problem = f"“{typed}” is not a space name: {SPACE_NAME_RULE}." if typed else "Give the space a name."
        return await space_page(request, status=400, problem=problem)
    except SpaceError as exc:
        return await _refused(request, exc)
    raise web.HTTPSeeOther(f"/spaces/{spaces.label(space)}")


async def role_from_form(request: web.Request) -> web.Response:
    spaces = request.app[SPACES]
    space = _find(request)
    peer = _peer(request, space)
    role = str((await request.post()).get("role", ""))
    if peer is None:
        return await space_page(request, status=404, problem="That peer is not a member of this space.")
    if role not in ROLES:
        return await space_page(request, status=400, problem="A role is admin, writer or reader.")
    try:
        spaces.set_role(space, peer, role)
    except SpaceError as exc:
        return await _refused(request, exc)
    raise web.HTTPSeeOther(f"/spaces/{spaces.label(space)}")


async def remove_from_form(request: web.Request) -> web.Response:
    spaces = request.app[SPACES]
    space = _find(request)
    peer = _peer(request, space)
    if peer is None:
        return await space_page(request, status=404, problem="That peer is not a member of this space.")
    try:
        spaces.remove(space, peer)
    except SpaceError as exc:
        return await _refused(request, exc)
    raise web.HTTPSeeOther(f"/spaces/{spaces.label(space)}")
