"""The Peers page in Chromium: it refreshes its table without wiping what is
being typed, shows this peer's invite with a copy button, says when nobody
else can reach this peer, and its form takes an invite."""

from __future__ import annotations

import pytest
from processes import Peer
from test_editor import DEADLINE
from waiting import wait_for

pytestmark = [pytest.mark.browser, pytest.mark.slow]


async def open_peers(browser, peer: Peer, errors: list[str]):
    context = await browser.new_context()
    page = await context.new_page()
    page.on("pageerror", lambda e: errors.append(str(e)))
    await page.goto(peer.url + "/peers")
    await page.evaluate("window.notReloaded = true")
    return page


async def until(page, expression: str, timeout: float = DEADLINE / 1000) -> None:
    """Poll *expression* in the page (under its own CSP, which forbids the
    eval that ``wait_for_function`` needs) until it is true."""
    await wait_for(lambda: page.evaluate(f"() => Boolean({expression})"), timeout, what=expression, interval=0.05)


async def refreshed(page, times: int) -> None:
    await until(page, f"Number(document.getElementById('peer-table').dataset.refreshes || 0) >= {times}")


async def test_typing_survives_the_refresh_and_the_table_updates(browser, tmp_path, page_errors):
    a = Peer(tmp_path / "a").start()
    try:
        page = await open_peers(browser, a, page_errors)
        assert "No peers yet" in await page.inner_text("#peer-table")
        await page.click("input[name=address]")
        await page.keyboard.type("192.0.2.7:74")
        b = Peer(tmp_path / "b", args=["--join", a.address]).start()
        try:
            # The table shows b without the page being loaded again.
            await until(page, "document.querySelector('#peer-table tr[data-state=connected]') !== null")
            await refreshed(page, 3)
            assert await page.evaluate("window.notReloaded === true")
            assert await page.input_value("input[name=address]") == "192.0.2.7:74"
            assert await page.evaluate("document.activeElement.name") == "address"
        finally:
            b.stop()
    finally:
        a.stop()


async def test_the_page_shows_and_copies_the_invite(browser, peer, page_errors):
    context = await browser.new_context()
    await context.grant_permissions(["clipboard-read", "clipboard-write"], origin=peer.url)
    page = await context.new_page()
    page.on("pageerror", lambda e: page_errors.append(str(e)))
    await page.goto(peer.url + "/peers")
    expected = peer.get("/api/invite")["invite"]
    assert expected.startswith(f"meshpad://{peer.address}#")
    assert await page.input_value("#invite") == expected
    # This peer listens on loopback: the page says nobody else can reach it.
    warning = await page.inner_text("#reach-warning")
    assert "nobody else can join" in warning and "--host 0.0.0.0" in warning
    await page.click("#copy-invite")
    await until(page, "document.getElementById('copy-invite').textContent === 'Copied'")
    assert await page.evaluate("navigator.clipboard.readText()") == expected


async def test_the_form_takes_an_invite_and_another_networks_as_a_space(browser, tmp_path, page_errors):
    a = Peer(tmp_path / "a").start()
    b = Peer(tmp_path / "b").start()
    other = Peer(tmp_path / "other", env={"MESHPAD_NETWORK_KEY": "a network of its own"}).start()
    try:
        page = await open_peers(browser, b, page_errors)
        # An invite of another network adds that network to b as a space of its own.
        await page.fill("input[name=address]", "meshpad://nonsense")
        await page.click("#connect button[type=submit]")
        error = await page.inner_text("#connect-error")
        assert "invite" in error
        # What was typed is still there to correct.
        assert (await page.input_value("input[name=address]")).startswith("meshpad://")
        await page.fill("input[name=address]", other.get("/api/invite")["invite"])
        await page.click("#connect button[type=submit]")
        await page.wait_for_url(b.url + "/peers", timeout=DEADLINE)
        assert len(b.get("/api/spaces")) == 2
        await page.fill("input[name=address]", a.get("/api/invite")["invite"])
        await page.click("#connect button[type=submit]")
        await page.wait_for_url(b.url + "/peers", timeout=DEADLINE)
        await until(
            page,
            f"[...document.querySelectorAll('#peer-table tr[data-state=connected] td')]"
            f".some(td => td.textContent.includes('{a.address}'))",
        )
    finally:
        other.stop()
        b.stop()
        a.stop()
