"""HTTP routes: the HTML pages (document list, editor, export, import) and
the JSON API. Names are checked here, at the edge, with one message."""

from __future__ import annotations

import json
import re
import unicodedata
import urllib.parse
from collections.abc import Awaitable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from crdt.document import MAX_DOCUMENT_BYTES
from crdt.errors import InvalidName
from crdt.names import MAX_NAME_LENGTH, NAME_RULE, validate_name
from crdt.store import SEARCH_MIN_CHARS, DocumentInfo
from server.assets import VENDOR_BUNDLE, VENDOR_EXTRAS
from server.browser_ws import MAX_FRAME_BYTES
from server.keys import PEERING, RUNTIME, STATIC, TEMPLATES
from server.runtime import DocumentExists, DocumentNotFound, Runtime
from server.security import CSP_HASHES, script_hash
from server.spaces import SPACES, SpaceError

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


def _refusal(request: web.Request, status: int, title: str, message: str, *, html: bool) -> web.HTTPException:
    """An error page for a page route, a JSON error for an API one."""
    if html:
        classes: dict[int, type[web.HTTPException]] = {400: web.HTTPBadRequest, 404: web.HTTPNotFound}
        page = render(request, "error.html", status=status, title=title, message=message)
        return classes[status](text=page.text, content_type="text/html")
    return json_error(status, message)


def _name(request: web.Request, raw: object, *, html: bool) -> str:
    try:
        return validate_name(raw)
    except InvalidName as exc:
        raise _refusal(request, 400, "Invalid name", str(exc), html=html) from exc


def json_error(status: int, message: str) -> web.HTTPException:
    body = json.dumps({"error": message})
    if status == 413:
        return web.HTTPRequestEntityTooLarge(
            max_size=MAX_IMPORT_BYTES, actual_size=0, text=body, content_type="application/json"
        )
    classes: dict[int, type[web.HTTPException]] = {
        400: web.HTTPBadRequest,
        403: web.HTTPForbidden,
        404: web.HTTPNotFound,
        409: web.HTTPConflict,
    }
    return classes[status](text=body, content_type="application/json")


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _doc_json(info: DocumentInfo | Listed, space: str | None = None, ref: str | None = None) -> dict[str, Any]:
    """``length`` counts Unicode code points; times are ISO 8601, UTC;
    ``space`` is the document's space and ``ref`` how URLs name it."""
    return {
        "name": info.name,
        "length": info.length,
        "updated_at": _iso(info.updated_at),
        "created_at": _iso(info.created_at),
        "space": info.space if isinstance(info, Listed) else space,
        "ref": info.ref if isinstance(info, Listed) else (ref or info.name),
    }


# -- the documents list: search, sort, pages -----------------------------------

# Rows on one page of the documents list.
PAGE_SIZE = 50
# Longest search accepted (characters).
MAX_QUERY = 200
SORTS = ("name", "size", "updated")
# The order a sort takes when none is given: names A to Z, the largest and
# the most recently changed first.
DEFAULT_ORDER = {"name": "asc", "size": "desc", "updated": "desc"}


@dataclass(frozen=True)
class ListQuery:
    """What the documents list shows: the documents whose name or text
    contains *q* (literal text, ignoring case; inside texts from
    SEARCH_MIN_CHARS characters on), sorted, from *offset*, at most *limit*
    (None: all)."""

    q: str = ""
    sort: str = "name"
    order: str = "asc"
    offset: int = 0
    limit: int | None = None
    space: str = ""  # one space's documents only (its name or id); "": every space's

    @classmethod
    def parse(cls, query: Mapping[str, str], *, strict: bool, limit: int | None) -> ListQuery:
        """From a request's query string. *strict* (the API): a bad value
        is a ValueError naming it; else (the page) it falls back to the
        default, as a hand-edited address should."""

        def bad(message: str, fallback: Any) -> Any:
            if strict:
                raise ValueError(message)
            return fallback

        q = query.get("q", "").strip()
        if len(q) > MAX_QUERY:
            q = bad(f"q: at most {MAX_QUERY} characters", q[:MAX_QUERY])
        sort = query.get("sort", "name")
        if sort not in SORTS:
            sort = bad(f"sort: one of {', '.join(SORTS)}", "name")
        order = query.get("order", DEFAULT_ORDER[sort])
        if order not in ("asc", "desc"):
            order = bad("order: asc or desc", DEFAULT_ORDER[sort])

        def number(field: str, default: int | None) -> int | None:
            raw = query.get(field)
            if raw is None or raw == "":
                return default
            try:
                value = int(raw)
            except ValueError:
                value = -1
            if value < 0:
                return bad(f"{field}: a whole number, 0 or more", default)  # type: ignore[no-any-return]
            return value

        offset = number("offset", 0) or 0
        return cls(q, sort, order, offset, number("limit", limit), query.get("space", "").strip()[:64])


async def _listing(runtime: Runtime, query: ListQuery) -> tuple[list[DocumentInfo], int]:
    """The page of the documents list *query* asks for, and how many
    documents match in all. Only the documents shown are read for a sort by
    name; a search inside texts asks the store's index (``server.catalog``
    rule 4), which loads nothing."""
    core = runtime.core
    live = core.registry.live()  # name -> key
    names = sorted(live)
    if query.q:
        folded = query.q.casefold()
        inside: set[str] = set()
        if len(query.q) >= SEARCH_MIN_CHARS:
            inside = await runtime.documents.search(runtime.store, core.documents, query.q)
            live = core.registry.live()  # (the search awaited)
        names = [n for n in names if n in live and (folded in n.casefold() or live[n] in inside)]
    total = len(names)
    end = None if query.limit is None else query.offset + query.limit

    def info(name: str) -> DocumentInfo:  # runtime.info, the key known
        found = runtime.documents.info(live[name], core.documents, core.recorders, core.history)
        return DocumentInfo(name, found.length, found.created_at, found.updated_at)

    if query.sort == "name":
        if query.order == "desc":
            names.reverse()
        return [info(n) for n in names[query.offset : end]], total
    # Sorted on the stored rows (what info() gives for a document not in
    # memory) without making an info for every row.
    rows, loaded, size = runtime.documents.rows, core.documents, query.sort == "size"

    def value(name: str) -> float:
        key = live[name]
        row = rows.get(key)
        if row is None or key in loaded:
            row = info(name)
        return row.length if size else row.updated_at

    ordered = sorted(((value(n), n) for n in names), reverse=query.order == "desc")
    return [info(n) for _, n in ordered[query.offset : end]], total


@dataclass(frozen=True)
class Listed:
    """A row of the documents list: a document, its space, and how it is
    written in links (``server.spaces``: ``name`` or ``name@space``)."""

    name: str
    length: int
    created_at: float
    updated_at: float
    space: str
    ref: str


async def listing(request: web.Request, query: ListQuery) -> tuple[list[Listed], int]:
    """:func:`_listing` over every space (or the one *query* names): each
    space's first ``offset + limit`` rows, merged in the order asked."""
    spaces = request.app[SPACES]
    chosen = [spaces.find(query.space)] if query.space else [s for s in spaces if s.started]
    end = None if query.limit is None else query.offset + query.limit
    wide = replace(query, offset=0, limit=end, space="")
    rows: list[Listed] = []
    total = 0
    for space in chosen:
        found, count = await _listing(space.runtime, wide)
        total += count
        label = spaces.label(space)
        rows += [Listed(i.name, i.length, i.created_at, i.updated_at, label, spaces.ref(space, i.name)) for i in found]
    if len(chosen) > 1:
        if query.sort == "name":
            rows.sort(key=lambda r: (r.name, r.space), reverse=query.order == "desc")
        else:
            size = query.sort == "size"
            rows.sort(key=lambda r: (r.length if size else r.updated_at, r.name), reverse=query.order == "desc")
    return rows[query.offset : end], total


def doc_target(request: web.Request, raw: object, *, html: bool) -> tuple[Runtime, str]:
    """The runtime and the name of the document a URL names (``name`` or
    ``name@space``); a space this peer is not in does not exist (404)."""
    spaces = request.app[SPACES]
    try:
        space, name = spaces.resolve(str(raw))
    except SpaceError as exc:
        raise _refusal(request, 404, "No such document", str(exc), html=html) from exc
    return space.runtime, _name(request, name, html=html)


def space_of(request: web.Request, runtime: Runtime) -> str:
    spaces = request.app[SPACES]
    return next(spaces.label(s) for s in spaces if s.runtime is runtime)


# (seconds up to which, unit, seconds in the unit): the same steps as
# static/docs.js, which refreshes what the page shows.
_AGO_STEPS = (
    (45 * 60, "minute", 60), (22 * 3600, "hour", 3600), (26 * 86400, "day", 86400),
    (320 * 86400, "month", 30.44 * 86400), (float("inf"), "year", 365.25 * 86400),
)  # fmt: skip
_ONE = {"day": ("yesterday", "tomorrow"), "month": ("last month", "next month"), "year": ("last year", "next year")}


def ago(ts: float, now: float) -> str:
    """*ts* relative to *now* in English words, as Intl.RelativeTimeFormat
    (numeric "auto") says it: "now", "3 minutes ago", "yesterday"."""
    delta = ts - now
    if abs(delta) < 45:
        return "now"
    _, unit, size = next(step for step in _AGO_STEPS if abs(delta) < step[0])
    n = max(1, round(abs(delta) / size))
    if n == 1 and unit in _ONE:
        return _ONE[unit][delta > 0]
    words = f"{n} {unit}{'' if n == 1 else 's'}"
    return f"in {words}" if delta > 0 else f"{words} ago"


def _list_url(query: ListQuery, **changes: Any) -> str:
    """The documents page's address for *query* with *changes*; defaults
    are left out."""
    q = replace(query, **changes)
    params = {
        "q": q.q, "sort": q.sort if q.sort != "name" else "",
        "order": q.order if q.order != DEFAULT_ORDER[q.sort] else "", "offset": q.offset or "",
    }  # fmt: skip
    params["space"] = q.space
    encoded = urllib.parse.urlencode({k: v for k, v in params.items() if v})
    return f"/?{encoded}" if encoded else "/"


def _missing(request: web.Request, runtime: Runtime, name: str, suffix: str = "") -> web.Response:
    """The answer for /doc/{name} when no live document has that name: a
    redirect to the document's new name if it was renamed, else a page that
    says whether it is in the Trash."""
    moved = runtime.core.registry.moved(name)
    if moved is not None:
        query = f"?{request.query_string}" if request.query_string else ""
        raise web.HTTPFound(f"/doc/{runtime.name_of(moved)}{suffix}{query}")
    in_trash = runtime.core.registry.trashed(name) is not None
    spaces = request.app[SPACES]
    space = next(s for s in spaces if s.runtime is runtime)
    return render(
        request, "missing.html", status=404, name=name, in_trash=in_trash, space=spaces.label(space),
        writable=runtime.writable,
    )  # fmt: skip


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
    """The documents page, one page of PAGE_SIZE rows of the list its
    query asks for (``ListQuery``); *problem* is shown on the *form*
    ("create" or "import") that caused it, with what was *typed* kept.
    With ``?partial=1`` only the list (what the page's script swaps in as
    a search is typed)."""
    runtime = request.app[RUNTIME]
    query = ListQuery.parse(request.query, strict=False, limit=PAGE_SIZE)
    try:
        documents, total = await listing(request, query)
    except SpaceError:
        raise web.HTTPFound(_list_url(query, space="", offset=0)) from None
    partial = request.query.get("partial") == "1"
    if query.offset and query.offset >= total and total and not partial:
        last = (total - 1) // PAGE_SIZE * PAGE_SIZE
        raise web.HTTPFound(_list_url(query, offset=last))
    assert query.limit is not None
    pages = {
        "first": query.offset + 1 if documents else 0, "last": query.offset + len(documents), "total": total,
        "previous": _list_url(query, offset=max(0, query.offset - query.limit)) if query.offset else None,
        "next": _list_url(query, offset=query.offset + query.limit) if query.offset + query.limit < total else None,
        "start": _list_url(query, offset=0) if query.offset else None,
        "end": _list_url(query, offset=(total - 1) // query.limit * query.limit)
        if query.offset + query.limit < total else None,
        "page": query.offset // query.limit + 1, "pages": max(1, -(-total // query.limit)),
    }  # fmt: skip
    sorts = {
        sort: _list_url(query, sort=sort, offset=0, order=(
            ("desc" if query.order == "asc" else "asc") if sort == query.sort else DEFAULT_ORDER[sort]
        )) for sort in SORTS
    }  # fmt: skip
    spaces = request.app[SPACES]
    context: dict[str, Any] = {
        "spaces": [
            {"name": spaces.label(s), "role": s.role, "writable": s.runtime.writable} for s in spaces
        ],
        "existing_ref": existing,
        "documents": documents, "query": query, "pages": pages, "sorts": sorts,
        "inside": len(query.q) >= SEARCH_MIN_CHARS, "min_chars": SEARCH_MIN_CHARS, "max_query": MAX_QUERY,
        "self_url": _list_url(query), "now": runtime.wall(),
        "ago": ago,
    }  # fmt: skip
    if partial:
        return render(request, "documents_list.html", **context)
    return render(
        request, "index.html", status=status, name_rule=NAME_RULE,
        problem=problem, problem_form=form, typed=typed, existing=existing,
        notice=request.query.get("notice", ""), undo=request.query.get("undo", ""), **context,
    )  # fmt: skip


async def editor(request: web.Request) -> web.Response:
    runtime, name = doc_target(request, request.match_info["name"], html=True)
    if not runtime.exists(name):
        return _missing(request, runtime, name)
    static = request.app[STATIC]
    modules = {
        "meshpad-vendor": VENDOR_BUNDLE, "meshpad-extras": VENDOR_EXTRAS,
        "meshpad-history": "history.js", "meshpad-life": "life.js",
        "meshpad-preview": "preview.js", "meshpad-markdown-commands": "markdown-commands.js",
    }  # fmt: skip
    importmap = json.dumps({"imports": {module: static.url(path) for module, path in modules.items()}})
    request[CSP_HASHES] = [script_hash(importmap)]
    spaces = request.app[SPACES]
    space = next(s for s in spaces if s.runtime is runtime)
    return render(
        request,
        "editor.html",
        name=name,
        ref=spaces.ref(space, name),
        space=spaces.label(space),
        spaces_count=len(spaces),
        space_id=space.hex,
        first_space=space is spaces.first,
        move_to=[spaces.label(s) for s in spaces if s is not space and s.runtime.writable] if runtime.writable else [],
        role=space.role,
        read_only=not runtime.writable,
        removed=space.removed,
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
        runtime = _creating_in(request, form.get("space"), html=True)
        await runtime.create(name)
    except InvalidName as exc:
        return await index(request, status=400, problem=str(exc), form="create", typed=typed)
    except DocumentExists:
        return await index(
            request, status=409, problem=f"A document named “{name}” already exists.", form="create", typed=typed,
            existing=name,
        )  # fmt: skip
    raise web.HTTPSeeOther(f"/doc/{_ref(request, runtime, name)}")


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
    runtime = _creating_in(request, form.get("space"), html=True)
    try:
        await runtime.create(name, text)
    except DocumentExists:
        return await refuse(409, f"A document named “{name}” already exists: choose another name.", name)
    raise web.HTTPSeeOther(f"/doc/{_ref(request, runtime, name)}")


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
    runtime, name = doc_target(request, request.match_info["name"], html=True)
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
    """Every document, sorted by name; with ``q``, ``sort``, ``order``,
    ``offset`` or ``limit`` (``ListQuery``), the part they ask for. Always a
    list; ``X-Total-Count`` says how many match in all."""
    try:
        query = ListQuery.parse(request.query, strict=True, limit=None)
    except ValueError as exc:
        raise json_error(400, str(exc)) from exc
    try:
        documents, total = await listing(request, query)
    except SpaceError as exc:
        raise json_error(exc.status, str(exc)) from exc
    return web.json_response([_doc_json(i) for i in documents], headers={"X-Total-Count": str(total)})


async def api_get(request: web.Request) -> web.Response:
    runtime, name = doc_target(request, request.match_info["name"], html=False)
    try:
        key = runtime.key(name)
    except DocumentNotFound as exc:
        missing = {"error": str(exc)} | ({"name": exc.moved_to} if exc.moved_to else {})
        raise web.HTTPNotFound(text=json.dumps(missing), content_type="application/json") from exc
    session = await runtime.session_of(key)
    body = _doc_json(runtime.info(name), space_of(request, runtime), _ref(request, runtime, name))
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
    runtime = _creating_in(request, payload.get("space"), html=False)
    try:
        await runtime.create(name, text)
    except DocumentExists as exc:
        raise json_error(409, str(exc)) from exc
    await runtime.durable()  # 201 means it is on disk
    ref = _ref(request, runtime, name)
    body = _doc_json(runtime.info(name), space_of(request, runtime), ref)
    body["text"] = text
    return web.json_response(body, status=201, headers={"Location": f"/api/docs/{ref}"})


def _ref(request: web.Request, runtime: Runtime, name: str) -> str:
    spaces = request.app[SPACES]
    return next(spaces.ref(s, name) for s in spaces if s.runtime is runtime)


def _creating_in(request: web.Request, raw: object, *, html: bool) -> Runtime:
    """The runtime of the space a new document goes in: the one named, else
    the only one; a space this peer may not write in is refused (403)."""
    spaces = request.app[SPACES]
    if raw is None or raw == "":
        writable = [s for s in spaces if s.runtime.writable]
        if len(spaces) > 1 and len(writable) != 1:
            message = f'say in which space: "space" is one of {", ".join(spaces.label(s) for s in writable)}'
            if html:
                raise web.HTTPBadRequest(text=message)
            raise json_error(400, message)
        space = writable[0] if writable else spaces.first
    else:
        try:
            space = spaces.find(str(raw))
        except SpaceError as exc:
            if html:
                raise web.HTTPNotFound(text=str(exc)) from exc
            raise json_error(404, str(exc)) from exc
    if not space.runtime.writable:
        message = f"you may read {spaces.label(space)} but not write in it (your role: {space.role or 'none'})"
        if html:
            raise web.HTTPForbidden(text=message)
        raise json_error(403, message)
    runtime: Runtime = space.runtime
    return runtime
