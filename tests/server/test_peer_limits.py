"""Limits at the peer endpoint, through the app factory: connections per
address, and a ban after repeated invalid handshakes."""

from __future__ import annotations

import aiohttp
import pytest

from crdt.limits import CONNECTIONS_PER_ADDRESS, STRIKES_BEFORE_BAN
from server.keys import PEERING


async def test_connections_per_address(client):
    sockets = [await client.ws_connect("/peer") for _ in range(CONNECTIONS_PER_ADDRESS)]
    with pytest.raises(aiohttp.WSServerHandshakeError) as err:
        await client.ws_connect("/peer")
    assert err.value.status == 429
    for ws in sockets:
        await ws.close()


async def test_invalid_handshakes_lead_to_a_ban(client):
    for _ in range(STRIKES_BEFORE_BAN):
        ws = await client.ws_connect("/peer")
        await ws.send_bytes(b"MSHP\x01" + bytes(48))  # the right magic, then garbage
        msg = await ws.receive()
        assert msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
        assert ws.close_code == aiohttp.WSCloseCode.POLICY_VIOLATION
    with pytest.raises(aiohttp.WSServerHandshakeError) as err:
        await client.ws_connect("/peer")
    assert err.value.status == 429
    peering = client.app[PEERING]
    assert peering.refused == STRIKES_BEFORE_BAN and peering.bans.refused == 1
    assert (await client.get("/healthz")).status == 200
    assert await (await client.get("/api/docs")).json() == []
