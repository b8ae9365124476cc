"""HTTP routes for a document's life: delete, the Trash, restore, delete
forever and rename, as JSON (``/api/...``) and as forms for the pages. Names
are checked here, at the edge; what they do is the engine's (``crdt.meta``)."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlencode

from aiohttp import web

from crdt import history
from crdt.errors import InvalidName
from crdt.names import validate_name
from server.history_pages import _payload, _person
from server.keys import RUNTIME
from server.pages import _iso, json_error, render
from server.runtime import DocumentNotFound, NameTaken, Runtime
from server.spaces import SPACES, SpaceError


def add_routes(app: web.Application) -> None:
    app.router.add_delete("/api/docs/{name}", api_delete)
    app.router.add_post("/api/docs/{name}/rename", api_rename)
    app.router.add_get("/api/trash", api_trash)
    app.router.add_post("/api/trash/{name}/restore", api_restore)
    app.router.add_delete("/api/trash/{name}", api_forget)
    app.router.add_get("/trash", trash_page)
    app.router.add_post("/doc/{name}/delete", form_delete)
    app.router.add_post("/doc/{name}/rename", form_rename)
    app.router.add_post("/trash/{name}/restore", form_restore)
    app.router.add_post("/trash/{name}/forget", form_forget)


def _name(raw: object) -> str:
    try:
        return validate_name(raw)
    except InvalidName as exc:
        raise json_error(400, str(exc)) from exc


def _target(request: web.Request) -> tuple[Runtime, str]:
    """The runtime and name a URL's ``{name}`` (``name`` or ``name@space``)
    names; every route here changes the document, so a reader is refused."""
    try:
        space, raw = request.app[SPACES].resolve(request.match_info["name"])
    except SpaceError as exc:
        raise json_error(404, str(exc)) from exc
    name = _name(raw)
    if not space.runtime.writable:
        raise json_error(403, f"you may read {space.name} but not change it (your role: {space.role or 'none'})")
    return space.runtime, name


async def _body(request: web.Request) -> dict[str, Any]:
    """The JSON body (``history_pages._payload``), or {} when there is none."""
    return await _payload(request) if request.can_read_body else {}


def _not_found(exc: DocumentNotFound) -> web.HTTPException:
    body: dict[str, Any] = {"error": str(exc)}
    if exc.moved_to is not None:
        body["name"] = exc.moved_to
    return web.HTTPNotFound(text=json.dumps(body), content_type="application/json")


def trash_json(runtime: Runtime) -> list[dict[str, Any]]:
    return [
        {
            "name": name,
            "deleted_at": _iso(deleted.at),
            "deleted_by": deleted.who,
            "changed_after_delete": changed,
        }
        for _, name, deleted, changed in runtime.trash()
    ]


# -- JSON ----------------------------------------------------------------------------


async def api_delete(request: web.Request) -> web.Response:
    runtime, name = _target(request)
    by = _person(await _body(request), runtime)
    try:
        await runtime.delete(name, by)
    except DocumentNotFound as exc:
        raise _not_found(exc) from exc
    return web.json_response(_entry(runtime, name))


def _entry(runtime: Runtime, name: str) -> dict[str, Any]:
    for entry in trash_json(runtime):
        if entry["name"] == name:
            return entry
    return {"name": name}


async def api_rename(request: web.Request) -> web.Response:
    runtime, name = _target(request)
    payload = await _body(request)
    new = _name(payload.get("name"))
    try:
        await runtime.rename(name, new)
    except DocumentNotFound as exc:
        raise _not_found(exc) from exc
    except NameTaken as exc:
        raise json_error(409, str(exc)) from exc
    info = runtime.info(new)
    return web.json_response(
        {"name": new, "previous_name": name, "length": info.length, "updated_at": _iso(info.updated_at)},
        headers={"Location": f"/api/docs/{new}"},
    )


async def api_trash(request: web.Request) -> web.Response:
    spaces = request.app[SPACES]
    rows = [dict(row, space=spaces.label(space)) for space in spaces for row in trash_json(space.runtime)]
    return web.json_response(rows)


async def api_restore(request: web.Request) -> web.Response:
    runtime, name = _target(request)
    by = _person(await _body(request), runtime)
    try:
        restored = await runtime.undelete(name, by)
    except DocumentNotFound as exc:
        raise _not_found(exc) from exc
    info = runtime.info(restored)
    return web.json_response({"name": restored, "length": info.length, "updated_at": _iso(info.updated_at)})


async def api_forget(request: web.Request) -> web.Response:
    runtime, name = _target(request)
    by = _person(await _body(request), runtime)
    try:
        await runtime.forget(name, by)
    except DocumentNotFound as exc:
        raise _not_found(exc) from exc
    return web.json_response({"name": name, "deleted_forever": True})


# -- pages and forms -------------------------------------------------------------------


async def trash_page(request: web.Request) -> web.Response:
    runtime = request.app[RUNTIME]
    return render(request, "trash.html", entries=runtime.trash(), notice=request.query.get("notice", ""))


def _form_person(form: Any, runtime: Runtime) -> history.Author:
    name = str(form.get("by") or "").strip()[:80]
    return history.Author(name, "", runtime.peer_hex)


async def form_delete(request: web.Request) -> web.Response:
    runtime, name = _target(request)
    form = await request.post()
    try:
        await runtime.delete(name, _form_person(form, runtime))
    except DocumentNotFound as exc:
        return render(request, "error.html", status=404, title="No such document", message=str(exc) + ".")
    raise web.HTTPSeeOther("/?" + urlencode(dict(notice=f"“{name}” was moved to the Trash.", undo=name)))


async def form_rename(request: web.Request) -> web.Response:
    runtime, name = _target(request)
    form = await request.post()
    new = str(form.get("new_name") or "").strip()
    try:
        await runtime.rename(name, new)
    except InvalidName as exc:
        return render(request, "error.html", status=400, title="Invalid name", message=str(exc))
    except DocumentNotFound as exc:
        return render(request, "error.html", status=404, title="No such document", message=str(exc) + ".")
    except NameTaken:
        return render(
            request, "error.html", status=409, title="Name taken",
            message=f"A document named “{new}” already exists: choose another name.",
        )  # fmt: skip
    raise web.HTTPSeeOther(f"/doc/{new}")


async def form_restore(request: web.Request) -> web.Response:
    runtime, name = _target(request)
    form = await request.post()
    try:
        restored = await runtime.undelete(name, _form_person(form, runtime))
    except DocumentNotFound as exc:
        return render(request, "error.html", status=404, title="Not in the Trash", message=str(exc) + ".")
    raise web.HTTPSeeOther(f"/doc/{restored}")


async def form_forget(request: web.Request) -> web.Response:
    runtime, name = _target(request)
    form = await request.post()
    if form.get("confirm") != name:
        return render(
            request, "error.html", status=400, title="Not confirmed",
            message=f"To delete “{name}” forever, type its name to confirm.",
        )  # fmt: skip
    try:
        await runtime.forget(name, _form_person(form, runtime))
    except DocumentNotFound as exc:
        return render(request, "error.html", status=404, title="Not in the Trash", message=str(exc) + ".")
    raise web.HTTPSeeOther("/trash?" + urlencode(dict(notice=f"“{name}” was deleted forever.")))
