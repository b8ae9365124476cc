"""The browser side's guard: the editor, the API and the browser WebSocket are
private to the person at the machine.

* Requests from a non-loopback address need the browser token: given once as
  ``?token=…`` (the URL printed at start), then kept in an HttpOnly,
  SameSite=Strict cookie; scripts may send ``Authorization: Bearer …``.
* From loopback, the ``Host`` must be a loopback name, so a web page whose
  domain was re-pointed at 127.0.0.1 (DNS rebinding) is refused.
* A request that changes state, and every WebSocket upgrade, is refused when
  it comes from another origin (``Origin``): a page on another site can
  neither post forms here nor open /ws/{name} (CSRF, CSWSH). Another port or
  address of this machine is another origin too (any local dev server is
  one): it is let in only when the request itself carries the token
  (``?token=`` or ``Authorization: Bearer``), as a page that attaches one
  document to two local peers does. The cookie does not count for this,
  since the browser sends it to every port of the host.
* Pages carry a restrictive Content-Security-Policy.
* Over HTTPS (``--tls-cert``), the cookie is ``Secure`` and responses carry
  ``Strict-Transport-Security``.

``/peer`` is exempt: the Noise handshake guards it.
"""

from __future__ import annotations

import hmac
import ipaddress
import secrets
from pathlib import Path

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from server.identity import make_data_dir, write_atomically

TOKEN_FILE = "browser-token"
# Inline scripts a page allows in its CSP (the editor's import map).
CSP_HASHES = web.RequestKey("csp_hashes", list[str])
COOKIE = "meshpad_token"
HSTS_SECONDS = 365 * 24 * 3600  # over HTTPS, how long browsers keep to HTTPS for this host
_LOOPBACK_NAMES = {"localhost", "localhost.", "ip6-localhost"}
UNSAFE_METHODS = {"POST", "PUT", "PATCH", "DELETE"}
CSP = (
    "default-src 'self'; script-src 'self'{extra}; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; connect-src 'self'; object-src 'none'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'"
)


def load_token(data_dir: Path) -> str:
    path = data_dir / TOKEN_FILE
    try:
        token = path.read_text().strip()
        if len(token) >= 32:
            return token
    except FileNotFoundError:
        pass
    token = secrets.token_urlsafe(32)
    make_data_dir(data_dir)
    write_atomically(path, token.encode() + b"\n", 0o600)
    return token


def is_loopback(remote: str | None) -> bool:
    if not remote:
        return False
    try:
        return ipaddress.ip_address(remote.split("%")[0]).is_loopback
    except ValueError:
        return False


def _host_name(host: str) -> str:
    """The name in a Host header, without the port and brackets, lowercased."""
    name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
    return name.strip("[]").lower()


def _host_is_loopback_name(host: str) -> bool:
    name = _host_name(host)
    if name in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def _offered_token(request: web.Request, *, cookie: bool) -> str:
    offered = request.query.get("token") or request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
    if not offered and cookie:
        offered = request.cookies.get(COOKIE, "")
    return offered


def _token_ok(offered: str, token: str) -> bool:
    return bool(offered) and hmac.compare_digest(offered.encode(), token.encode())


def _origin_allowed(request: web.Request, token: str) -> bool:
    origin = request.headers.get("Origin")
    if origin is None:
        return True  # browsers always send Origin on cross-origin posts and WebSockets
    if origin == f"{request.scheme}://{request.host}":
        return True
    return _token_ok(_offered_token(request, cookie=False), token)


def guard(token: str) -> Middleware:
    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path == "/peer":
            return await handler(request)
        try:
            return await checked(request, handler)
        except web.HTTPException as exc:  # a refusal or a redirect is an answer over HTTPS too
            _hsts(request, exc)
            raise

    async def checked(request: web.Request, handler: Handler) -> web.StreamResponse:
        upgrade = request.headers.get("Upgrade", "").strip().lower() == "websocket"
        if is_loopback(request.remote):
            if not _host_is_loopback_name(request.host):
                raise web.HTTPForbidden(text="this address is for this machine only (Host is not a loopback name)")
        else:
            if not _token_ok(_offered_token(request, cookie=True), token):
                raise web.HTTPForbidden(text="a token is needed: open the URL that `meshpad serve` printed")
            if "token" in request.query and request.method == "GET" and not upgrade:
                query = {k: v for k, v in request.query.items() if k != "token"}
                redirect = web.HTTPSeeOther(str(request.rel_url.with_query(query)))
                redirect.set_cookie(
                    COOKIE, token, httponly=True, samesite="Strict", max_age=400 * 24 * 3600, secure=request.secure
                )
                raise redirect
        if (request.method in UNSAFE_METHODS or upgrade) and not _origin_allowed(request, token):
            raise web.HTTPForbidden(
                text="cross-origin request refused: a page of another origin needs this peer's token"
            )
        response = await handler(request)
        _secure_headers(request, response)
        return response

    return middleware


def _secure_headers(request: web.Request, response: web.StreamResponse) -> None:
    if response.prepared:
        return  # a WebSocket has sent its headers already
    extra = "".join(f" '{h}'" for h in request.get(CSP_HASHES, ()))
    response.headers.setdefault("Content-Security-Policy", CSP.format(extra=extra))
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("Referrer-Policy", "same-origin")
    response.headers.setdefault("X-Frame-Options", "DENY")
    _hsts(request, response)


def _hsts(request: web.Request, response: web.StreamResponse) -> None:
    if request.secure and not response.prepared and _host_name(request.host) not in _LOOPBACK_NAMES:
        # Not for localhost: HSTS holds for every port of a host name, so it
        # would force the person's other local servers onto HTTPS too
        # (browsers ignore it for an IP address such as 127.0.0.1).
        response.headers.setdefault("Strict-Transport-Security", f"max-age={HSTS_SECONDS}")


def script_hash(text: str) -> str:
    """The CSP source that allows one inline script (the editor's import map)."""
    import base64
    import hashlib

    return "sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode()
