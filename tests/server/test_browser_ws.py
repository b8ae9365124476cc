"""The y-websocket endpoint, through the app factory, with a pycrdt client."""

from __future__ import annotations

import aiohttp
import pytest
from waiting import wait_for
from yclient import YClient, awareness_frame

from crdt import ywire
from crdt.yupdate import parse_update
from server.runtime import OUTBOX_LIMIT  # noqa: F401 - documents the overflow policy under test elsewhere


async def connect(client, name: str, client_id: int, acks: bool = False) -> YClient:
    url = f"/ws/{name}" + ("?acks=1" if acks else "")
    y = await YClient.connect(client, url, client_id)
    await wait_for(lambda: y.synced, what="sync step 2")
    return y


async def test_handshake_sends_step1_and_answers_step1(client):
    y = await connect(client, "notes", 11)
    # First frame from the server is sync step 1 (type 0, subtype 0).
    assert y.frames[0][:2] == b"\x00\x00"
    assert any(f[:2] == b"\x00\x01" for f in y.frames), "our step 1 must be answered with step 2"
    await y.close()


async def test_two_clients_converge_and_text_is_served(client):
    a = await connect(client, "pair", 21)
    b = await connect(client, "pair", 22)
    await a.insert(0, "hello")
    await wait_for(lambda: b.content == "hello", what="b sees a's insert")
    await b.insert(5, " wörld 😀")
    await wait_for(lambda: a.content == "hello wörld 😀", what="a sees b's insert")
    await a.delete(0, 1)
    await wait_for(lambda: b.content == "ello wörld 😀", what="b sees a's delete")
    resp = await client.get("/api/docs/pair")
    assert (await resp.json())["text"] == "ello wörld 😀"
    # A late joiner gets everything in its sync step 2.
    c = await connect(client, "pair", 23)
    assert c.content == "ello wörld 😀"
    for y in (a, b, c):
        await y.close()


async def test_update_is_not_echoed_to_its_author(client):
    a = await connect(client, "echo", 31)
    b = await connect(client, "echo", 32)
    before = len(a.frames)
    await a.insert(0, "x")
    await wait_for(lambda: b.content == "x")
    # b now sends something so that a has had time to receive any echo.
    await b.insert(1, "y")
    await wait_for(lambda: a.content == "xy")
    updates_to_a = [_update(f) for f in a.frames[before:] if f[:2] == b"\x00\x02"]
    clients = [set(parse_update(u).ranges) for u in updates_to_a if u is not None]
    assert not [c for c in clients if 31 in c]  # a's own edit never came back
    assert len([c for c in clients if 32 in c]) == 1  # b's edit did (besides the records of who they are)
    await a.close()
    await b.close()


async def test_acks_follow_durable_writes(client):
    a = await connect(client, "acked", 41, acks=True)
    await a.insert(0, "saved text")
    # frames sent: step1, step2 reply, update = 3
    await wait_for(lambda: a.saved >= 3, what="ack of the update frame")
    runtime = client.app[__import__("server.keys", fromlist=["RUNTIME"]).RUNTIME]
    stored = await runtime.store.call(lambda s: s.load("acked"))
    from pycrdt import Doc, Text

    doc = Doc()
    text = doc.get("content", type=Text)
    for u in stored:
        doc.apply_update(u)
    assert str(text) == "saved text"
    await a.close()


async def test_stock_client_gets_no_ack_frames(client):
    a = await connect(client, "plain", 42)
    await a.insert(0, "x")
    b = await connect(client, "plain", 43)
    await a.insert(1, "y")
    await wait_for(lambda: b.content == "xy")
    assert not [f for f in a.frames if f[0] == 100]
    await a.close()
    await b.close()


async def test_awareness_relayed_to_all_and_cleared_on_close(client):
    a = await connect(client, "aware", 51)
    b = await connect(client, "aware", 52)
    await a.ws.send_bytes(awareness_frame([(51, 1, {"user": {"name": "Ann"}})]))
    await wait_for(lambda: 51 in b.present(), what="b sees ann")
    await wait_for(lambda: 51 in a.present(), what="a sees its own echo")
    # A newcomer receives the states of everyone present on connect.
    c = await connect(client, "aware", 53)
    await wait_for(lambda: c.present().get(51) == {"user": {"name": "Ann"}}, what="c sees ann")
    # Stale clock is ignored.
    await a.ws.send_bytes(awareness_frame([(51, 0, {"user": {"name": "Old"}})]))
    await a.ws.send_bytes(awareness_frame([(51, 2, {"user": {"name": "Ann2"}})]))
    await wait_for(lambda: b.present().get(51) == {"user": {"name": "Ann2"}})
    assert all(s != {"user": {"name": "Old"}} for _, s in b.awareness.values())
    await a.close()
    await wait_for(lambda: 51 not in b.present() and 51 not in c.present(), timeout=2, what="ann removed at once")
    assert b.awareness[51][0] == 3  # removal carries clock + 1
    await b.close()
    await c.close()


async def test_query_awareness_answers_with_states(client):
    a = await connect(client, "query", 61)
    await a.ws.send_bytes(awareness_frame([(61, 1, {"user": {"name": "Q"}})]))
    await wait_for(lambda: 61 in a.present())
    a.awareness.clear()
    await a.ws.send_bytes(b"\x03")
    await wait_for(lambda: 61 in a.present(), what="answer to query awareness")
    await a.close()


@pytest.mark.parametrize(
    "frame",
    [
        b"",
        b"\x07",  # unknown message type
        b"\x00\x09\x00",  # unknown sync subtype
        b"\x00\x02\x05abc",  # length past the end
        b"\x00\x02\x03\x01\x01\x01",  # update that is not a valid update
        b"\x00\x00\x02\xff\xff",  # state vector that does not decode
        b"\x01\x05\x01\x01\x01\x01{",  # awareness state that is not JSON
        b"\x00\x02\x02\x00\x00trailing",  # trailing bytes
        b"\x02\x00",  # auth message from a client
    ],
)
async def test_bad_frame_closes_only_that_connection(client, frame):
    good = await connect(client, "guarded", 71)
    await good.insert(0, "keep me")
    bad = await connect(client, "guarded", 72)
    await wait_for(lambda: bad.content == "keep me")
    await bad.ws.send_bytes(frame)
    await bad.closed.wait()
    assert bad.ws.close_code == aiohttp.WSCloseCode.POLICY_VIOLATION
    # The document and the other connection are untouched.
    await good.insert(7, "!")
    resp = await client.get("/api/docs/guarded")
    assert (await resp.json())["text"] == "keep me!"
    assert not good.ws.closed
    health = await (await client.get("/healthz")).json()
    assert health["frames_refused"] == 1
    await good.close()


async def test_text_frame_is_refused(client):
    y = await connect(client, "texty", 81)
    await y.ws.send_str("hello")
    await y.closed.wait()
    assert y.ws.close_code == aiohttp.WSCloseCode.POLICY_VIOLATION


@pytest.mark.parametrize("name", [".hidden", "a b", "x" * 129, "caf%C3%A9", "a%2Fb"])
async def test_bad_names_are_refused_before_upgrade(client, name):
    resp = await client.get(f"/ws/{name}")
    assert resp.status in (400, 404)
    if resp.status == 400:
        assert "letters" in await resp.text()


def _update(frame: bytes) -> bytes | None:
    message = ywire.decode_message(frame)
    return message.update if isinstance(message, ywire.SyncUpdate) else None
