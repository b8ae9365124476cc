"""The browser boundary in a real Chromium: pages of other origins, a foreign
site and another port of this machine alike, can neither create documents
(not even with a plain ``<img>`` of ``/ws/{name}``) nor post to the peer nor
open its WebSocket. Two peers run, so a document created on A would also
show on B."""

from __future__ import annotations

import json
import time
import urllib.request

import pytest
from aiohttp import web
from test_editor import DEADLINE, create
from waiting import wait_for_blocking

pytestmark = [pytest.mark.browser, pytest.mark.slow]

# Every way a page may reach the peer without being its own page.
ATTACK = """<!doctype html><title>elsewhere</title>
<iframe name="sink" title="sink"></iframe>
<form id="form" method="post" action="{peer}/docs" target="sink"><input name="name" value="junk-form"></form>
<script>
window.results = {{}}
const done = (what, how) => {{ window.results[what] = how }}
const img = new Image()
img.onerror = () => done('img', 'error')
img.onload = () => done('img', 'load')
img.src = '{peer}/ws/junk-img'
document.body.append(img)
fetch('{peer}/ws/junk-fetch', {{ mode: 'no-cors' }}).then(() => done('fetch', 'sent'), () => done('fetch', 'failed'))
fetch('{peer}/api/docs', {{ method: 'POST', mode: 'no-cors', headers: {{ 'Content-Type': 'text/plain' }},
  body: JSON.stringify({{ name: 'junk-post' }}) }}).then(() => done('post', 'sent'), () => done('post', 'failed'))
const ws = new WebSocket('{ws}/ws/junk-ws{query}')
ws.onopen = () => done('ws', 'open')
ws.onclose = () => {{ if (!('ws' in window.results)) done('ws', 'refused') }}
document.querySelector('iframe').onload = () => done('form', 'answered')
document.getElementById('form').submit()
</script>"""
JUNK = {"junk-img", "junk-fetch", "junk-post", "junk-ws", "junk-form"}


def names(peer) -> set[str]:
    with urllib.request.urlopen(peer.url + "/api/docs") as resp:
        return {d["name"] for d in json.loads(resp.read())}


async def serve_page(aiohttp_server, html: str):
    async def page(request: web.Request) -> web.Response:
        return web.Response(text=html, content_type="text/html")

    app = web.Application()
    app.router.add_get("/", page)
    return await aiohttp_server(app)


async def attack(browser, url: str, *, expect_ws: str) -> dict[str, str]:
    context = await browser.new_context()
    page = await context.new_page()
    await page.goto(url)
    try:
        await page.wait_for_function(
            "['img', 'fetch', 'post', 'ws', 'form'].every(k => k in window.results)", timeout=DEADLINE
        )
    finally:
        results = await page.evaluate("window.results")
        print("attack results", results)
    await context.close()
    assert results["ws"] == expect_ws, results
    return results


def settled(a, b) -> None:
    """A marker made on A after the attack has reached B: whatever the
    attack had created would have been replicated by now too."""
    marker = f"marker-{time.monotonic_ns()}"
    create(a, marker)
    wait_for_blocking(lambda: marker in names(b), 15, what="the marker reaches B")


async def test_a_foreign_site_creates_nothing(browser_foreign, two_peers, aiohttp_server):
    a, b = two_peers
    html = ATTACK.format(peer=a.url, ws=f"ws://{a.address}", query="")
    site = await serve_page(aiohttp_server, html)
    # evil.test resolves to loopback inside this Chromium (see browser_foreign).
    await attack(browser_foreign, f"http://evil.test:{site.port}/", expect_ws="refused")
    settled(a, b)
    assert not (names(a) | names(b)) & JUNK, names(a) | names(b)


async def test_a_page_on_another_loopback_port_is_refused(browser, two_peers, aiohttp_server):
    a, b = two_peers
    html = ATTACK.format(peer=a.url, ws=f"ws://{a.address}", query="")
    site = await serve_page(aiohttp_server, html)
    assert site.port != a.port
    await attack(browser, f"http://127.0.0.1:{site.port}/", expect_ws="refused")
    settled(a, b)
    assert not (names(a) | names(b)) & JUNK, names(a) | names(b)
    # The same page given the token (a page that attaches a document to two
    # local peers) is let in: the refusal above was the origin rule at work.
    token = (a.data_dir / "browser-token").read_text().strip()
    html = ATTACK.format(peer=a.url, ws=f"ws://{a.address}", query=f"?token={token}")
    site = await serve_page(aiohttp_server, html)
    await attack(browser, f"http://127.0.0.1:{site.port}/", expect_ws="open")
    wait_for_blocking(lambda: "junk-ws" in names(b), 15, what="the authorised document reaches B")
