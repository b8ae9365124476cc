"""HTTP routes: the HTML pages (document list, editor, export, import) and
the JSON API. Names are checked here, at the edge, with one message."""

from __future__ import annotations

import json
import re
import unicodedata
import urllib.parse
from collections.abc import Awaitable
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from crdt.document import MAX_DOCUMENT_BYTES
from crdt.errors import InvalidName
from crdt.names import MAX_NAME_LENGTH, NAME_RULE, validate_name
from crdt.store import DocumentInfo
from server.assets import VENDOR_BUNDLE
from server.browser_ws import MAX_FRAME_BYTES
from server.keys import PEERING, RUNTIME, STATIC, TEMPLATES
from server.runtime import DocumentExists, DocumentNotFound, Runtime
from server.security import CSP_HASHES, script_hash

# Largest text file accepted by import (and by POST /api/docs with "text").
MAX_IMPORT_BYTES = 8 * 1024 * 1024


def add_routes(app: web.Application) -> None:
    app.router.add_get("/", index)
    app.router.add_post("/docs", create_from_form)
    app.router.add_post("/docs/import", import_file)
    app.router.add_get("/doc/{name}", editor)
    app.router.add_get("/doc/{name}/export", export)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/api/docs", api_list)
    app.router.add_post("/api/docs", api_create)
    app.router.add_get("/api/docs/{name}", api_get)
    app.router.add_get("/favicon.ico", favicon)


async def favicon(request: web.Request) -> web.Response:
    return web.Response(status=204)


def render(request: web.Request, template: str, status: int = 200, **context: Any) -> web.Response:
    html = request.app[TEMPLATES].get_template(template).render(request=request, **context)
    return web.Response(text=html, content_type="text/html", status=status)


def _name(request: web.Request, raw: object, *, html: bool) -> str:
    try:
        return validate_name(raw)
    except InvalidName as exc:
        if html:
            raise web.HTTPBadRequest(
                text=render(request, "error.html", status=400, title="Invalid name", message=str(exc)).text,
                content_type="text/html",
            ) from exc
        raise json_error(400, str(exc)) from exc


def json_error(status: int, message: str) -> web.HTTPException:
    body = json.dumps({"error": message})
    if status == 413:
        return web.HTTPRequestEntityTooLarge(
            max_size=MAX_IMPORT_BYTES, actual_size=0, text=body, content_type="application/json"
        )
    classes: dict[int, type[web.HTTPException]] = {
        400: web.HTTPBadRequest,
        404: web.HTTPNotFound,
        409: web.HTTPConflict,
    }
    return classes[status](text=body, content_type="application/json")


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _doc_json(info: DocumentInfo) -> dict[str, Any]:
    """``length`` counts Unicode code points; times are ISO 8601, UTC."""
    return {
        "name": info.name,
        "length": info.length,
        "updated_at": _iso(info.updated_at),
        "created_at": _iso(info.created_at),
    }


def _infos(runtime: Runtime) -> list[DocumentInfo]:
    return [runtime.info(name) for name in runtime.names()]


def _missing(request: web.Request, runtime: Runtime, name: str, suffix: str = "") -> web.Response:
    """The answer for /doc/{name} when no live document has that name: a
    redirect to the document's new name if it was renamed, else a page that
    says whether it is in the Trash."""
    moved = runtime.core.registry.moved(name)
    if moved is not None:
        query = f"?{request.query_string}" if request.query_string else ""
        raise web.HTTPFound(f"/doc/{runtime.name_of(moved)}{suffix}{query}")
    in_trash = runtime.core.registry.trashed(name) is not None
    return render(request, "missing.html", status=404, name=name, in_trash=in_trash)


# -- pages ---------------------------------------------------------------------


async def index(
    request: web.Request,
    *,
    status: int = 200,
    problem: str | None = None,
    form: str = "",
    typed: str = "",
    existing: str | None = None,
) -> web.Response:
    """The documents page; *problem* is shown on the *form* ("create" or
    "import") that caused it, with what was *typed* kept."""
    runtime = request.app[RUNTIME]
    return render(
        request, "index.html", status=status, documents=_infos(runtime), name_rule=NAME_RULE,
        problem=problem, problem_form=form, typed=typed, existing=existing,
        notice=request.query.get("notice", ""), undo=request.query.get("undo", ""),
    )  # fmt: skip


async def editor(request: web.Request) -> web.Response:
    name = _name(request, request.match_info["name"], html=True)
    runtime = request.app[RUNTIME]
    if not runtime.exists(name):
        return _missing(request, runtime, name)
    static = request.app[STATIC]
    modules = {"meshpad-vendor": VENDOR_BUNDLE, "meshpad-history": "history.js", "meshpad-life": "life.js"}
    importmap = json.dumps({"imports": {module: static.url(path) for module, path in modules.items()}})
    request[CSP_HASHES] = [script_hash(importmap)]
    return render(
        request,
        "editor.html",
        name=name,
        key=runtime.key(name),
        name_rule=NAME_RULE,
        importmap=importmap,
        max_document_bytes=MAX_DOCUMENT_BYTES,
        max_frame_bytes=MAX_FRAME_BYTES,
    )


async def create_from_form(request: web.Request) -> web.Response:
    form = await request.post()
    typed = str(form.get("name", "")).strip()
    try:
        name = validate_name(typed)
        await request.app[RUNTIME].create(name)
    except InvalidName as exc:
        return await index(request, status=400, problem=str(exc), form="create", typed=typed)
    except DocumentExists:
        return await index(
            request, status=409, problem=f"A document named “{name}” already exists.", form="create", typed=typed,
            existing=name,
        )  # fmt: skip
    raise web.HTTPSeeOther(f"/doc/{name}")


async def import_file(request: web.Request) -> web.Response:
    form = await request.post()
    upload = form.get("file")
    typed = str(form.get("name") or "").strip()

    def refuse(status: int, problem: str, existing: str | None = None) -> Awaitable[web.Response]:
        return index(request, status=status, problem=problem, form="import", typed=typed, existing=existing)

    if not isinstance(upload, web.FileField):
        return await refuse(400, "Choose a text file to import.")
    raw = upload.file.read(MAX_IMPORT_BYTES + 1)
    if len(raw) > MAX_IMPORT_BYTES:
        return await refuse(413, f"The file is larger than {MAX_IMPORT_BYTES // (1024 * 1024)} MiB.")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        return await refuse(400, "The file is not UTF-8 text.")
    try:
        # Some clients percent-encode the file name in the form (aiohttp's does).
        name = validate_name(typed) if typed else name_from_filename(urllib.parse.unquote(upload.filename))
    except InvalidName as exc:
        return await refuse(400, str(exc))
    try:
        await request.app[RUNTIME].create(name, text)
    except DocumentExists:
        return await refuse(409, f"A document named “{name}” already exists: choose another name.", name)
    raise web.HTTPSeeOther(f"/doc/{name}")


def name_from_filename(filename: str) -> str:
    """A valid document name made from a file's name: ``My Notes (v2).md``
    becomes ``My-Notes-v2``. Accents are dropped, every run of other
    characters becomes one ``-``."""
    stem = filename.rsplit("/", 1)[-1].rsplit("\\", 1)[-1]
    if "." in stem.lstrip("."):
        stem = stem.rsplit(".", 1)[0]
    ascii_only = unicodedata.normalize("NFKD", stem).encode("ascii", "ignore").decode()
    name = re.sub(r"[^A-Za-z0-9_.-]+", "-", ascii_only).strip("-.")
    name = re.sub(r"-{2,}", "-", name)[:MAX_NAME_LENGTH].rstrip("-.") or "imported"
    return validate_name(name)


async def export(request: web.Request) -> web.Response:
    name = _name(request, request.match_info["name"], html=True)
    runtime = request.app[RUNTIME]
    if not runtime.exists(name):
        return _missing(request, runtime, name, "/export")
    session = await runtime.session(name)
    return web.Response(
        text=session.document.text,
        content_type="text/markdown",
        charset="utf-8",
        headers={"Content-Disposition": f'attachment; filename="{name}.md"'},
    )


async def healthz(request: web.Request) -> web.Response:
    runtime = request.app[RUNTIME]
    store = runtime.store
    body = {
        "status": "ok" if store.failed is None else "store failed",
        "documents": len(runtime.names()),
        "connections": len(runtime.connections),
        "store_backlog": store.backlog(),
        "store_commits": store.batches,
        "frames_refused": runtime.frames_refused,
        "peer_links_refused": request.app[PEERING].refused,
        "peer_links_banned": request.app[PEERING].bans.refused,
        "peer_wire_bytes_in": request.app[PEERING].wire_in,
        "peer_wire_bytes_out": request.app[PEERING].wire_out,
    }
    return web.json_response(body, status=200 if store.failed is None else 503)


# -- JSON API ------------------------------------------------------------------


async def api_list(request: web.Request) -> web.Response:
    return web.json_response([_doc_json(i) for i in _infos(request.app[RUNTIME])])


async def api_get(request: web.Request) -> web.Response:
    name = _name(request, request.match_info["name"], html=False)
    runtime = request.app[RUNTIME]
    try:
        key = runtime.key(name)
    except DocumentNotFound as exc:
        missing = {"error": str(exc)} | ({"name": exc.moved_to} if exc.moved_to else {})
        raise web.HTTPNotFound(text=json.dumps(missing), content_type="application/json") from exc
    session = await runtime.session_of(key)
    body = _doc_json(runtime.info(name))
    body["text"] = session.document.text
    body["length"] = len(body["text"])
    return web.json_response(body)


async def api_create(request: web.Request) -> web.Response:
    try:
        payload = await request.json()
    except ValueError as exc:
        raise json_error(400, 'body must be JSON: {"name": ..., "text": optional}') from exc
    if not isinstance(payload, dict):
        raise json_error(400, "body must be a JSON object")
    name = _name(request, payload.get("name"), html=False)
    text = payload.get("text", "")
    if not isinstance(text, str):
        raise json_error(400, '"text" must be a string')
    if len(text.encode("utf-8")) > MAX_IMPORT_BYTES:
        raise json_error(413, "text too large")
    runtime = request.app[RUNTIME]
    try:
        await runtime.create(name, text)
    except DocumentExists as exc:
        raise json_error(409, str(exc)) from exc
    await runtime.durable()  # 201 means it is on disk
    body = _doc_json(runtime.info(name))
    body["text"] = text
    return web.json_response(body, status=201, headers={"Location": f"/api/docs/{name}"})
