"""Where the templates and static files are, and their content-hashed URLs.

In a source checkout they sit at the top of the repository; in an installed
wheel they are shipped inside this package as ``server/_assets`` (see
``pyproject.toml``). Static URLs are ``/static/{hash}/{path}``: the hash of the
file's bytes, so a browser cache never serves a stale editor or bundle.
"""

from __future__ import annotations

import hashlib
import mimetypes
from pathlib import Path

from aiohttp import web

VENDOR_BUNDLE = "vendor/meshpad-vendor-1.3.0.js"  # what the editor needs to paint
VENDOR_EXTRAS = "vendor/meshpad-extras-1.3.0.js"  # code-block grammars, markdown-it, DOMPurify: loaded when needed
# What the two share (CodeMirror, Lezer), named by esbuild after its content and
# imported by both by a relative path; rebuilding changes this name.
VENDOR_SHARED = "vendor/meshpad-shared-CKQRCD7L.js"
# Files under static/ that pages may reference; anything else is not served.
SERVED = (
    "editor.js", "history.js", "life.js", "docs.js", "peers.js", "style.css", "theme.js", "preview.js",
    "markdown-commands.js", "space.js", VENDOR_BUNDLE, VENDOR_EXTRAS, VENDOR_SHARED,
)  # fmt: skip
# The vendor bundle's files import each other by relative paths, so they share
# one URL prefix: the hash of all of them. (Under the prefix of each its own, a
# chunk imported from two entries would be two URLs, so two module instances,
# and CodeMirror's classes would not recognise each other's objects.)
BUNDLE = (VENDOR_BUNDLE, VENDOR_EXTRAS, VENDOR_SHARED)


def asset_root() -> Path:
    here = Path(__file__).resolve().parent
    for candidate in (here / "_assets", here.parent):
        if (candidate / "templates").is_dir() and (candidate / "static").is_dir():
            return candidate
    raise RuntimeError(
        f"Meshpad's templates and static files are missing (looked in {here / '_assets'} and {here.parent})"
    )


class StaticFiles:
    def __init__(self, root: Path) -> None:
        self.root = root
        self._files: dict[str, tuple[str, bytes, str]] = {}
        bundle = hashlib.sha256()
        for rel in BUNDLE:
            bundle.update(hashlib.sha256((root / rel).read_bytes()).digest())
        for rel in SERVED:
            data = (root / rel).read_bytes()
            digest = (bundle if rel in BUNDLE else hashlib.sha256(data)).hexdigest()[:16]
            ctype = mimetypes.guess_type(rel)[0] or "application/octet-stream"
            if rel.endswith(".js"):
                ctype = "text/javascript"
            self._files[rel] = (digest, data, ctype)

    def url(self, rel: str) -> str:
        digest = self._files[rel][0]
        return f"/static/{digest}/{rel}"

    async def handle(self, request: web.Request) -> web.Response:
        rel = request.match_info["path"]
        found = self._files.get(rel)
        if found is None:
            raise web.HTTPNotFound(text="no such file")
        digest, data, ctype = found
        if request.match_info["digest"] == digest:
            cache = "public, max-age=31536000, immutable"
        else:
            cache = "no-cache"  # an old page asked for an old version: serve the current one, do not keep it
        return web.Response(body=data, content_type=ctype, charset="utf-8", headers={"Cache-Control": cache})
