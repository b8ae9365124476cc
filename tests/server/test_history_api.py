"""The history API through the app factory: the contract other tools rely
on, sessions recorded from browsers, and clear 4xx answers for bad input."""

from __future__ import annotations

import re

from waiting import wait_for
from yclient import YClient, awareness_frame, varuint

from crdt import history
from crdt.document import Document
from server.keys import RUNTIME
from server.settings import Settings

ISO = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")


async def test_name_list_open_and_restore(client):
    assert (await client.post("/api/docs", json={"name": "notes", "text": "Première version ✓\n"})).status == 201
    resp = await client.post(
        "/api/docs/notes/versions", json={"label": "sent to the client", "author": {"name": "Ann", "color": "#cc3300"}}
    )
    assert resp.status == 201
    named = await resp.json()
    assert re.fullmatch(r"[A-Za-z0-9_-]{16}", named["id"]) and resp.headers["Location"].endswith(named["id"])
    listing = await (await client.get("/api/docs/notes/history")).json()
    (version,) = listing["versions"]
    assert set(version) >= {"id", "at", "authors", "inserted", "deleted", "label"}
    assert version["id"] == named["id"] and version["label"] == "sent to the client" and ISO.fullmatch(version["at"])
    assert version["authors"] == [{"name": "Ann", "color": "#cc3300", "peer": client.app[RUNTIME].peer_hex}]
    # Change the text, then restore: the text is the version's again, as a new change.
    runtime = client.app[RUNTIME]
    session = await runtime.session("notes")
    by = history.Author("Cy", "", runtime.peer_hex)
    runtime.perform(runtime.core.author("notes", [(0, 5, "Une autre")], by, runtime.now()))
    assert session.document.text.startswith("Une autre")
    opened = await (await client.get(f"/api/docs/notes/versions/{named['id']}")).json()
    assert opened["text"] == "Première version ✓\n" and opened["id"] == named["id"] and ISO.fullmatch(opened["at"])
    resp = await client.post("/api/docs/notes/restore", json={"version": named["id"], "author": {"name": "Bob"}})
    assert resp.status == 200
    restored = await resp.json()
    assert (await (await client.get("/api/docs/notes")).json())["text"] == "Première version ✓\n"
    listing = await (await client.get("/api/docs/notes/history")).json()
    newest = listing["versions"][0]
    assert newest["id"] == restored["id"] and newest["kind"] == "restore" and newest["restored"] == named["id"]
    assert newest["authors"][0]["name"] == "Bob" and newest["label"] is None
    assert any(v["id"] == named["id"] for v in listing["versions"])  # nothing was rewritten


async def test_bad_input_gets_clear_4xx(client):
    await client.post("/api/docs", json={"name": "d", "text": "x"})
    assert (await client.get("/api/docs/d/versions/not-an-id")).status == 400
    resp = await client.get("/api/docs/d/versions/" + "A" * 16)
    assert resp.status == 404 and "no version" in (await resp.json())["error"]
    assert (await client.get("/api/docs/nope/history")).status == 404
    assert (await client.get("/api/docs/.bad/history")).status == 400
    for body in ({}, {"label": ""}, {"label": 5}, {"label": "x" * 201}, {"label": "ok", "author": "me"}):
        resp = await client.post("/api/docs/d/versions", json=body)
        assert resp.status == 400, body
        assert "error" in await resp.json()
    assert (await client.post("/api/docs/d/versions", data=b"{not json")).status == 400
    assert (await client.post("/api/docs/d/restore", json={"version": "short"})).status == 400
    assert (await client.post("/api/docs/d/restore", json={"version": "B" * 16})).status == 404
    # Nothing of that changed the document or its history.
    assert (await (await client.get("/api/docs/d")).json())["text"] == "x"
    assert (await (await client.get("/api/docs/d/history")).json())["versions"] == []


async def test_the_routes_follow_the_api_rules(client):
    await client.post("/api/docs", json={"name": "d", "text": "x"})
    evil = {"Origin": "https://evil.example"}
    assert (await client.post("/api/docs/d/versions", json={"label": "x"}, headers=evil)).status == 403
    assert (await client.post("/api/docs/d/restore", json={"version": "A" * 16}, headers=evil)).status == 403
    assert (await client.post("/doc/d/versions", data={"label": "x"}, headers=evil)).status == 403
    assert (await client.get("/api/docs/d/history", headers={"Host": "attacker.example"})).status == 403


async def test_a_version_this_peer_does_not_hold_yet_is_404_with_the_reason(client):
    await client.post("/api/docs", json={"name": "d", "text": "here"})
    runtime = client.app[RUNTIME]
    doc = (await runtime.session("d")).document
    # Another replica adds text (as a browser would, under its own client id)
    # and names that state; only the entry arrives here.
    other = Document("d", 4242)
    other.receive(doc.encode_state(), "x")
    other.edit_as(777, [(4, 0, " and there")], "x")
    vid, changes = history.name_version(other, "elsewhere", history.Author("Cy", "", "cc" * 16), at=1.0)
    y = await YClient.connect(client, "/ws/d", 5151)
    await wait_for(lambda: y.synced, what="sync")
    for change in changes:
        await y.send(b"\x00\x02" + varuint(len(change.update)) + change.update)
    await wait_for(lambda: any(v.id == vid for v in runtime.history("d").versions()), what="the entry arrives")
    resp = await client.get(f"/api/docs/d/versions/{vid}")
    assert resp.status == 404 and "does not hold yet" in (await resp.json())["error"]
    await y.close()


async def test_a_browser_session_becomes_a_version_with_its_author(tmp_path, aiohttp_client):
    from server.app import create_app

    app = create_app(Settings(host="127.0.0.1", port=0, data_dir=tmp_path / "data", session_gap=0.3))
    client = await aiohttp_client(app)
    runtime = app[RUNTIME]
    await client.post("/api/docs", json={"name": "s"})
    y = await YClient.connect(client, "/ws/s", 6161)
    await wait_for(lambda: y.synced, what="sync")
    await y.send(awareness_frame([(6161, 1, {"user": {"name": "Dee", "color": "#00aa00"}})]))
    await wait_for(lambda: 6161 in runtime.sessions["s"].people_of(next(iter(runtime.connections))), what="awareness")
    await y.insert(0, "typed by Dee")
    # The session ends after the pause, and its version is written.
    await wait_for(lambda: bool(runtime.history("s").versions()), what="a version after the pause")
    (version,) = (await (await client.get("/api/docs/s/history")).json())["versions"]
    assert version["kind"] == "edit" and version["inserted"] == len("typed by Dee")
    assert version["authors"] == [{"name": "Dee", "color": "#00aa00", "peer": runtime.peer_hex}]
    attribution = await (await client.get("/api/docs/s/attribution")).json()
    assert attribution["ranges"] == [{"start": 0, "end": 12, "client": 6161}]
    assert attribution["authors"]["6161"]["name"] == "Dee"
    await y.close()
