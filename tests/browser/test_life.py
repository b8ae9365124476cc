"""A document's life in Chromium: deleted from the documents list while open
in an editor (which says who deleted it and turns read-only), restored from
the Trash with its text, renamed from the editor (the URL and the title of
every open tab follow, the old address redirects), and deleted forever only
once its name is typed.

The pages run under their own Content-Security-Policy (no bypass), so the
waits are ``waiting.wait_for`` on ``page.evaluate``. Screenshots of the
deleted banner, the documents list after a delete and the Trash, in light,
dark and 390 px wide, go to ``screenshots/`` in the test's tmp dir."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from test_editor import create, type_at_end
from waiting import wait_for

pytestmark = [pytest.mark.browser, pytest.mark.slow]

DEADLINE = 10.0  # s
TEXT = "# Life story\n\nIt begins here."


def get_json(peer, path: str) -> tuple[int, object]:
    try:
        with urllib.request.urlopen(peer.url + path) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def trash_names(peer) -> list[str]:
    return [entry["name"] for entry in get_json(peer, "/api/trash")[1]]


async def open_page(browser, peer, path: str, errors: list[str], user: str | None = None, width: int = 1100):
    """A page in a fresh context (its own IndexedDB), under the CSP; every
    script error or CSP violation is counted in *errors*."""
    context = await browser.new_context(viewport={"width": width, "height": 720})
    page = await context.new_page()
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("console", lambda m: errors.append(m.text) if "Content Security Policy" in m.text else None)
    if user:
        await page.add_init_script(
            f"localStorage.setItem('meshpad:user', JSON.stringify({{name: '{user}', color: '#cc3300'}}))"
        )
    await page.goto(peer.url + path)
    return page


async def until(page, js: str, what: str):
    """Wait until the expression *js* is truthy in *page*; returns its value."""
    return await wait_for(lambda: page.evaluate(f"() => {js}"), timeout=DEADLINE, what=what, interval=0.05)


async def open_editor(browser, peer, name: str, errors: list[str], user: str | None = None):
    page = await open_page(browser, peer, f"/doc/{name}", errors, user)
    await until(page, "!!(window.meshpad && window.meshpad.provider.synced)", f"the editor of {name} to sync")
    return page


async def screenshots(page, directory: Path, name: str) -> None:
    """*name* in light and dark at the page's width, and in light at 390 px."""
    directory.mkdir(exist_ok=True)
    size = page.viewport_size
    for scheme in ("light", "dark"):
        await page.emulate_media(color_scheme=scheme)
        await page.screenshot(path=directory / f"{name}-{scheme}.png")
    await page.emulate_media(color_scheme="light")
    await page.set_viewport_size({"width": 390, "height": 844})
    await page.screenshot(path=directory / f"{name}-390.png")
    await page.set_viewport_size(size)


async def test_delete_while_open_restore_and_rename(browser, peer, page_errors, tmp_path):
    shots = tmp_path / "screenshots"
    create(peer, "life-story", TEXT)
    create(peer, "taken")
    ann = await open_editor(browser, peer, "life-story", page_errors, user="Ann")
    assert await ann.evaluate("() => window.meshpad.text.toString()") == TEXT

    # Bob deletes it from the documents list; his form says who he is.
    bob = await open_page(browser, peer, "/", page_errors, user="Bob")
    row_form = bob.locator("form.delete[action='/doc/life-story/delete']")
    await until(bob, "document.querySelector('form.delete input[name=by]').value === 'Bob'", "the form signed by Bob")
    await row_form.get_by_role("button", name="Delete life-story").click()
    await bob.wait_for_url(lambda url: url.startswith(f"{peer.url}/?"), timeout=DEADLINE * 1000)
    notice = bob.locator(".notice")
    assert "“life-story” was moved to the Trash." in await notice.inner_text()
    assert await notice.get_by_role("link", name="Open the Trash").get_attribute("href") == "/trash"
    assert await bob.locator("a[href='/doc/life-story']").count() == 0
    await screenshots(bob, shots, "documents-after-delete")

    # Ann's editor says who deleted it, stops, and is read-only.
    banner = ann.get_by_role("alert").filter(has_text="deleted")
    await banner.wait_for(timeout=DEADLINE * 1000)
    assert "This document was deleted by Bob." in await banner.inner_text()
    assert await banner.get_by_role("link", name="Open the Trash").get_attribute("href") == "/trash"
    assert await ann.get_attribute("#status", "data-state") == "deleted"
    assert await ann.get_attribute(".cm-content", "contenteditable") == "false"
    await screenshots(ann, shots, "editor-deleted")
    await ann.locator(".cm-content").click()
    await ann.keyboard.type("typed into a deleted document")
    await ann.keyboard.press("Control+z")
    assert await ann.evaluate("() => window.meshpad.text.toString()") == TEXT
    assert not await ann.evaluate("() => window.meshpad.provider.shouldConnect")

    trash = get_json(peer, "/api/trash")[1]
    assert [(e["name"], e["deleted_by"]) for e in trash] == [("life-story", "Bob")]
    assert get_json(peer, "/api/docs/life-story")[0] == 404

    # Bob restores it from the Trash: it opens with its text.
    await bob.goto(peer.url + "/trash")
    row = bob.locator("tr[data-name='life-story']")
    assert "Bob" in await row.inner_text()
    await screenshots(bob, shots, "trash")
    await row.get_by_role("button", name="Restore life-story").click()
    await bob.wait_for_url(f"{peer.url}/doc/life-story", timeout=DEADLINE * 1000)
    await until(bob, "!!(window.meshpad && window.meshpad.provider.synced)", "the restored document's editor")
    assert await bob.evaluate("() => window.meshpad.text.toString()") == TEXT
    assert trash_names(peer) == []
    carol = await open_editor(browser, peer, "life-story", page_errors, user="Carol")

    # Bob renames it from the editor's bar: a taken name is refused beside
    # the field, a free one is taken at once.
    await bob.get_by_role("button", name="Rename", exact=True).click()
    field = bob.get_by_label("New name")
    assert await field.input_value() == "life-story"
    await field.fill("taken")
    await bob.locator("#rename-form").get_by_role("button", name="Rename").click()
    problem = bob.locator("#rename-problem")
    await problem.wait_for(timeout=DEADLINE * 1000)
    assert "A document named “taken” already exists" in await problem.inner_text()
    assert bob.url == f"{peer.url}/doc/life-story"
    await field.fill("life-renamed")
    await field.press("Enter")
    await until(bob, "location.pathname === '/doc/life-renamed'", "Bob's URL to follow the rename")
    assert await bob.title() == "life-renamed · Meshpad"
    assert await bob.inner_text("#docname") == "life-renamed"
    assert await bob.is_hidden("#rename-form")
    assert await bob.get_attribute(".bar a[download]", "href") == "/doc/life-renamed/export"

    # Carol's tab follows the rename by itself, and keeps editing.
    await until(carol, "document.title === 'life-renamed · Meshpad'", "Carol's title to follow the rename")
    assert await carol.evaluate("() => location.pathname") == "/doc/life-renamed"
    assert await carol.inner_text("#docname") == "life-renamed"
    await type_at_end(carol, " Renamed.")
    await until(bob, "window.meshpad.text.toString().endsWith('Renamed.')", "Carol's edit in Bob's tab")

    # The old address leads to the new name.
    await carol.goto(f"{peer.url}/doc/life-story")
    assert carol.url == f"{peer.url}/doc/life-renamed"
    status, body = get_json(peer, "/api/docs/life-story")
    assert (status, body["name"]) == (404, "life-renamed")


async def test_delete_forever_needs_the_name_typed(browser, peer, page_errors, tmp_path):
    create(peer, "doomed.v2", "short-lived")
    with urllib.request.urlopen(urllib.request.Request(f"{peer.url}/api/docs/doomed.v2", method="DELETE")) as resp:
        assert resp.status == 200
    page = await open_page(browser, peer, "/trash", page_errors, user="Dee")
    row = page.locator("tr[data-name='doomed.v2']")
    await row.locator("summary").click()
    form = row.locator("form.confirm")
    assert "cannot be undone" in await form.inner_text()
    field = form.get_by_label("Type doomed.v2 to confirm")
    forever = form.get_by_role("button", name="Delete forever")

    # A near miss is refused in the page (the peer would refuse it too).
    await field.fill("doomed-v2")
    await forever.click()
    assert await field.evaluate("f => !f.validity.valid")
    assert page.url == f"{peer.url}/trash"
    assert trash_names(peer) == ["doomed.v2"]
    await screenshots(page, tmp_path / "screenshots", "trash-confirm")

    await field.fill("doomed.v2")
    await forever.click()
    await page.wait_for_url(lambda url: url.startswith(f"{peer.url}/trash?"), timeout=DEADLINE * 1000)
    assert "“doomed.v2” was deleted forever." in await page.inner_text(".notice")
    assert await page.locator("tr[data-name='doomed.v2']").count() == 0
    assert "The Trash is empty." in await page.inner_text("main")
    assert trash_names(peer) == []
    assert get_json(peer, "/api/docs/doomed.v2")[0] == 404
    assert "doomed.v2" not in [d["name"] for d in get_json(peer, "/api/docs")[1]]


async def test_delete_from_the_editor_asks_first(browser, peer, page_errors):
    create(peer, "scratchpad", "notes to self")
    page = await open_editor(browser, peer, "scratchpad", page_errors, user="Eve")
    await page.get_by_role("button", name="Delete", exact=True).click()
    question = page.get_by_role("group", name="Move “scratchpad” to the Trash?")
    await question.wait_for(timeout=DEADLINE * 1000)
    await question.get_by_role("button", name="Cancel").click()
    assert await question.is_hidden()
    assert get_json(peer, "/api/docs/scratchpad")[0] == 200

    await page.get_by_role("button", name="Delete", exact=True).click()
    await question.get_by_role("button", name="Move to the Trash").click()
    await page.wait_for_url(lambda url: url.startswith(f"{peer.url}/?"), timeout=DEADLINE * 1000)
    assert "“scratchpad” was moved to the Trash." in await page.inner_text(".notice")
    trash = get_json(peer, "/api/trash")[1]
    assert [(e["name"], e["deleted_by"]) for e in trash] == [("scratchpad", "Eve")]
