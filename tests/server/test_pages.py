"""The rough edges a new user meets on the pages: unknown paths, the name
hint, sizes, names that exist, names made from files, plurals."""

from __future__ import annotations

import aiohttp
import pytest

from server.pages import name_from_filename


async def test_unknown_paths_get_the_sites_own_page(client):
    resp = await client.get("/no/such/page")
    html = await resp.text()
    assert resp.status == 404 and resp.content_type == "text/html"
    assert "Page not found" in html and 'href="/peers"' in html  # the site's own page, with its navigation
    assert "404: Not Found" not in html
    resp = await client.get("/api/nothing-here")
    assert resp.status == 404 and (await resp.json()) == {"error": "no such page"}
    resp = await client.delete("/api/docs")
    assert resp.status == 405 and "not allowed" in (await resp.json())["error"]
    assert "GET" in resp.headers["Allow"]
    # A route's own 404 keeps its own message.
    resp = await client.get("/api/docs/ghost")
    assert "ghost" in (await resp.json())["error"]


async def test_the_name_hint_reads_right(client):
    html = await (await client.get("/")).text()
    assert "A document name is 1 to 128 characters of letters A-Z a-z" in html
    assert "a-z a-z" not in html


async def test_sizes_have_thousands_separators(client):
    await client.post("/api/docs", json={"name": "big", "text": "x" * 12345})
    await client.post("/api/docs", json={"name": "one", "text": "x"})
    html = await (await client.get("/")).text()
    assert "12,345 characters" in html and "1 character<" in html


async def test_creating_a_name_that_exists_says_so(client):
    await client.post("/api/docs", json={"name": "taken", "text": "first"})
    resp = await client.post("/docs", data={"name": "taken"}, allow_redirects=False)
    html = await resp.text()
    assert resp.status == 409
    assert "already exists" in html and 'href="/doc/taken"' in html and 'value="taken"' in html
    assert (await (await client.get("/api/docs/taken")).json())["text"] == "first"
    resp = await client.post("/docs", data={"name": "bad name"})
    assert resp.status == 400 and "letters" in await resp.text() and 'value="bad name"' in await resp.text()


async def test_an_imported_files_name_is_made_valid(client):
    form = aiohttp.FormData()
    form.add_field("file", b"# notes\n", filename="My Notes (v2).md", content_type="text/markdown")
    resp = await client.post("/docs/import", data=form, allow_redirects=False)
    assert resp.status == 303 and resp.headers["Location"] == "/doc/My-Notes-v2"
    assert (await (await client.get("/api/docs/My-Notes-v2")).json())["text"] == "# notes\n"
    # A name typed by the person is taken as typed, and refused if invalid.
    form = aiohttp.FormData()
    form.add_field("file", b"x", filename="a.md")
    form.add_field("name", "not valid!")
    resp = await client.post("/docs/import", data=form)
    assert resp.status == 400 and "letters" in await resp.text()


@pytest.mark.parametrize(
    ("filename", "name"),
    [
        ("My Notes (v2).md", "My-Notes-v2"),
        ("résumé final.txt", "resume-final"),
        ("C:\\Users\\me\\plan 2026.md", "plan-2026"),
        ("..hidden.md", "hidden"),
        ("(((.md", "imported"),
        ("archive.tar.gz", "archive.tar"),
        ("README", "README"),
        ("x" * 200 + ".md", "x" * 128),
    ],
)
def test_name_from_filename(filename, name):
    assert name_from_filename(filename) == name


async def test_the_peers_page_counts_documents_in_words(client):
    await client.post("/api/docs", json={"name": "only"})
    html = await (await client.get("/peers/table")).text()
    assert "This peer holds 1 document." in html
