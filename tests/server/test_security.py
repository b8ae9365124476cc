"""The browser-side guard, through the app factory (requests from loopback).
Requests from other machines are tested in tests/system/test_netns.py."""

from __future__ import annotations

import aiohttp
import pytest

from server.keys import BROWSER_TOKEN, RUNTIME


async def test_cross_origin_websocket_upgrade_is_refused(client):
    with pytest.raises(aiohttp.WSServerHandshakeError) as err:
        await client.ws_connect("/ws/doc", headers={"Origin": "https://evil.example"})
    assert err.value.status == 403
    assert (await client.get("/api/docs/doc")).status == 404  # nothing was created
    ws = await client.ws_connect("/ws/doc", headers={"Origin": f"http://{client.host}:{client.port}"})
    await ws.close()


async def test_cross_site_posts_are_refused(client):
    evil = {"Origin": "https://evil.example"}
    assert (await client.post("/api/docs", json={"name": "x"}, headers=evil)).status == 403
    assert (await client.post("/docs", data={"name": "x"}, headers=evil)).status == 403
    assert (await client.post("/api/peers", json={"address": "127.0.0.1:9"}, headers=evil)).status == 403
    assert (await client.get("/api/docs")).status == 200
    assert await (await client.get("/api/docs")).json() == []
    same = {"Origin": f"http://{client.host}:{client.port}"}
    assert (await client.post("/api/docs", json={"name": "x"}, headers=same)).status == 201


@pytest.mark.parametrize("origin", ["http://127.0.0.1:5173", "http://127.0.0.2:3000", "http://localhost:7999", "null"])
async def test_other_loopback_origins_are_refused(client, origin):
    """Any local dev server is another origin: it may not open WebSockets or post here."""
    with pytest.raises(aiohttp.WSServerHandshakeError) as err:
        await client.ws_connect("/ws/doc", headers={"Origin": origin})
    assert err.value.status == 403
    assert (await client.post("/api/docs", json={"name": "x"}, headers={"Origin": origin})).status == 403
    assert (await client.post("/peers", data={"address": "127.0.0.1:9"}, headers={"Origin": origin})).status == 403
    assert await (await client.get("/api/docs")).json() == []


async def test_another_origin_with_the_token_may_connect(client):
    """A page that attaches one document to two local peers proves itself with the token."""
    token = client.app[BROWSER_TOKEN]
    origin = {"Origin": "http://127.0.0.1:7999"}
    ws = await client.ws_connect(f"/ws/doc?token={token}", headers=origin)
    await ws.close()
    with pytest.raises(aiohttp.WSServerHandshakeError):
        await client.ws_connect("/ws/doc?token=wrong-token", headers=origin)
    # The cookie is sent to every port of a host, so it proves nothing here.
    with pytest.raises(aiohttp.WSServerHandshakeError):
        await client.ws_connect("/ws/doc", headers={**origin, "Cookie": f"meshpad_token={token}"})
    resp = await client.post("/api/docs", json={"name": "y"}, headers={**origin, "Authorization": f"Bearer {token}"})
    assert resp.status == 201


async def test_a_plain_get_of_a_websocket_address_creates_nothing(client):
    for headers in ({}, {"Origin": "https://evil.example"}, {"Connection": "keep-alive"}):
        resp = await client.get("/ws/junk", headers=headers)
        assert resp.status == 400
        resp = await client.head("/ws/junk2", headers=headers)
        assert resp.status == 400
    assert (await client.get("/api/docs/junk")).status == 404
    assert await (await client.get("/api/docs")).json() == []
    assert client.app[RUNTIME].gossip.documents == {}


async def test_safe_methods_change_nothing(client):
    """No route changes state on GET or HEAD."""
    before = await (await client.get("/api/docs")).json()
    for path in (
        "/",
        "/doc/ghost",
        "/doc/ghost/export",
        "/api/docs/ghost",
        "/peers",
        "/api/peers",
        "/healthz",
        "/ws/ghost",
        "/peer",
        "/docs",
        "/docs/import",
    ):
        await client.get(path)
        await client.head(path)
    assert await (await client.get("/api/docs")).json() == before == []
    assert client.app[RUNTIME].gossip.documents == {}
    assert client.app[RUNTIME].gossip.known.by_address == {}


async def test_dns_rebinding_host_is_refused(client):
    resp = await client.get("/api/docs", headers={"Host": "attacker.example:7400"})
    assert resp.status == 403
    assert (await client.get("/api/docs", headers={"Host": "localhost:7400"})).status == 200


async def test_pages_carry_a_restrictive_csp(client):
    await client.post("/api/docs", json={"name": "page"})
    for path in ("/", "/doc/page", "/peers"):
        resp = await client.get(path)
        csp = resp.headers["Content-Security-Policy"]
        assert "default-src 'self'" in csp and "frame-ancestors 'none'" in csp
        assert "unsafe-eval" not in csp
        assert resp.headers["X-Content-Type-Options"] == "nosniff"
    editor_csp = (await client.get("/doc/page")).headers["Content-Security-Policy"]
    assert "'sha256-" in editor_csp  # the import map, and nothing else inline
