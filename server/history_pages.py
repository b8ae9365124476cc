"""HTTP routes of a document's history: the JSON API (list, open, name,
restore, who wrote what) and the pages that show it without the editor.

What a route returns is computed by ``crdt.history`` from the document
itself; this module checks what comes in and says what went wrong. A name
or a restore answers only once what it wrote is on disk.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from crdt import history
from crdt.errors import InvalidName
from crdt.names import validate_name
from server.pages import json_error, render
from server.runtime import Runtime
from server.spaces import SPACES, SpaceError


def add_routes(app: web.Application) -> None:
    app.router.add_get("/api/docs/{name}/history", api_history)
    app.router.add_get("/api/docs/{name}/versions/{id}", api_version)
    app.router.add_post("/api/docs/{name}/versions", api_name_version)
    app.router.add_post("/api/docs/{name}/restore", api_restore)
    app.router.add_get("/api/docs/{name}/attribution", api_attribution)
    app.router.add_get("/doc/{name}/history", history_page)
    app.router.add_get("/doc/{name}/versions/{id}", version_page)
    app.router.add_post("/doc/{name}/versions", name_from_form)
    app.router.add_post("/doc/{name}/restore", restore_from_form)


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


async def _history(
    request: web.Request, *, html: bool = False, write: bool = False
) -> tuple[Runtime, str, history.History]:
    try:
        space, raw = request.app[SPACES].resolve(request.match_info["name"])
        name = validate_name(raw)
    except SpaceError as exc:
        raise _error(404, str(exc), html) from exc
    except InvalidName as exc:
        raise _error(400, str(exc), html) from exc
    runtime = space.runtime
    if write and not runtime.writable:
        raise _error(403, f"you may read {space.name} but not change it (your role: {space.role or 'none'})", html)
    if not runtime.exists(name):
        raise _error(404, f"no document named {name!r}", html)
    await runtime.session(name)
    return runtime, name, runtime.history(name)


def _error(status: int, message: str, html: bool) -> web.HTTPException:
    if not html:
        return json_error(status, message)
    classes: dict[int, type[web.HTTPException]] = {
        400: web.HTTPBadRequest,
        403: web.HTTPForbidden,
        404: web.HTTPNotFound,
    }
    return classes[status](text=f"{message}\n")


def _version_id(request: web.Request, raw: object, html: bool = False) -> str:
    try:
        return history.check_id(raw)
    except ValueError as exc:
        raise _error(400, str(exc), html) from exc


def _summary(version: history.Version) -> dict[str, Any]:
    body = version.summary()
    body["at"] = iso(version.at)
    return body


def _person(payload: dict[str, Any], runtime: Runtime) -> history.Author:
    """Who asks (the editor sends the name and colour its person set)."""
    author = payload.get("author")
    if author is None:
        return history.Author("", "", runtime.peer_hex)
    if not isinstance(author, dict):
        raise json_error(400, '"author" must be an object: {"name", "color"}')
    name, color = author.get("name", ""), author.get("color", "")
    if not isinstance(name, str) or not isinstance(color, str) or len(name) > 80 or len(color) > 16:
        raise json_error(400, '"author" has a "name" (at most 80 characters) and a "color" (#rrggbb)')
    return history.Author(name.strip(), color, runtime.peer_hex)


async def _payload(request: web.Request) -> dict[str, Any]:
    try:
        payload = await request.json()
    except ValueError as exc:
        raise json_error(400, "the body must be a JSON object") from exc
    if not isinstance(payload, dict):
        raise json_error(400, "the body must be a JSON object")
    return payload


# -- JSON API ----------------------------------------------------------------------


async def api_history(request: web.Request) -> web.Response:
    runtime, name, h = await _history(request)
    recorder = runtime.recorder(name)
    open_session = None
    if recorder is not None and recorder.session is not None:
        s = recorder.session
        open_session = {
            "since": iso(s.started),
            "last": iso(s.last),
            "authors": [a.as_json() for a in s.authors.values()],
            "inserted": s.inserted,
            "deleted": s.deleted,
        }
    return web.json_response({"versions": [_summary(v) for v in h.versions()], "session": open_session})


def open_version(h: history.History, version_id: str) -> dict[str, Any]:
    """A version's text and what changed since the one before it. Raises
    VersionNotFound, VersionNotHeld."""
    version = h.find(version_id)
    previous = h.previous(version)
    body = _summary(version)
    body["text"] = h.text(version)
    body["previous"] = previous.id if previous is not None else None
    if previous is not None and not h.holds(previous):
        previous = None
    spans = h.compare(version, previous)
    authors = h.authors()
    remover = version.authors[0].as_json() if len(version.authors) == 1 else None
    body["changes"] = (
        None
        if spans is None
        else [
            {
                "op": s.op,
                "text": s.text,
                "author": authors.get(s.client, history.UNKNOWN).as_json(),
                "removed_by": remover if s.op == "-" else None,
            }
            for s in spans
        ]
    )
    return body


async def api_version(request: web.Request) -> web.Response:
    _, _, h = await _history(request)
    version_id = _version_id(request, request.match_info["id"])
    try:
        return web.json_response(open_version(h, version_id))
    except history.VersionNotFound:
        raise json_error(404, f"no version {version_id} in this document's history on this peer") from None
    except history.VersionNotHeld:
        raise json_error(
            404, f"this peer does not hold yet the changes that version {version_id} covers; try again once synced"
        ) from None


async def name_version(runtime: Runtime, name: str, label: object, by: history.Author) -> dict[str, Any]:
    if not isinstance(label, str):
        raise ValueError('"label" must be a string')
    await runtime.session(name)
    version_id = runtime.name_version(name, label, by)  # what was typed before gets its own version first
    await runtime.durable()
    return _summary(runtime.history(name).find(version_id))


async def api_name_version(request: web.Request) -> web.Response:
    runtime, name, _ = await _history(request, write=True)
    payload = await _payload(request)
    try:
        body = await name_version(runtime, name, payload.get("label"), _person(payload, runtime))
    except ValueError as exc:
        raise json_error(400, str(exc)) from exc
    return web.json_response(body, status=201, headers={"Location": f"/api/docs/{name}/versions/{body['id']}"})


async def restore(runtime: Runtime, name: str, version_id: str, by: history.Author) -> dict[str, Any]:
    session = await runtime.session(name)
    restored_id = runtime.restore(name, version_id, by)
    await runtime.durable()
    body = _summary(runtime.history(name).find(restored_id))
    body["text"] = session.document.text
    return body


async def api_restore(request: web.Request) -> web.Response:
    runtime, name, _ = await _history(request, write=True)
    payload = await _payload(request)
    version_id = _version_id(request, payload.get("version"))
    try:
        body = await restore(runtime, name, version_id, _person(payload, runtime))
    except history.VersionNotFound:
        raise json_error(404, f"no version {version_id} in this document's history on this peer") from None
    except history.VersionNotHeld:
        raise json_error(404, f"this peer does not hold yet the changes that version {version_id} covers") from None
    return web.json_response(body)


async def api_attribution(request: web.Request) -> web.Response:
    _, _, h = await _history(request)
    authors = h.authors()
    ranges = h.attribution()
    clients = sorted({c for _, _, c in ranges})
    return web.json_response(
        {
            "ranges": [{"start": a, "end": b, "client": c} for a, b, c in ranges],
            "authors": {str(c): authors.get(c, history.UNKNOWN).as_json() for c in clients},
        }
    )


# -- pages -------------------------------------------------------------------------


async def history_page(request: web.Request) -> web.Response:
    _, name, h = await _history(request, html=True)
    return render(request, "history.html", name=name, versions=[_summary(v) for v in h.versions()])


async def version_page(request: web.Request) -> web.Response:
    _, name, h = await _history(request, html=True)
    version_id = _version_id(request, request.match_info["id"], html=True)
    try:
        body = open_version(h, version_id)
    except history.VersionNotFound:
        return render(request, "error.html", status=404, title="No such version",
                      message=f"The history of “{name}” on this peer has no version {version_id}.")  # fmt: skip
    except history.VersionNotHeld:
        return render(request, "error.html", status=404, title="Not here yet",
                      message=f"This peer does not hold yet the changes that version {version_id} covers. "
                      "Try again once it has synced with the others.")  # fmt: skip
    return render(request, "version.html", name=name, version=body)


async def name_from_form(request: web.Request) -> web.Response:
    runtime, name, _ = await _history(request, html=True, write=True)
    form = await request.post()
    try:
        await name_version(runtime, name, str(form.get("label") or ""), history.Author("", "", runtime.peer_hex))
    except ValueError as exc:
        return render(request, "error.html", status=400, title="Cannot name the version", message=str(exc))
    raise web.HTTPSeeOther(f"/doc/{name}/history")


async def restore_from_form(request: web.Request) -> web.Response:
    runtime, name, _ = await _history(request, html=True, write=True)
    form = await request.post()
    version_id = _version_id(request, form.get("version"), html=True)
    try:
        await restore(runtime, name, version_id, history.Author("", "", runtime.peer_hex))
    except (history.VersionNotFound, history.VersionNotHeld):
        return render(request, "error.html", status=404, title="Cannot restore",
                      message=f"Version {version_id} cannot be opened on this peer.")  # fmt: skip
    raise web.HTTPSeeOther(f"/doc/{name}/history")
