"""The spaces API of one peer (server/space_pages.py, server/pages.py):
the contract other tools rely on, documents named name@space, moves, and
spaces a peer is not in answering 404."""

from __future__ import annotations

from server.spaces import SPACES


async def test_the_first_space_and_a_new_one(client):
    resp = await client.get("/api/spaces")
    assert resp.status == 200
    [main] = await resp.json()
    assert {"name", "role", "members", "documents"} <= set(main)
    assert (main["name"], main["role"], main["members"], main["status"]) == ("main", "admin", 1, "open")
    resp = await client.post("/api/spaces", json={"name": "family"})
    assert resp.status == 201
    body = await resp.json()
    assert (body["name"], body["role"], body["status"]) == ("family", "admin", "member")
    assert [m["me"] for m in body["members"]] == [True]
    resp = await client.post("/api/spaces", json={"name": "family"})
    assert resp.status == 409
    resp = await client.post("/api/spaces", json={"name": "no spaces allowed"})
    assert resp.status == 400
    names = [s["name"] for s in await (await client.get("/api/spaces")).json()]
    assert names == ["main", "family"]


async def test_documents_in_spaces_and_the_same_name_in_two(client):
    await client.post("/api/spaces", json={"name": "family"})
    # With two spaces, a new document says where it goes.
    resp = await client.post("/api/docs", json={"name": "notes", "text": "x"})
    assert resp.status == 400 and "space" in (await resp.json())["error"]
    resp = await client.post("/api/docs", json={"name": "notes", "space": "main", "text": "main's"})
    assert resp.status == 201 and (await resp.json())["space"] == "main"
    resp = await client.post("/api/docs", json={"name": "notes", "space": "family", "text": "family's"})
    assert resp.status == 201
    body = await resp.json()
    assert (body["space"], body["ref"]) == ("family", "notes@family")
    assert resp.headers["Location"] == "/api/docs/notes@family"
    listed = await (await client.get("/api/docs")).json()
    assert sorted((d["name"], d["space"], d["ref"]) for d in listed) == [
        ("notes", "family", "notes@family"),
        ("notes", "main", "notes"),
    ]
    assert (await (await client.get("/api/docs/notes")).json())["text"] == "main's"
    assert (await (await client.get("/api/docs/notes@family")).json())["text"] == "family's"
    assert (await (await client.get("/api/docs/notes@main")).json())["text"] == "main's"
    only = await (await client.get("/api/docs?space=family")).json()
    assert [(d["name"], d["space"]) for d in only] == [("notes", "family")]


async def test_a_space_this_peer_is_not_in_does_not_exist(client):
    for path in ("/api/spaces/elsewhere", "/api/docs/notes@elsewhere", "/api/docs?space=elsewhere"):
        resp = await client.get(path)
        assert resp.status == 404, path
    resp = await client.post("/api/docs", json={"name": "notes", "space": "elsewhere"})
    assert resp.status == 404
    resp = await client.get("/doc/notes@elsewhere")
    assert resp.status == 404


async def test_moving_a_document_takes_its_text_and_history(client):
    await client.post("/api/spaces", json={"name": "family"})
    await client.post("/api/docs", json={"name": "recipes", "space": "main", "text": "soup"})
    resp = await client.post("/api/docs/recipes/versions", json={"label": "first"})
    assert resp.status in (200, 201)
    resp = await client.post("/api/docs/recipes/move", json={"space": "family"})
    assert resp.status == 200, await resp.text()
    body = await resp.json()
    assert (body["space"], body["ref"]) == ("family", "recipes")
    moved = await (await client.get("/api/docs/recipes@family")).json()
    assert moved["text"] == "soup"
    history = await (await client.get("/api/docs/recipes@family/history")).json()
    assert "first" in [v.get("label") for v in history["versions"]]
    # It left main through the Trash, where main's members see it go.
    assert (await client.get("/api/docs/recipes@main")).status == 404
    trash = await (await client.get("/api/trash")).json()
    assert [(t["name"], t["space"]) for t in trash] == [("recipes", "main")]
    listed = await (await client.get("/api/docs")).json()
    assert [(d["name"], d["space"]) for d in listed] == [("recipes", "family")]
    resp = await client.post("/api/docs/recipes@family/move", json={"space": "family"})
    assert resp.status == 409
    resp = await client.post("/api/docs/recipes@family/move", json={"space": "nowhere"})
    assert resp.status == 404


async def test_invites_and_roles_are_an_admins(client):
    await client.post("/api/spaces", json={"name": "team"})
    resp = await client.post("/api/spaces/team/invites", json={"role": "reader"})
    assert resp.status == 201
    invite = (await resp.json())["invite"]
    team = client.app[SPACES].find("team")
    assert invite.startswith("meshpad://") and f"/{team.hex}#" in invite
    assert len(team.access.invites) == 1
    resp = await client.post("/api/spaces/team/invites", json={"role": "owner"})
    assert resp.status == 400
    me = team.access.me.hex()
    # The last admin cannot be demoted or removed.
    resp = await client.post(f"/api/spaces/team/members/{me}", json={"role": "reader"})
    assert resp.status == 409
    resp = await client.delete(f"/api/spaces/team/members/{me}")
    assert resp.status == 409
    resp = await client.delete(f"/api/spaces/team/members/{'0' * 32}")
    assert resp.status == 404
