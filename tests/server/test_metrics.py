"""GET /metrics (server.metrics): scraped from real apps and parsed with
prometheus-client's own parser. Two peers linked in this process through
their real peer endpoints; the numbers must move with real events."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from aiohttp.typedefs import Handler
from prometheus_client import CONTENT_TYPE_LATEST
from prometheus_client.parser import text_string_to_metric_families
from waiting import wait_for

from crdt import ywire
from server.app import METRICS_PORT, create_app
from server.keys import BROWSER_TOKEN, PEERING, RUNTIME
from server.metrics import METRICS

KEY = "meshpad-metrics-test-key"


def parse(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample: (name, sorted labels) -> value."""
    samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def total(samples: dict, name: str, **labels: str) -> float:
    """The sum of *name*'s samples whose labels include *labels*."""
    return sum(v for (n, ls), v in samples.items() if n == name and set(labels.items()) <= set(ls))


async def scrape(client) -> dict:
    resp = await client.get("/metrics")
    assert resp.status == 200, await resp.text()
    assert resp.headers["Content-Type"] == CONTENT_TYPE_LATEST  # the library's text format
    return parse(await resp.text())


@pytest.fixture
async def pair(aiohttp_client, tmp_path, settings):
    """Two peers of one network, B linked to A."""
    a = await aiohttp_client(create_app(replace(settings, data_dir=tmp_path / "a", network_key=KEY)))
    b = await aiohttp_client(create_app(replace(settings, data_dir=tmp_path / "b", network_key=KEY)))
    runtime = b.app[RUNTIME]
    runtime.perform(runtime.core.join(f"127.0.0.1:{a.server.port}", runtime.now()))
    for peer in (a, b):
        await wait_for(lambda p=peer: total_now(p, "meshpad_peers", state="connected") == 1, what="the link")
    return a, b


def total_now(client, name: str, **labels: str) -> float:
    """*name*'s total read straight from the app's registry (for polling)."""
    return total(parse(client.app[METRICS].exposition().decode()), name, **labels)


async def test_every_metric_is_there_and_bounded(client):
    samples = await scrape(client)
    names = {name for name, _ in samples}
    for name in (
        "meshpad_peers", "meshpad_peer_links", "meshpad_peer_messages_total", "meshpad_peer_bytes_total",
        "meshpad_updates_applied_total", "meshpad_causal_buffer_updates", "meshpad_peer_links_refused_total",
        "meshpad_peer_bans_total", "meshpad_peer_banned_addresses", "meshpad_antientropy_rounds_total",
        "meshpad_antientropy_outcomes_total", "meshpad_store_commit_seconds_count", "meshpad_documents",
        "meshpad_browser_connections",
    ):  # fmt: skip
        assert name in names, name
    await client.post("/api/docs", json={"name": "secret-plan", "text": "x"})
    samples = await scrape(client)
    assert not any("secret-plan" in value for _, labels in samples for _, value in labels)
    assert {dict(ls)["state"] for n, ls in samples if n == "meshpad_peers"} == {
        "connected", "suspected", "connecting", "down",
    }  # fmt: skip


async def test_updates_store_commits_and_documents(client):
    before = await scrape(client)
    assert total(before, "meshpad_store_commit_seconds_count") == 0
    await client.post("/api/docs", json={"name": "one", "text": "hello"})
    await client.post("/api/docs", json={"name": "two", "text": "world"})
    await wait_for(lambda: total_now(client, "meshpad_store_commit_seconds_count") >= 1, what="a commit")
    after = await scrape(client)
    assert total(after, "meshpad_updates_applied_total", origin="local") >= 2
    assert total(after, "meshpad_updates_applied_total", origin="peer") == 0
    assert total(after, "meshpad_documents", state="loaded") == 2
    assert total(after, "meshpad_store_commit_seconds_sum") > 0


async def test_two_linked_peers(pair):
    a, b = pair
    before_a, before_b = await scrape(a), await scrape(b)
    assert total(before_a, "meshpad_peer_links") == 1
    assert total(before_a, "meshpad_antientropy_rounds_total") >= 1
    await a.post("/api/docs", json={"name": "shared", "text": "spread me"})
    await wait_for(lambda: b.app[RUNTIME].exists("shared"), what="the document on B")
    await wait_for(lambda: total_now(b, "meshpad_updates_applied_total", origin="peer") >= 1, what="B applying it")
    after_a, after_b = await scrape(a), await scrape(b)
    assert total(after_a, "meshpad_peer_bytes_total", direction="out") > total(
        before_a, "meshpad_peer_bytes_total", direction="out"
    )
    assert total(after_b, "meshpad_peer_bytes_total", direction="in") > total(
        before_b, "meshpad_peer_bytes_total", direction="in"
    )
    # The change went as an UPDATE (pushed) or a SYNC_STEP2 (anti-entropy): counted by type either way.
    kinds = ("update", "sync_step2")
    carried = sum(total(after_b, "meshpad_peer_messages_total", direction="in", type=t) for t in kinds)
    assert carried >= 1
    assert total(after_b, "meshpad_peer_messages_total", direction="in", type="hello") == 1
    assert total(after_b, "meshpad_peer_messages_total", direction="in", type="handshake") >= 1
    assert total(after_a, "meshpad_peer_messages_total", type="hello", direction="out") == 1
    assert total(after_a, "meshpad_antientropy_outcomes_total") >= 1
    assert total(after_b, "meshpad_causal_buffer_updates") == 0


async def test_browser_connection_gauge(client):
    await client.post("/api/docs", json={"name": "notes"})
    assert total(await scrape(client), "meshpad_browser_connections") == 0
    ws = await client.ws_connect("/ws/notes")
    await wait_for(lambda: total_now(client, "meshpad_browser_connections") == 1, what="one connection")
    await wait_for(lambda: total_now(client, "meshpad_browser_frames_total", direction="out") >= 1, what="sync step 1")
    assert total_now(client, "meshpad_browser_bytes_total", direction="out") > 0
    await ws.send_bytes(ywire.encode_query_awareness())
    await wait_for(lambda: total_now(client, "meshpad_browser_frames_total", direction="in") == 1, what="a frame in")
    await ws.close()
    await wait_for(lambda: total_now(client, "meshpad_browser_connections") == 0, what="no connection")


async def test_wrong_network_key_is_counted(aiohttp_client, tmp_path, settings):
    a = await aiohttp_client(create_app(replace(settings, data_dir=tmp_path / "a", network_key=KEY)))
    other = await aiohttp_client(create_app(replace(settings, data_dir=tmp_path / "o", network_key=KEY + "-other")))
    runtime = other.app[RUNTIME]
    runtime.perform(runtime.core.join(f"127.0.0.1:{a.server.port}", runtime.now()))
    await wait_for(
        lambda: total_now(a, "meshpad_peer_links_refused_total", reason="wrong_key") >= 1, what="a refusal on A"
    )
    samples = await scrape(a)
    assert total(samples, "meshpad_peers", state="connected") == 0
    assert total(samples, "meshpad_peer_links_refused_total", reason="invalid_data") == 0


async def test_invalid_handshakes_ban(client):
    from crdt.limits import STRIKES_BEFORE_BAN

    for _ in range(STRIKES_BEFORE_BAN):
        ws = await client.ws_connect("/peer")
        await ws.send_bytes(b"MSHP\x01" + bytes(48))
        await ws.receive()
    with pytest.raises(aiohttp.WSServerHandshakeError):
        await client.ws_connect("/peer")
    samples = await scrape(client)
    assert total(samples, "meshpad_peer_links_refused_total", reason="banned") == 1
    assert total(samples, "meshpad_peer_links_refused_total") == STRIKES_BEFORE_BAN + 1
    assert total(samples, "meshpad_peer_bans_total") == 1
    assert total(samples, "meshpad_peer_banned_addresses") == 1
    assert client.app[PEERING].bans_started == 1


def _from_afar(app: web.Application) -> None:
    """Make every request look as if it came from another machine."""

    @web.middleware
    async def remote(request: web.Request, handler: Handler) -> web.StreamResponse:
        return await handler(request.clone(remote="192.0.2.7"))

    app.middlewares.insert(0, remote)


async def test_protected_like_the_api_from_another_machine(aiohttp_client, settings):
    app = create_app(settings)
    _from_afar(app)
    client = await aiohttp_client(app)
    token = app[BROWSER_TOKEN]
    api, metrics = await client.get("/api/docs"), await client.get("/metrics")
    assert metrics.status == api.status == 403
    assert await metrics.text() == await api.text()
    resp = await client.get("/metrics", headers={"Authorization": f"Bearer {token}"})
    assert resp.status == 200 and "meshpad_peers" in await resp.text()
    resp = await client.get("/metrics", headers={"Authorization": "Bearer wrong"})
    assert resp.status == 403
    client.session.cookie_jar.update_cookies({"meshpad_token": token})
    assert (await client.get("/metrics")).status == 200


async def test_separate_address(aiohttp_client, settings):
    app = create_app(replace(settings, metrics_address=("127.0.0.1", 0)))
    _from_afar(app)
    client = await aiohttp_client(app)
    port = app[METRICS_PORT]
    assert port != client.server.port
    async with aiohttp.ClientSession() as session:
        async with session.get(f"http://127.0.0.1:{port}/metrics") as resp:
            assert resp.status == 200
            text = await resp.text()
            assert "meshpad_peers" in text
            parse(text)
        async with session.get(f"http://127.0.0.1:{port}/api/docs") as resp:
            assert resp.status == 404  # the separate listener serves /metrics alone
    assert (await client.get("/metrics")).status == 403  # the main port still wants the token


async def test_every_metric_is_documented(client):
    doc = (Path(__file__).parents[2] / "docs" / "operations.md").read_text()
    table = doc[doc.index("## Metrics") :]
    text = await (await client.get("/metrics")).text()
    for family in text_string_to_metric_families(text):
        if family.name.endswith("_created"):
            continue  # the histogram's creation time, written by the library
        suffix = "_total" if family.type == "counter" else ""
        assert f"| `{family.name}{suffix}` | {family.type} |" in table, family.name
