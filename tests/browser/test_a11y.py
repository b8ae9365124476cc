"""Accessibility in Chromium: every page passes axe-core (the wcag2a and
wcag2aa rules) with no serious or critical violation, in the light and the
dark colour scheme, and every control of every page is reached with Tab and
shows that it has the focus.

axe-core comes from npm, pinned by ``tests/browser/axe/package-lock.json``
(``tests/run`` installs it with ``npm ci``); it is used by these tests only.
The pages run under their own Content-Security-Policy: ``script-src 'self'``
refuses the inline ``<script>`` that ``page.add_script_tag`` would add, so
axe's source is evaluated through the DevTools protocol (``page.evaluate``),
which the page's CSP does not govern. No context bypasses the CSP.

The pages and their states: the documents list empty and with documents;
the editor connected (with a second person on another peer), and with its
History panel open on a version; the history page; a version page with its
changes; the Peers page alone and with a connected peer; the Trash empty and
with an item whose "Delete forever" is open; the Spaces page; a space's
page with two members and a removal's confirmation open; the site's 404 page and the
page of a missing document (one in the Trash).
"""

from __future__ import annotations

import asyncio
import json
import urllib.request
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest
from processes import Peer
from waiting import wait_for, wait_for_blocking
from yclient import YClient

pytestmark = [pytest.mark.browser, pytest.mark.slow]

AXE = Path(__file__).parent / "axe" / "node_modules" / "axe-core" / "axe.min.js"
DEADLINE = 10.0  # s
NOTES = """# Meeting notes

Decisions of the week, with **bold**, *emphasis* and a [link](https://example.com).

## Actions

- [ ] write the report
- [x] book the room

```python
print("hello")
```

| who | what |
| --- | --- |
| Ann | slides |
"""
ANN = {"name": "Ann", "color": "#3cb44b"}  # colours of the editor's own palette
BOB = {"name": "Bob", "color": "#f58231"}


def call(peer: Peer, method: str, path: str, body: dict | None = None) -> dict:
    req = urllib.request.Request(
        peer.url + path,
        method=method,
        data=json.dumps(body or {}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=10) as resp:
        return json.loads(resp.read())


async def _edit(peer: Peer, name: str, text: str) -> None:
    """Append *text* to the document through the y-websocket protocol, until stored."""
    async with aiohttp.ClientSession() as http:
        client = await YClient.connect(http, f"{peer.url.replace('http', 'ws')}/ws/{name}?acks=1", 4242)
        await wait_for(lambda: client.synced, DEADLINE, what="the client to sync")
        number = await client.insert(len(client.content.encode()), text)
        await wait_for(lambda: client.saved >= number, DEADLINE, what="the edit stored")
        await client.close()


@dataclass
class Site:
    a: Peer  # holds documents, versions and a deleted document; B is connected to it
    b: Peer
    alone: Peer  # no documents, no peers, an empty Trash
    version: str  # a version with changes since the one before


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("a11y")
    a = Peer(tmp / "a").start()
    b = Peer(tmp / "b", args=["--join", a.address]).start()
    alone = Peer(tmp / "alone").start()
    try:
        call(a, "POST", "/api/docs", {"name": "notes", "text": NOTES})
        call(a, "POST", "/api/docs", {"name": "plans", "text": "Plans for next year.\n"})
        call(a, "POST", "/api/docs/notes/versions", {"label": "first draft", "author": ANN})
        asyncio.run(_edit(a, "notes", "\nA line added after the first draft.\n"))
        call(a, "POST", "/api/docs/notes/versions", {"label": "second", "author": BOB})
        # The edit's session became a version of its own, with what it added.
        version = wait_for_blocking(
            lambda: next((v["id"] for v in a.get("/api/docs/notes/history")["versions"] if v["inserted"]), None),
            what="a version with changes",
        )
        call(a, "POST", "/api/docs", {"name": "old-ideas", "text": "Ideas nobody wants.\n"})
        call(a, "DELETE", "/api/docs/old-ideas", {"author": ANN})
        wait_for_blocking(lambda: any(p["state"] == "connected" for p in a.get("/api/peers")), what="B connected to A")
        wait_for_blocking(lambda: b.get("/api/trash"), what="the Trash to reach B")
        yield Site(a, b, alone, version)
    finally:
        alone.stop()
        b.stop()
        a.stop()


async def until(page, js: str, what: str) -> None:
    """Until the expression *js* is truthy in *page* (polled: the CSP
    forbids the eval that ``wait_for_function`` needs)."""
    await wait_for(lambda: page.evaluate(f"() => Boolean({js})"), timeout=DEADLINE, what=what, interval=0.05)


async def open_page(browser, url: str, scheme: str, user: dict | None = None, errors: list[str] | None = None):
    context = await browser.new_context(color_scheme=scheme, viewport={"width": 1100, "height": 800})
    page = await context.new_page()
    if errors is not None:
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.on("console", lambda m: errors.append(m.text) if "Content Security Policy" in m.text else None)
    if user:
        await page.add_init_script(f"localStorage.setItem('meshpad:user', {json.dumps(json.dumps(user))})")
    await page.goto(url)
    return page


async def editor_ready(page) -> None:
    await until(
        page,
        "window.meshpad && window.meshpad.provider.synced"
        " && document.getElementById('status').dataset.state === 'connected'",
        "the editor connected and synced",
    )


# -- the pages and their states ---------------------------------------------------

Setup = Callable[[object, Site, str, list[str]], Awaitable[object]]


async def docs_empty(browser, site: Site, scheme: str, errors: list[str]):
    return await open_page(browser, site.alone.url + "/", scheme, errors=errors)


async def docs_listed(browser, site: Site, scheme: str, errors: list[str]):
    page = await open_page(browser, site.a.url + "/", scheme, errors=errors)
    await until(page, "document.querySelector('a[href=\"/doc/notes\"]')", "the documents listed")
    return page


async def editor(browser, site: Site, scheme: str, errors: list[str]):
    # Bob edits the same document through the other peer: his cursor and
    # name show in Ann's editor.
    bob = await open_page(browser, site.b.url + "/doc/notes", scheme, user=BOB, errors=errors)
    await editor_ready(bob)
    await bob.click(".cm-content")
    page = await open_page(browser, site.a.url + "/doc/notes", scheme, user=ANN, errors=errors)
    await editor_ready(page)
    await until(page, "document.getElementById('people').textContent.includes('Bob')", "Bob shown in the bar")
    await until(page, "document.querySelector('.cm-ySelectionInfo')", "Bob's cursor drawn")
    return page


async def editor_history(browser, site: Site, scheme: str, errors: list[str]):
    page = await open_page(browser, site.a.url + "/doc/notes", scheme, user=ANN, errors=errors)
    await editor_ready(page)
    await page.click("#history-toggle")
    await until(page, "document.querySelectorAll('#history-list .version-button').length >= 2", "the versions listed")
    await page.click(f"#history-list .version-button[data-id='{site.version}']")
    await until(page, "document.querySelector('#version-text ins')", "the version shown with its changes")
    return page


async def history_page(browser, site: Site, scheme: str, errors: list[str]):
    return await open_page(browser, site.a.url + "/doc/notes/history", scheme, errors=errors)


async def version_page(browser, site: Site, scheme: str, errors: list[str]):
    page = await open_page(browser, f"{site.a.url}/doc/notes/versions/{site.version}", scheme, errors=errors)
    await until(page, "document.querySelector('#version-text ins')", "the version's changes highlighted")
    return page


async def peers_alone(browser, site: Site, scheme: str, errors: list[str]):
    return await open_page(browser, site.alone.url + "/peers", scheme, errors=errors)


async def peers_connected(browser, site: Site, scheme: str, errors: list[str]):
    page = await open_page(browser, site.a.url + "/peers", scheme, errors=errors)
    await until(page, "document.querySelector('#peer-table tr[data-state=connected]')", "B listed as connected")
    return page


async def trash_empty(browser, site: Site, scheme: str, errors: list[str]):
    return await open_page(browser, site.alone.url + "/trash", scheme, errors=errors)


async def trash_listed(browser, site: Site, scheme: str, errors: list[str]):
    page = await open_page(browser, site.a.url + "/trash", scheme, errors=errors)
    await page.click("tr[data-name='old-ideas'] summary")
    await until(page, "document.querySelector('tr[data-name=\"old-ideas\"] details').open", "the confirmation open")
    return page


async def spaces_list(browser, site: Site, scheme: str, errors: list[str]):
    return await open_page(browser, site.a.url + "/spaces", scheme, errors=errors)


async def space_members(browser, site: Site, scheme: str, errors: list[str]):
    # The first space (open to the network key), with B as a member, and
    # the confirmation of B's removal open.
    page = await open_page(browser, site.a.url + "/spaces/main", scheme, errors=errors)

    async def listed() -> bool:  # the page does not refresh itself: reloaded until B is on it
        if await page.locator("table.members tbody tr").count() >= 2:
            return True
        await page.reload()
        return False

    await wait_for(listed, DEADLINE, what="B listed as a member of main", interval=0.2)
    await page.click("table.members details.remove summary")
    await until(page, "document.querySelector('table.members details.remove').open", "the confirmation open")
    return page


async def not_found(browser, site: Site, scheme: str, errors: list[str]):
    return await open_page(browser, site.a.url + "/no/such/page", scheme)  # its 404 is an expected console error


async def missing_document(browser, site: Site, scheme: str, errors: list[str]):
    return await open_page(browser, site.a.url + "/doc/old-ideas", scheme)


PAGES: dict[str, Setup] = {
    "documents-empty": docs_empty,
    "documents": docs_listed,
    "editor": editor,
    "editor-history": editor_history,
    "history": history_page,
    "version": version_page,
    "peers-alone": peers_alone,
    "peers-connected": peers_connected,
    "trash-empty": trash_empty,
    "trash": trash_listed,
    "spaces": spaces_list,
    "space": space_members,
    "404": not_found,
    "missing-document": missing_document,
}


# -- axe ------------------------------------------------------------------------------

RUN_AXE = """async () => {
  const result = await axe.run(document, {
    runOnly: { type: 'tag', values: ['wcag2a', 'wcag2aa'] },
    resultTypes: ['violations'],
  })
  return result.violations.map(v => ({
    id: v.id, impact: v.impact, help: v.help, url: v.helpUrl,
    nodes: v.nodes.map(n => ({ target: n.target.join(' '), impact: n.impact, summary: n.failureSummary })),
  }))
}"""


async def axe_violations(page) -> list[dict]:
    """axe's serious and critical violations of the page as it is now."""
    if not await page.evaluate("() => typeof window.axe === 'object'"):
        # An expression evaluated by the DevTools protocol: not an inline
        # script, so the page's CSP lets it run.
        await page.evaluate(AXE.read_text() + "\n;true")
    found = await page.evaluate(RUN_AXE)
    return [v for v in found if v["impact"] in ("serious", "critical")]


def describe(violations: list[dict]) -> str:
    lines = []
    for v in violations:
        lines.append(f"  {v['impact']} {v['id']}: {v['help']} ({v['url']})")
        for n in v["nodes"]:
            lines.append(f"      {n['target']}")
            lines += [f"          {line}" for line in n["summary"].splitlines() if line.strip()][:4]
    return "\n".join(lines)


@pytest.mark.parametrize("scheme", ["light", "dark"])
@pytest.mark.parametrize("state", list(PAGES))
async def test_axe_finds_no_serious_violation(browser, site, state, scheme):
    assert AXE.is_file(), "axe-core is missing: run `npm ci` in tests/browser/axe (tests/run does)"
    errors: list[str] = []
    page = await PAGES[state](browser, site, scheme, errors)
    violations = await axe_violations(page)
    assert not violations, f"axe on {state} ({scheme}) at {page.url}:\n{describe(violations)}"
    assert not errors, f"errors in the page: {errors}"


async def test_axe_sees_a_violation(browser, site):
    """The check can fail: an image without a text alternative and white text
    on white, added to a page, are reported."""
    page = await open_page(browser, site.alone.url + "/", "light")
    await page.evaluate(
        """() => {
      const img = document.createElement('img'); img.src = '/favicon.ico'
      const p = document.createElement('p'); p.textContent = 'pale'; p.style.color = '#aaa'
      p.style.background = '#fff'
      document.querySelector('main').append(img, p)
    }"""
    )
    ids = {v["id"] for v in await axe_violations(page)}
    assert {"image-alt", "color-contrast"} <= ids


# -- the keyboard ---------------------------------------------------------------------

# What a person may operate on the page: every control that is shown and
# enabled and not taken out of the tab order.
CONTROLS = """() => {
  const selector = 'a[href], button, input:not([type=hidden]), select, textarea, summary, iframe, ' +
    '[tabindex], [contenteditable=""], [contenteditable=true]'
  const shown = el => el.checkVisibility({ visibilityProperty: true, opacityProperty: true }) &&
    el.getClientRects().length > 0 && !el.closest('[inert]')
  const list = [...document.querySelectorAll(selector)].filter(el =>
    !el.disabled && (el.tabIndex >= 0 || el.isContentEditable) && shown(el) &&
    !el.closest('details:not([open]) > :not(summary)'))
  const styles = list.map(el => __look(el))
  window.__controls = { list, styles }
  return list.map(__name)
}"""

# How an element looks (the properties a focus indicator changes), and how
# to name it in a message. Defined once in the page.
HELPERS = """() => {
  window.__look = el => {
    const s = getComputedStyle(el)
    return {
      outline: s.outlineStyle !== 'none' && parseFloat(s.outlineWidth) > 0
        ? s.outlineStyle + ' ' + s.outlineWidth + ' ' + s.outlineColor : '',
      shadow: s.boxShadow, border: s.borderColor + ' ' + s.borderWidth, background: s.backgroundColor,
      decoration: s.textDecorationLine,
    }
  }
  window.__name = el => {
    const label = (el.getAttribute('aria-label') || el.textContent || el.getAttribute('name') || el.value || '').trim()
    return el.tagName.toLowerCase() + (el.id ? '#' + el.id : '') + (label ? ' “' + label.slice(0, 40) + '”' : '')
  }
}"""

# After a Tab: which element has the focus, and whether it shows it.
FOCUSED = """async () => {
  // What the focus changed is drawn by the next frame (CodeMirror draws its caret then).
  for (let i = 0; i < 2; i++) await new Promise(resolve => requestAnimationFrame(resolve))
  // A transition of the ring: at its end. (Not an infinite animation, such as a caret's blink.)
  for (const a of document.getAnimations()) if (a instanceof CSSTransition) a.finish()
  const el = document.activeElement
  if (!el || el === document.body || el === document.documentElement) return null
  const controls = window.__controls
  const index = controls.list.indexOf(el)
  const now = __look(el)
  // Before anything had the focus (or, for an element not listed, as it
  // would look unfocused: an outline of none).
  const before = index >= 0 ? controls.styles[index] : { outline: '', shadow: now.shadow, border: now.border,
    background: now.background, decoration: now.decoration }
  let shows = Boolean(now.outline) || ['shadow', 'border', 'background', 'decoration'].some(k => now[k] !== before[k])
  // A text editor shows the focus with its caret (CodeMirror draws it).
  const cm = el.closest('.cm-editor')
  if (!shows && cm && el.isContentEditable) {
    shows = cm.classList.contains('cm-focused') &&
      [...cm.querySelectorAll('.cm-cursor')].some(c => c.getBoundingClientRect().height > 0)
  }
  const first = window.__first === undefined
  if (first) window.__first = el
  const editor = Boolean(cm && el.isContentEditable)
  return { index, name: __name(el), again: !first && window.__first === el, shows, editor }
}"""


async def tab_through(page) -> tuple[list[str], list[str], list[str]]:
    """Press Tab from the top of *page* until the focus comes round again:
    the page's controls, those Tab never reached, and those that took the
    focus without showing it."""
    await page.evaluate(HELPERS)
    await page.evaluate("() => document.activeElement && document.activeElement.blur()")
    controls = await page.evaluate(CONTROLS)
    reached: set[int] = set()
    unseen_focus: list[str] = []
    for _ in range(3 * len(controls) + 10):
        await page.keyboard.press("Tab")
        focused = await page.evaluate(FOCUSED)
        if focused is None:
            continue
        if focused["again"]:
            break  # round the page once
        if focused["index"] >= 0:
            reached.add(focused["index"])
        if not focused["shows"]:
            unseen_focus.append(focused["name"])
        if focused["editor"]:
            # CodeMirror keeps Tab for indenting; Escape, then Tab, moves on.
            await page.keyboard.press("Escape")
    missed = [c for i, c in enumerate(controls) if i not in reached]
    return controls, missed, sorted(set(unseen_focus))


@pytest.mark.parametrize("state", list(PAGES))
async def test_every_control_is_reached_by_tab_and_shows_focus(browser, site, state):
    page = await PAGES[state](browser, site, "light", [])
    controls, missed, unseen_focus = await tab_through(page)
    assert controls, f"no controls found on {state}"
    assert not missed, f"on {state}, Tab never reaches: {missed}"
    assert not unseen_focus, f"on {state}, no visible focus on: {unseen_focus}"


async def test_the_keyboard_check_can_fail(browser, site):
    """A button that hides its focus, and a link taken out of the tab order
    by a trap before it, are reported."""
    page = await open_page(browser, site.alone.url + "/", "light")
    await page.evaluate(
        """() => {
      const plain = document.createElement('button'); plain.textContent = 'no ring'; plain.id = 'no-ring'
      plain.style.outline = 'none'
      const link = document.createElement('a'); link.href = '/trash'; link.id = 'behind-trap'; link.textContent = 'far'
      const trap = document.createElement('input'); trap.id = 'trap'
      trap.addEventListener('keydown', e => { if (e.key === 'Tab') e.preventDefault() })
      document.querySelector('main').prepend(plain, trap, link)
    }"""
    )
    _, missed, unseen_focus = await tab_through(page)
    assert any("#no-ring" in name for name in unseen_focus)
    assert any("#behind-trap" in name for name in missed)
