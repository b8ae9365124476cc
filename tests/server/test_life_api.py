"""The HTTP contract of a document's life on one peer: delete, the Trash,
restore, delete forever and rename, with their errors."""

from __future__ import annotations


async def test_delete_restore_forget_and_rename(client):
    assert (await client.post("/api/docs", json={"name": "plan", "text": "hello"})).status == 201
    assert (await client.delete("/api/docs/plan")).status == 200
    assert (await client.get("/api/docs/plan")).status == 404
    [entry] = await (await client.get("/api/trash")).json()
    assert entry["name"] == "plan" and entry["changed_after_delete"] is False and entry["deleted_at"]
    # A new document may take the name of one in the Trash.
    made = await client.post("/api/docs", json={"name": "plan", "text": "other"})
    assert made.status == 201 and (await made.json())["name"] == "plan"
    assert (await (await client.get("/api/docs/plan")).json())["text"] == "other"
    assert (await client.post("/api/docs/plan/rename", json={"name": "plan2"})).status == 200
    restored = await client.post("/api/trash/plan/restore")
    assert restored.status == 200 and (await restored.json())["name"] == "plan"
    assert (await (await client.get("/api/docs/plan")).json())["text"] == "hello"
    taken = await client.post("/api/docs/plan/rename", json={"name": "plan2"})
    assert taken.status == 409 and "plan2" in (await taken.json())["error"]
    assert (await client.post("/api/docs/plan/rename", json={"name": ".bad"})).status == 400
    assert (await client.post("/api/docs/plan/rename", json={"name": "final"})).status == 200
    moved = await client.get("/api/docs/plan")
    assert moved.status == 404 and (await moved.json())["name"] == "final"
    page = await client.get("/doc/plan?x=1", allow_redirects=False)
    assert page.status == 302 and page.headers["Location"] == "/doc/final?x=1"
    assert (await client.delete("/api/docs/final")).status == 200
    assert (await client.delete("/api/trash/final")).status == 200
    assert await (await client.get("/api/trash")).json() == []
    assert sorted(d["name"] for d in await (await client.get("/api/docs")).json()) == ["plan2"]
    assert (await client.delete("/api/trash/final")).status == 404


async def test_a_browser_socket_by_key_needs_a_known_key(client):
    response = await client.get("/ws/nothing-here?key=1", headers={"Connection": "Upgrade", "Upgrade": "websocket"})
    assert response.status in (400, 404)
    assert await (await client.get("/api/docs")).json() == []
