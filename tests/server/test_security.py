"""The browser-side guard, through the app factory (requests from loopback).
Requests from other machines are tested in tests/system/test_netns.py."""

from __future__ import annotations

import aiohttp
import pytest


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


async def test_other_local_peers_pages_may_connect(client):
    ws = await client.ws_connect("/ws/doc", headers={"Origin": "http://127.0.0.1:7999"})
    await ws.close()


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
