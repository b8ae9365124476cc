"""The editor in a real Chromium, against a real ``meshpad serve`` process."""

from __future__ import annotations

import json
import re
import urllib.request

import pytest
from waiting import wait_for

pytestmark = [pytest.mark.browser, pytest.mark.slow]

TEXT = "window.meshpad.text.toString()"
DEADLINE = 10_000  # ms


def create(peer, name: str, text: str = "") -> None:
    req = urllib.request.Request(
        peer.url + "/api/docs",
        data=json.dumps({"name": name, "text": text}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req) as resp:
        assert resp.status == 201


def server_text(peer, name: str) -> str:
    with urllib.request.urlopen(f"{peer.url}/api/docs/{name}") as resp:
        return json.loads(resp.read())["text"]


async def open_editor(browser, peer, name: str, errors: list[str], user: str | None = None):
    context = await browser.new_context(bypass_csp=True)
    page = await context.new_page()
    page.on("pageerror", lambda e: errors.append(str(e)))
    if user:
        await page.add_init_script(
            f"localStorage.setItem('meshpad:user', JSON.stringify({{name: '{user}', color: '#cc3300'}}))"
        )
    await page.goto(f"{peer.url}/doc/{name}")
    await page.wait_for_function("window.meshpad && window.meshpad.provider.synced", timeout=DEADLINE)
    return page


async def type_at_end(page, text: str) -> None:
    await page.click(".cm-content")
    await page.keyboard.press("Control+End")
    await page.keyboard.type(text)


async def wait_text(page, predicate_js: str) -> None:
    await page.wait_for_function(f"(() => {{ const t = {TEXT}; return {predicate_js} }})()", timeout=DEADLINE)


async def test_two_pages_converge_with_cursors(browser, peer, page_errors):
    create(peer, "shared")
    a = await open_editor(browser, peer, "shared", page_errors, user="Ann")
    b = await open_editor(browser, peer, "shared", page_errors, user="Bob")
    await type_at_end(a, "Hello from Ann. ")
    await wait_text(b, "t.includes('Hello from Ann.')")
    await type_at_end(b, "And Bob here.")
    await wait_text(a, "t.includes('And Bob here.')")
    assert await a.evaluate(TEXT) == await b.evaluate(TEXT)
    # Bob's cursor is drawn in Ann's editor with Bob's name.
    await a.wait_for_selector(".cm-ySelectionInfo:has-text('Bob')", state="attached", timeout=DEADLINE)
    assert "Bob" in await a.inner_text("#people")
    # Saved status reaches "saved" and the peer holds the text.
    await b.wait_for_function("window.meshpad.isSaved()", timeout=DEADLINE)
    assert await b.get_attribute("#saved", "data-saved") == "true"
    assert server_text(peer, "shared") == await a.evaluate(TEXT)
    # A tab that closes disappears from the others at once.
    await b.context.close()
    await a.wait_for_function(
        "![...window.meshpad.provider.awareness.getStates().values()].some(s => s.user && s.user.name === 'Bob')",
        timeout=3_000,
    )
    assert "Bob" not in await a.inner_text("#people")


async def test_reload_keeps_text_and_name(browser, peer, page_errors):
    create(peer, "reload")
    a = await open_editor(browser, peer, "reload", page_errors)
    await a.fill("#user-name", "Carol")
    await a.press("#user-name", "Enter")
    await type_at_end(a, "kept across reloads ✓")
    await a.wait_for_function("window.meshpad.isSaved()", timeout=DEADLINE)
    await a.reload()
    await a.wait_for_function("window.meshpad && window.meshpad.provider.synced", timeout=DEADLINE)
    await wait_text(a, "t === 'kept across reloads ✓'")
    assert await a.input_value("#user-name") == "Carol"


async def test_undo_reverts_only_own_edits(browser, peer, page_errors):
    create(peer, "undo")
    a = await open_editor(browser, peer, "undo", page_errors)
    b = await open_editor(browser, peer, "undo", page_errors)
    await type_at_end(a, "mine ")
    await wait_text(b, "t === 'mine '")
    await type_at_end(b, "theirs")
    await wait_text(a, "t === 'mine theirs'")
    await a.click(".cm-content")
    await a.keyboard.press("Control+z")
    await wait_text(a, "t === 'theirs'")
    await wait_text(b, "t === 'theirs'")


async def test_peer_restart_keeps_text_and_offline_typing(browser, peer, page_errors):
    create(peer, "restart")
    a = await open_editor(browser, peer, "restart", page_errors)
    await type_at_end(a, "before the crash. ")
    await a.wait_for_function("window.meshpad.isSaved()", timeout=DEADLINE)
    peer.kill()
    await a.wait_for_function("document.getElementById('status').dataset.state !== 'connected'", timeout=DEADLINE)
    await type_at_end(a, "typed while the peer was down.")
    assert await a.get_attribute("#saved", "data-saved") == "false"
    peer.start()
    # The page reconnects by itself, pushes what was typed, and says so.
    await a.wait_for_function("document.getElementById('status').dataset.state === 'connected'", timeout=DEADLINE)
    await a.wait_for_function("window.meshpad.isSaved()", timeout=DEADLINE)
    assert server_text(peer, "restart") == "before the crash. typed while the peer was down."
    # A fresh page (no IndexedDB of its own) gets the text from the peer.
    b = await open_editor(browser, peer, "restart", page_errors)
    await wait_text(b, "t === 'before the crash. typed while the peer was down.'")


async def test_stock_websocket_provider_can_edit(browser, peer, page_errors):
    """A page with no Meshpad code: only the vendored Yjs + y-websocket."""
    create(peer, "stock", "seed")
    context = await browser.new_context(bypass_csp=True)
    page = await context.new_page()
    page.on("pageerror", lambda e: page_errors.append(str(e)))
    # Any same-origin page will do; the bundle is loaded by its hashed URL.
    html = urllib.request.urlopen(f"{peer.url}/doc/stock").read().decode()
    bundle = re.search(r'"meshpad-vendor": "([^"]+)"', html).group(1)
    await page.goto(f"{peer.url}/healthz")
    await page.evaluate(
        """async (bundle) => {
            const { Y, WebsocketProvider } = await import(bundle)
            const doc = new Y.Doc()
            const provider = new WebsocketProvider('ws://' + location.host + '/ws', 'stock', doc)
            await new Promise(resolve => provider.on('sync', s => s && resolve()))
            doc.getText('content').insert(4, ' and stock')
            window.stock = { doc, provider }
        }""",
        peer.url + bundle,
    )
    await wait_for(
        lambda: server_text(peer, "stock") == "seed and stock",
        what=lambda: f"the stock client's edit on the peer, which has {server_text(peer, 'stock')!r}",
        interval=0.05,
    )


async def test_editor_runs_under_its_content_security_policy(browser, peer, page_errors):
    """No CSP bypass here: the page's own code must run within its policy."""
    create(peer, "csp")
    context = await browser.new_context()
    page = await context.new_page()
    violations: list[str] = []

    def on_console(message) -> None:
        if "Content Security Policy" in message.text:
            violations.append(message.text)

    page.on("console", on_console)
    page.on("pageerror", lambda e: page_errors.append(str(e)))
    response = await page.goto(f"{peer.url}/doc/csp")
    assert "script-src 'self'" in response.headers["content-security-policy"]
    await wait_for(
        lambda: page.evaluate("() => !!(window.meshpad && window.meshpad.provider.synced)"),
        what="the editor to start under its CSP",
        interval=0.05,
    )
    await page.click(".cm-content")
    await page.keyboard.type("within policy")
    assert await page.evaluate("() => window.meshpad.text.toString()") == "within policy"
    assert not violations, violations
