"""Idle documents are unloaded and loaded again on demand (``crdt.engine``
rule 7), through the app factory: a peer that may hold two documents in
memory serves many, through the API and through browsers, and loses
nothing; a document with a browser connected stays loaded."""

from __future__ import annotations

import time

import pytest
from waiting import wait_for
from yclient import YClient

from server.app import RUNTIME, create_app
from server.runtime import Runtime
from server.settings import Settings

UNLOAD_AFTER = 0.2
MAX_LOADED = 2
COUNT = 30


@pytest.fixture
async def peer(tmp_path, aiohttp_client):
    settings = Settings(
        host="127.0.0.1",
        port=0,
        data_dir=tmp_path / "data",
        unload_after=UNLOAD_AFTER,
        max_loaded=MAX_LOADED,
        session_gap=0.2,  # a browser's editing session (which keeps it loaded) ends soon
    )
    app = create_app(settings)
    client = await aiohttp_client(app)
    return client, app[RUNTIME]


def state(runtime: Runtime) -> str:
    replicas = runtime.core.node.replicas
    return f"loaded {sorted(runtime.core.documents)}, unloaded {len(replicas.unloaded)}, loading {replicas.loading}"


async def settled(runtime: Runtime, keys: set[str], timeout: float = 10.0) -> None:
    """Until at most MAX_LOADED documents are loaded and the summaries of
    all the others of *keys* are kept."""
    unloaded = runtime.core.node.replicas.unloaded

    def done() -> bool:
        loaded = set(runtime.core.documents)
        return len(loaded) <= MAX_LOADED and keys - loaded <= set(unloaded) and not loaded & set(unloaded)

    await wait_for(done, timeout, what=lambda: f"documents to unload: {state(runtime)}")


async def read(client, name: str) -> str:
    resp = await client.get(f"/api/docs/{name}")
    assert resp.status == 200, (name, resp.status, await resp.text())
    return (await resp.json())["text"]


async def edit_in_browser(client, name: str, client_id: int, text: str) -> str:
    """Open *name* in a browser, check what it holds, append *text*, wait
    until it is saved, close. Returns what the browser saw on opening."""
    y = await YClient.connect(client, f"/ws/{name}?acks=1", client_id)
    await wait_for(lambda: y.synced, what=f"{name}: sync step 2")
    seen = y.content
    frame = await y.insert(len(y.text), text)
    await wait_for(lambda: y.saved >= frame, what=f"{name}: saved")
    await y.close()
    return seen


def api_text(i: int) -> str:
    return f"api document {i}: naïve 😀\n" + "x" * i


def ws_text(i: int) -> str:
    return f"<browser edit {i}>"


async def test_many_documents_through_api_and_browsers_with_two_in_memory(peer):
    client, runtime = peer
    started = time.monotonic()
    for i in range(COUNT):
        resp = await client.post("/api/docs", json={"name": f"api{i}", "text": api_text(i)})
        assert resp.status == 201
        assert await read(client, f"api{i}") == api_text(i)
        if i % 5 == 4:  # an earlier one, likely unloaded by now, read back
            assert await read(client, f"api{i - 3}") == api_text(i - 3)
    for i in range(COUNT):
        assert await edit_in_browser(client, f"ws{i}", 5000 + i, ws_text(i)) == ""
    names = [f"api{i}" for i in range(COUNT)] + [f"ws{i}" for i in range(COUNT)]
    keys = {runtime.core.registry.resolve(n) for n in names}
    assert None not in keys and len(keys) == 2 * COUNT

    await settled(runtime, keys)
    assert len(runtime.core.node.replicas.unloaded) >= 2 * COUNT - MAX_LOADED
    listed = {d["name"]: d["length"] for d in await (await client.get("/api/docs")).json()}
    assert listed == {
        **{f"api{i}": len(api_text(i)) for i in range(COUNT)},
        **{f"ws{i}": len(ws_text(i)) for i in range(COUNT)},
    }

    # Everything reads back intact, loaded again on demand, through the API ...
    for i in range(COUNT):
        assert await read(client, f"api{i}") == api_text(i)
        assert await read(client, f"ws{i}") == ws_text(i)
    await settled(runtime, keys)
    # ... and through browsers, which edit what was unloaded.
    for i in range(0, COUNT, 3):
        assert await edit_in_browser(client, f"api{i}", 7000 + i, "!") == api_text(i)
        assert await edit_in_browser(client, f"ws{i}", 8000 + i, "?") == ws_text(i)
    await settled(runtime, keys)
    for i in range(COUNT):
        assert await read(client, f"api{i}") == api_text(i) + ("!" if i % 3 == 0 else "")
        assert await read(client, f"ws{i}") == ws_text(i) + ("?" if i % 3 == 0 else "")
    assert (await (await client.get("/healthz")).json())["status"] == "ok"
    assert time.monotonic() - started < 25


async def test_a_document_with_a_browser_connected_stays_loaded(peer):
    client, runtime = peer
    y = await YClient.connect(client, "/ws/held?acks=1", 4242)
    await wait_for(lambda: y.synced, what="sync step 2")
    frame = await y.insert(0, "held open")
    await wait_for(lambda: y.saved >= frame, what="saved")
    held = runtime.core.registry.resolve("held")
    assert held is not None
    connected = time.monotonic()
    # Other documents come and go; each is unloaded by a later sweep, while
    # the browser stays connected (and idle: its editing session ends).
    others: list[str] = []
    for j in range(3):
        assert (await client.post("/api/docs", json={"name": f"other{j}", "text": f"o{j}"})).status == 201
        others.append(runtime.core.registry.resolve(f"other{j}"))
        await wait_for(
            lambda: set(runtime.core.documents) == {held},
            what=lambda: f"the other documents to unload: {state(runtime)}",
        )
        assert held not in runtime.core.node.replicas.unloaded
        assert set(others) <= set(runtime.core.node.replicas.unloaded)
    assert time.monotonic() - connected > UNLOAD_AFTER + 1.0  # several sweeps saw it idle but for the browser
    assert not runtime.core.recorders  # its editing session is over: only the browser keeps it
    assert y.content == "held open" and not y.closed.is_set()

    # Still served live: an edit reaches the store and a second browser.
    frame = await y.insert(len(y.text), ", still")
    await wait_for(lambda: y.saved >= frame, what="saved")
    assert await read(client, "held") == "held open, still"

    await y.close()
    await wait_for(
        lambda: held in runtime.core.node.replicas.unloaded and held not in runtime.core.documents,
        what=lambda: f"held to unload once closed: {state(runtime)}",
    )
    assert await edit_in_browser(client, "held", 4343, "!") == "held open, still"
    assert await read(client, "held") == "held open, still!"
