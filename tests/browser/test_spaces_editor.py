"""Spaces in Chromium, against real ``meshpad serve`` processes, under the
pages' own Content-Security-Policy.

* A reader's editor is read-only and says so: peer B joins peer A's space
  "family" with a reader's invite; in B's browser, typing changes nothing on
  B or A, Rename and Delete are not offered, and A's edits and cursor show
  live. Once A removes B, B's editor says that the copy it shows gets nobody's
  changes any more.
* The documents page of a peer with two spaces shows each row's space,
  filters by space, and creates a document in the space chosen in the form
  (checked through the API: in that space and not in the other).

Screenshots (light, dark, 390 px) of both pages go to ``screenshots/`` in the
test's tmp dir."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import pytest
from processes import Peer
from test_documents_page import no_axe_violation
from test_life import open_page, screenshots, until
from waiting import wait_for_blocking

pytestmark = [pytest.mark.browser, pytest.mark.slow]

RECIPE = "# Soup\n\nOnions, slowly."


def call(peer: Peer, method: str, path: str, body: dict | None = None) -> tuple[int, object]:
    data = json.dumps(body).encode() if body is not None else None
    headers = {"Content-Type": "application/json"}
    req = urllib.request.Request(peer.url + path, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            raw = resp.read()
            return resp.status, json.loads(raw) if raw else None
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"null")


def ok(peer: Peer, method: str, path: str, body: dict | None = None) -> object:
    status, answer = call(peer, method, path, body)
    assert 200 <= status < 300, f"{method} {path}: {status} {answer}"
    return answer


def text_on(peer: Peer, ref: str) -> str:
    answer = ok(peer, "GET", f"/api/docs/{ref}")
    assert isinstance(answer, dict)
    return str(answer["text"])


def names_in(peer: Peer, space: str) -> list[str]:
    """The names of *space*'s documents on *peer* (none while it has not
    joined the space)."""
    status, answer = call(peer, "GET", f"/api/docs?space={space}")
    if status == 404:
        return []
    assert status == 200 and isinstance(answer, list), (status, answer)
    return [d["name"] for d in answer]


def space_of(peer: Peer, name: str) -> dict:
    answer = ok(peer, "GET", "/api/spaces")
    assert isinstance(answer, list)
    return next(s for s in answer if s["name"] == name)


@pytest.fixture
def reader_pair(tmp_path):
    """Peer A, admin of its first space and of "family" (which holds
    "recipes"); peer B, of another network, in "family" as a reader. Both
    hold a "recipes" of their own in their first space too, so the family's
    is written recipes@family."""
    a = Peer(tmp_path / "a").start()
    b = Peer(tmp_path / "b", env={"MESHPAD_NETWORK_KEY": "meshpad-test-another-network"}).start()
    try:
        ok(a, "POST", "/api/spaces", {"name": "family"})
        ok(a, "POST", "/api/docs", {"name": "recipes", "space": "family", "text": RECIPE})
        ok(a, "POST", "/api/docs", {"name": "recipes", "space": "main", "text": "A's own"})
        ok(b, "POST", "/api/docs", {"name": "recipes", "text": "B's own"})
        invite = ok(a, "POST", "/api/spaces/family/invites", {"role": "reader"})
        assert isinstance(invite, dict)
        ok(b, "POST", "/api/peers", {"address": invite["invite"]})
        wait_for_blocking(lambda: "recipes" in names_in(b, "family"), 30, what="family's recipes reach B")
        wait_for_blocking(lambda: text_on(b, "recipes@family") == RECIPE, 30, what="its text reaches B")
        assert space_of(b, "family")["role"] == "reader"
        yield a, b
    finally:
        b.stop()
        a.stop()


async def test_a_readers_editor_is_read_only(browser, reader_pair, page_errors, tmp_path):
    a, b = reader_pair
    shots = tmp_path / "screenshots"
    # B finds it on its documents page, in its space, and opens it from there.
    ben = await open_page(browser, b, "/", page_errors, user="Ben")
    link = ben.locator("#results tbody tr", has=ben.locator("td.space", has_text="family")).locator("td:first-child a")
    assert await link.get_attribute("href") == "/doc/recipes@family"
    await link.click()
    await ben.wait_for_url(f"{b.url}/doc/recipes@family")
    await until(ben, "!!(window.meshpad && window.meshpad.provider.synced)", "B's editor to sync")
    await until(ben, f"window.meshpad.text.toString() === {json.dumps(RECIPE)}", "the family's text, not B's own")

    # It says so, and offers nothing that would change the document.
    notice = ben.locator("#read-only")
    assert await notice.is_visible()
    assert (await notice.text_content() or "").strip() == "Read only: you are a reader in family."
    assert (await ben.text_content("#space-name") or "").strip().endswith("family")
    for control in ("#rename-toggle", "#delete-toggle", "#name-form", "#saved"):
        assert await ben.locator(control).is_hidden(), f"{control} is offered to a reader"
    assert await ben.get_attribute(".cm-content", "contenteditable") == "false"
    # This browser's copy is kept apart from B's own "recipes" (the first space's).
    family_id = space_of(b, "family")["id"]
    store = await until(ben, "window.meshpad.local && window.meshpad.local.name", "B's copy in IndexedDB")
    assert store == f"meshpad:127.0.0.1:{b.port}:{family_id}:recipes"

    # Ben types, pastes, deletes: nothing changes.
    await ben.click(".cm-content")
    await ben.keyboard.press("Control+End")
    await ben.keyboard.type("Ben was here. ")
    await ben.keyboard.press("Backspace")
    await ben.keyboard.press("Control+a")
    await ben.keyboard.press("Delete")
    assert await ben.evaluate("() => window.meshpad.text.toString()") == RECIPE

    # Ada edits on A: the edit and her cursor show live in Ben's page, and
    # Ben's cursor (a reader's awareness) shows in hers.
    ada = await open_page(browser, a, "/doc/recipes@family", page_errors, user="Ada")
    await until(ada, "!!(window.meshpad && window.meshpad.provider.synced)", "A's editor to sync")
    assert await ada.locator("#read-only").count() == 0
    await ada.click(".cm-content")
    await ada.keyboard.press("Control+End")
    await ada.keyboard.type(" And salt.")
    edited = RECIPE + " And salt."
    await until(ben, f"window.meshpad.text.toString() === {json.dumps(edited)}", "Ada's edit in Ben's page")
    await ben.wait_for_selector(".cm-ySelectionInfo:has-text('Ada')", state="attached", timeout=10_000)
    await until(ada, "document.getElementById('people').textContent.includes('Ben')", "Ben among Ada's people")
    # Ben's keys reached no replica: both peers hold Ada's text, exactly.
    await until(ada, "window.meshpad.isSaved()", "Ada's edit saved on A")
    wait_for_blocking(lambda: text_on(b, "recipes@family") == edited, 20, what="Ada's edit on B")
    assert text_on(a, "recipes@family") == edited
    assert text_on(a, "recipes@main") == "A's own" and text_on(b, "recipes") == "B's own"
    assert space_of(b, "family")["refused"].get("edit", 0) == 0  # (Ben's page did not even send one)

    await no_axe_violation(ben, "a reader's editor")
    await screenshots(ben, shots, "reader-editor")

    # A removes B: B's editor then says what it shows.
    ok(a, "DELETE", f"/api/spaces/family/members/{_me(b)}")
    wait_for_blocking(lambda: space_of(b, "family")["status"] == "removed", 30, what="B learns it was removed")
    await ben.reload()
    removed = ben.locator("#read-only[data-why=removed]")
    await removed.wait_for(timeout=10_000)
    assert (await removed.text_content() or "").strip() == (
        "You were removed from family: this is the copy you had; nobody’s changes reach it any more."
    )
    await until(ben, f"window.meshpad.text.toString() === {json.dumps(edited)}", "B's copy in the page")
    await screenshots(ben, shots, "removed-editor")


def _me(peer: Peer) -> str:
    answer = ok(peer, "GET", "/api/spaces/family")
    assert isinstance(answer, dict)
    return str(answer["you"])


async def test_create_a_document_in_a_chosen_space(browser, peer, page_errors, tmp_path):
    ok(peer, "POST", "/api/spaces", {"name": "family"})
    for name, space in (("groceries", "family"), ("recipes", "family"), ("recipes", "main"), ("plans", "main")):
        ok(peer, "POST", "/api/docs", {"name": name, "space": space, "text": f"# {name} of {space}\n"})
    page = await open_page(browser, peer, "/", page_errors, user="Ann")

    # Every row says its space; the name both spaces hold is written with its space.
    rows = await page.eval_on_selector_all(
        "#results tbody tr",
        "rows => rows.map(r => [r.querySelector('td a').textContent, r.querySelector('td.space').textContent.trim(),"
        " r.querySelector('td a').getAttribute('href')])",
    )
    assert sorted(rows) == sorted(
        [
            ["groceries", "family", "/doc/groceries"],
            ["plans", "main", "/doc/plans"],
            ["recipes", "family", "/doc/recipes@family"],
            ["recipes", "main", "/doc/recipes"],
        ]
    )
    assert await page.locator("#results thead th", has_text="Space").count() == 1
    await no_axe_violation(page, "the documents page of two spaces")
    await screenshots(page, tmp_path / "screenshots", "documents-two-spaces")

    # The filter shows one space's documents, and says so in the address.
    await page.select_option("#list-space", "family")
    await until(page, "document.getElementById('results').dataset.space === 'family'", "the family's list")
    assert page.url.endswith("/?space=family")
    names = await page.eval_on_selector_all("#results tbody td:first-child a", "links => links.map(a => a.textContent)")
    assert names == ["groceries", "recipes"]
    assert "2 documents in family" in (await page.text_content("#list-summary") or "")
    await screenshots(page, tmp_path / "screenshots", "documents-family")

    # A new document goes in the space chosen in the form (the one shown, by default).
    create = page.locator("#create")
    assert await create.locator("select[name=space]").input_value() == "family"
    await create.locator("select[name=space]").select_option("main")
    await create.locator("select[name=space]").select_option("family")
    await create.locator("input[name=name]").fill("holidays")
    await create.get_by_role("button", name="Create").click()
    await page.wait_for_url(f"{peer.url}/doc/holidays")
    await until(page, "!!(window.meshpad && window.meshpad.provider.synced)", "the new document's editor")
    assert (await page.text_content("#space-name") or "").strip().endswith("family")
    assert "holidays" in names_in(peer, "family")
    assert "holidays" not in names_in(peer, "main")
    answer = ok(peer, "GET", "/api/docs/holidays")
    assert isinstance(answer, dict) and answer["space"] == "family"

    # Renamed from its editor to a name main holds too, it stays in its
    # space, and the page names it with its space from then on.
    asked: list[str] = []
    page.on("request", lambda r: asked.append(r.url.removeprefix(peer.url)))
    await page.click("#rename-toggle")
    await page.fill("#rename-input", "plans")
    await page.locator("#rename-form").get_by_role("button", name="Rename").click()
    await until(page, "location.pathname === '/doc/plans@family'", "the address to follow the rename")
    assert "/api/docs/holidays/rename" in asked  # (the only "holidays")
    assert await page.get_attribute("[data-doc-path='/export']", "href") == "/doc/plans@family/export"
    assert names_in(peer, "family") == ["groceries", "plans", "recipes"]
    assert text_on(peer, "plans") == "# plans of main\n"  # main's, untouched
    # The history panel reads the family's through its ref.
    await page.click("#history-toggle")
    shown = "!!document.querySelector('#history-list li') || document.getElementById('history-status').textContent"
    await until(page, shown, "the history of plans@family")
    assert "/api/docs/plans@family/history" in asked
    assert "cannot be read" not in (await page.text_content("#history-status") or "")

    # And in main when main is chosen.
    await page.goto(peer.url + "/")
    await page.locator("#create select[name=space]").select_option("main")
    await page.locator("#create input[name=name]").fill("budget")
    await page.locator("#create").get_by_role("button", name="Create").click()
    await page.wait_for_url(f"{peer.url}/doc/budget")
    assert "budget" in names_in(peer, "main") and "budget" not in names_in(peer, "family")
