"""Pages and JSON API through the app factory."""

from __future__ import annotations

import re

import aiohttp
import pytest


async def test_healthz(client):
    resp = await client.get("/healthz")
    assert resp.status == 200
    assert (await resp.json())["status"] == "ok"


async def test_create_list_get(client):
    resp = await client.post("/api/docs", json={"name": "plan.v2", "text": "# Plan\nnaïve 😀"})
    assert resp.status == 201
    listed = await (await client.get("/api/docs")).json()
    assert [d["name"] for d in listed] == ["plan.v2"]
    assert listed[0]["length"] == len("# Plan\nnaïve 😀")
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", listed[0]["updated_at"])
    got = await (await client.get("/api/docs/plan.v2")).json()
    assert got["name"] == "plan.v2" and got["text"] == "# Plan\nnaïve 😀"


async def test_create_conflict_and_unknown(client):
    assert (await client.post("/api/docs", json={"name": "dup"})).status == 201
    resp = await client.post("/api/docs", json={"name": "dup"})
    assert resp.status == 409
    assert "already exists" in (await resp.json())["error"]
    resp = await client.get("/api/docs/nothing")
    assert resp.status == 404


@pytest.mark.parametrize("name", ["", ".x", "a b", "x" * 129, "é", "a/b", None, 5])
async def test_bad_names_get_400_with_the_rule(client, name):
    resp = await client.post("/api/docs", json={"name": name})
    assert resp.status == 400
    assert "letters" in (await resp.json())["error"]
    assert (await (await client.get("/api/docs")).json()) == []


async def test_name_edges(client):
    assert (await client.post("/api/docs", json={"name": "x" * 128})).status == 201
    assert (await client.post("/api/docs", json={"name": "a-b_c.d"})).status == 201
    assert (await client.get("/api/docs/.secret")).status == 400


async def test_bad_json_body(client):
    resp = await client.post("/api/docs", data=b"{not json", headers={"Content-Type": "application/json"})
    assert resp.status == 400
    resp = await client.post("/api/docs", json=["list"])
    assert resp.status == 400


async def test_index_lists_documents_and_forms(client):
    await client.post("/api/docs", json={"name": "alpha", "text": "abc"})
    html = await (await client.get("/")).text()
    assert 'href="/doc/alpha"' in html
    assert "3 characters" in html
    assert 'action="/docs"' in html and 'action="/docs/import"' in html


async def test_form_create_redirects_to_editor(client):
    resp = await client.post("/docs", data={"name": "fresh"}, allow_redirects=False)
    assert resp.status == 303 and resp.headers["Location"] == "/doc/fresh"
    page = await client.get("/doc/fresh")
    html = await page.text()
    assert page.status == 200 and 'data-doc="fresh"' in html
    assert (await client.post("/docs", data={"name": "bad name"})).status == 400


async def test_editor_page_for_unknown_document_offers_create(client):
    resp = await client.get("/doc/ghost")
    assert resp.status == 404
    assert 'value="ghost"' in await resp.text()


async def test_static_urls_carry_content_hash(client):
    await client.post("/api/docs", json={"name": "s"})
    html = await (await client.get("/doc/s")).text()
    urls = re.findall(r"/static/[0-9a-f]{16}/[\w./-]+\.(?:js|css)", html)
    assert any(u.endswith("editor.js") for u in urls)
    assert any("meshpad-vendor-" in u for u in urls)
    for url in urls:
        resp = await client.get(url)
        assert resp.status == 200
        assert "immutable" in resp.headers["Cache-Control"]
    stale = re.sub(r"/static/[0-9a-f]{16}/", "/static/0000000000000000/", urls[0])
    resp = await client.get(stale)
    assert resp.status == 200 and resp.headers["Cache-Control"] == "no-cache"
    assert (await client.get("/static/0000000000000000/../pyproject.toml")).status == 404


async def test_export_markdown(client):
    await client.post("/api/docs", json={"name": "out", "text": "# Tïtle\n"})
    resp = await client.get("/doc/out/export")
    assert resp.status == 200
    assert resp.headers["Content-Type"].startswith("text/markdown")
    assert 'filename="out.md"' in resp.headers["Content-Disposition"]
    assert (await resp.read()).decode() == "# Tïtle\n"
    assert (await client.get("/doc/none/export")).status == 404


async def test_import_text_file(client):
    form = aiohttp.FormData()
    form.add_field("file", "line one\nlïne two 😀\n".encode(), filename="notes.md", content_type="text/markdown")
    resp = await client.post("/docs/import", data=form, allow_redirects=False)
    assert resp.status == 303 and resp.headers["Location"] == "/doc/notes"
    got = await (await client.get("/api/docs/notes")).json()
    assert got["text"] == "line one\nlïne two 😀\n"
    # Same name again: refused, the first document is unchanged.
    form = aiohttp.FormData()
    form.add_field("file", b"other", filename="notes.md")
    assert (await client.post("/docs/import", data=form)).status == 409
    assert (await (await client.get("/api/docs/notes")).json())["text"] == "line one\nlïne two 😀\n"


async def test_import_refuses_binary(client):
    form = aiohttp.FormData()
    form.add_field("file", b"\xff\xfe\x00garbage", filename="blob.md")
    resp = await client.post("/docs/import", data=form)
    assert resp.status == 400
    assert "UTF-8" in await resp.text()
    assert (await client.get("/api/docs/blob")).status == 404
