"""The spaces pages in Chromium, with real peer processes: a space made with
the form of /spaces, an invite made with its page's Invite button that
another peer joins with, and a member's role changed with the members
table's select, which reaches both peers."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path

import pytest
from processes import Peer
from test_editor import DEADLINE
from test_peers_page import until
from waiting import wait_for

pytestmark = [pytest.mark.browser, pytest.mark.slow]

JOIN_DEADLINE = 20.0  # s: a join dials, handshakes and exchanges the roster


def call(peer: Peer, method: str, path: str, body: dict | None = None) -> dict:
    req = urllib.request.Request(
        peer.url + path,
        method=method,
        data=json.dumps(body or {}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=10) as resp:
        return json.loads(resp.read())


async def open_page(browser, url: str, errors: list[str], scheme: str = "light", width: int = 1100):
    context = await browser.new_context(color_scheme=scheme, viewport={"width": width, "height": 800})
    await context.grant_permissions(["clipboard-read", "clipboard-write"], origin=url.split("/spaces")[0])
    page = await context.new_page()
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("console", lambda m: errors.append(m.text) if "Content Security Policy" in m.text else None)
    await page.goto(url)
    return page


async def screenshots(browser, url: str, folder: Path, name: str, errors: list[str]) -> None:
    """*url* in light, dark and 390 px wide, whole pages, into *folder*."""
    folder.mkdir(parents=True, exist_ok=True)
    for suffix, scheme, width in (("light", "light", 1100), ("dark", "dark", 1100), ("390", "light", 390)):
        page = await open_page(browser, url, errors, scheme, width)
        # Nothing is wider than the window: a 390 px screen scrolls down only.
        assert await page.evaluate("document.documentElement.scrollWidth <= window.innerWidth"), f"{name} {suffix}"
        await page.screenshot(path=str(folder / f"{name}-{suffix}.png"), full_page=True)
        await page.context.close()


def space(peer: Peer, name: str) -> dict | None:
    return next((s for s in peer.get("/api/spaces") if s["name"] == name), None)


def member(peer: Peer, name: str, peer_id: str) -> dict | None:
    found = space(peer, name)
    if found is None or found["role"] is None:
        return None
    return next((m for m in peer.get(f"/api/spaces/{name}")["members"] if m["peer"] == peer_id), None)


async def joined(a: Peer, b: Peer, invite: str, role: str) -> str:
    """B joins with *invite*; until both peers list B as a *role* of "team".
    Returns B's peer id."""
    assert b.post("/api/peers", {"address": invite}) in (200, 201, 202)
    found = await wait_for(lambda: (space(b, "team") or {}).get("role") == role, JOIN_DEADLINE,
                           what=lambda: f"B a {role} of team: {b.get('/api/spaces')}")  # fmt: skip
    assert found
    b_id = b.get("/api/spaces/team")["you"]
    await wait_for(lambda: (member(a, "team", b_id) or {}).get("role") == role, JOIN_DEADLINE,
                   what=lambda: f"A lists B as a {role}: {a.get('/api/spaces/team')['members']}")  # fmt: skip
    return b_id


@pytest.fixture
def alice_and_bob(tmp_path):
    a = Peer(tmp_path / "a", args=["--name", "alice"]).start()
    b = Peer(tmp_path / "b", args=["--name", "bob"]).start()
    yield a, b
    b.stop()
    a.stop()


async def test_invite_to_a_space(browser, alice_and_bob, tmp_path, page_errors):
    a, b = alice_and_bob
    page = await open_page(browser, a.url + "/spaces", page_errors)
    assert await page.locator("table.spaces tr[data-space='team']").count() == 0
    await page.fill("#create-space input[name=name]", "team")
    await page.click("#create-space button[type=submit]")
    await page.wait_for_url(a.url + "/spaces/team", timeout=DEADLINE)
    assert (space(a, "team") or {}).get("role") == "admin"
    assert await page.locator("table.members tbody tr").count() == 1
    assert await page.locator("#invite-result").is_hidden()

    await page.select_option("#invite-as", "reader")
    await page.click("#make-invite")
    await until(page, "!document.getElementById('invite-result').hidden")
    invite = await page.input_value("#invite")
    assert invite.startswith(f"meshpad://{a.address}/{space(a, 'team')['id']}#")
    assert await page.inner_text("#invite-role") == "reader"
    assert "once, for 7 days" in await page.inner_text("#invite-card")
    await page.click("#copy-invite")
    await until(page, "document.getElementById('copy-invite').textContent === 'Copied'")
    assert await page.evaluate("navigator.clipboard.readText()") == invite
    # The page did not load again: the invite came through the API.
    assert page.url == a.url + "/spaces/team"

    b_id = await joined(a, b, invite, "reader")

    async def b_listed() -> bool:
        await page.reload()
        return await page.locator(f"table.members tr[data-peer='{b_id}']").count() == 1

    await wait_for(b_listed, DEADLINE, what="A's space page to list B", interval=0.2)
    row = page.locator(f"table.members tr[data-peer='{b_id}']")
    assert "bob" in await row.inner_text()
    assert await row.locator("select[name=role]").input_value() == "reader"
    assert await row.locator("code").get_attribute("title") == b_id
    me = page.locator("table.members tr[data-me]")
    assert "alice" in await me.inner_text() and "you" in await me.inner_text()
    # The list on B shows the one space it shares (with the test network's own).
    b_page = await open_page(browser, b.url + "/spaces", page_errors)
    team = b_page.locator("table.spaces tr[data-space='team']")
    assert "reader" in await team.inner_text()
    assert await team.locator("a[href='/spaces/team']").count() == 1

    shots = tmp_path / "screenshots"
    await screenshots(browser, a.url + "/spaces", shots, "spaces", page_errors)
    await screenshots(browser, a.url + "/spaces/team", shots, "space-two-members", page_errors)
    # With an invite shown (the page's form answers without script too).
    for suffix, scheme, width in (("light", "light", 1100), ("390", "light", 390)):
        form_page = await open_page(browser, a.url + "/spaces/team", page_errors, scheme, width)
        await form_page.click("#make-invite")
        await until(form_page, "!document.getElementById('invite-result').hidden")
        await form_page.screenshot(path=str(shots / f"space-invite-{suffix}.png"), full_page=True)
        await form_page.context.close()


async def test_the_members_page_changes_a_role(browser, alice_and_bob, page_errors):
    a, b = alice_and_bob
    call(a, "POST", "/api/spaces", {"name": "team"})
    invite = call(a, "POST", "/api/spaces/team/invites", {"role": "writer"})["invite"]
    b_id = await joined(a, b, invite, "writer")
    assert (member(b, "team", b_id) or {}).get("role") == "writer"

    page = await open_page(browser, a.url + "/spaces/team", page_errors)
    select = page.locator(f"table.members tr[data-peer='{b_id}'] select[name=role]")
    assert await select.input_value() == "writer"
    # With script the select acts at once: the fallback button is hidden.
    assert await page.locator(f"table.members tr[data-peer='{b_id}'] button.no-script").is_hidden()
    await select.select_option("reader")
    await until(page, "document.getElementById('space-status').textContent.includes('is now a reader')")
    assert await page.locator("#space-problem").is_hidden()

    await wait_for(lambda: (member(a, "team", b_id) or {}).get("role") == "reader", DEADLINE, what="A: B a reader")
    await wait_for(lambda: (member(b, "team", b_id) or {}).get("role") == "reader", JOIN_DEADLINE,
                   what=lambda: f"B: B a reader: {b.get('/api/spaces/team')}")  # fmt: skip
    assert (space(b, "team") or {}).get("role") == "reader"
    await page.reload()
    assert await select.input_value() == "reader"


async def test_removing_a_member_says_what_it_does(browser, alice_and_bob, tmp_path, page_errors):
    a, b = alice_and_bob
    call(a, "POST", "/api/spaces", {"name": "team"})
    invite = call(a, "POST", "/api/spaces/team/invites", {"role": "writer"})["invite"]
    b_id = await joined(a, b, invite, "writer")
    epoch = space(a, "team")["epoch"]

    page = await open_page(browser, a.url + "/spaces/team", page_errors)
    row = page.locator(f"table.members tr[data-peer='{b_id}']")
    await row.locator("details.remove summary").click()
    question = await row.locator("form.confirm").inner_text()
    assert "The space gets a new key; bob keeps the copies it has, and receives no new change" in question
    # Done, the page loads again and shows the space as it is now.
    async with page.expect_navigation(timeout=DEADLINE):
        await row.locator("form.confirm button.danger").click()
    assert await page.locator(f"table.members tr[data-peer='{b_id}']").count() == 0
    assert await page.locator("table.members tbody tr").count() == 1
    assert space(a, "team")["epoch"] == epoch + 1

    # B's page of the space says plainly what it keeps.
    await wait_for(lambda: (space(b, "team") or {}).get("status") == "removed", JOIN_DEADLINE,
                   what=lambda: f"B told it was removed: {b.get('/api/spaces')}")  # fmt: skip
    b_page = await open_page(browser, b.url + "/spaces/team", page_errors)
    note = await b_page.inner_text("#removed-note")
    assert "You were removed from this space." in note
    assert "You keep the documents you had; no new change reaches you." in note
    assert await b_page.locator("#invite-card, select[name=role], details.remove").count() == 0
    await screenshots(browser, b.url + "/spaces/team", tmp_path / "screenshots", "space-removed", page_errors)
    # The space of before spaces, open to the network key's holders.
    open_page_ = await open_page(browser, a.url + "/spaces/main", page_errors)
    assert "Open to everyone with this network's key" in await open_page_.inner_text("#open-note")
    await screenshots(browser, a.url + "/spaces/main", tmp_path / "screenshots", "space-open", page_errors)


async def test_the_forms_work_without_script_and_say_what_went_wrong(browser, peer, page_errors):
    context = await browser.new_context(java_script_enabled=False)
    page = await context.new_page()
    await page.goto(peer.url + "/spaces")
    await page.fill("#create-space input[name=name]", "team")
    await page.click("#create-space button[type=submit]")
    await page.wait_for_url(peer.url + "/spaces/team", timeout=DEADLINE)
    await page.goto(peer.url + "/spaces")
    await page.fill("#create-space input[name=name]", "team")
    await page.click("#create-space button[type=submit]")
    assert "exists already" in await page.inner_text("#create-space-problem")
    assert await page.input_value("#create-space input[name=name]") == "team"
    assert [s["name"] for s in peer.get("/api/spaces")].count("team") == 1

    await page.goto(peer.url + "/spaces/team")
    await page.select_option("#invite-as", "reader")
    await page.click("#make-invite")
    assert await page.locator("#invite-result").is_visible()
    assert (await page.input_value("#invite")).startswith(f"meshpad://{peer.address}/{space(peer, 'team')['id']}#")
    assert await page.inner_text("#invite-role") == "reader"

    await page.click("#rename summary")
    await page.fill("#rename input[name=name]", "crew")
    await page.click("#rename button[type=submit]")
    await page.wait_for_url(peer.url + "/spaces/crew", timeout=DEADLINE)
    assert space(peer, "crew") is not None and space(peer, "team") is None
    # A space this peer is not in does not exist.
    missing = await page.goto(peer.url + "/spaces/team")
    assert missing is not None and missing.status == 404
    await context.close()

    # With script, a rename goes through the API and opens the new address.
    page = await open_page(browser, peer.url + "/spaces/crew", page_errors)
    await page.click("#rename summary")
    await page.fill("#rename input[name=name]", "crew.2")
    await page.click("#rename button[type=submit]")
    await page.wait_for_url(peer.url + "/spaces/crew.2", timeout=DEADLINE)
    assert space(peer, "crew.2") is not None
