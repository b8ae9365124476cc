"""History in Chromium: the panel steps to an older version with its
changes highlighted, restores it (the other tab shows the restored text),
and the author colouring shows two people's text in their two colours."""

from __future__ import annotations

import pytest
from test_editor import DEADLINE, create, server_text, type_at_end, wait_text

pytestmark = [pytest.mark.browser, pytest.mark.slow]


async def open_as(browser, peer, name, errors, who: str, color: str):
    context = await browser.new_context(bypass_csp=True)
    page = await context.new_page()
    page.on("pageerror", lambda e: errors.append(str(e)))
    await page.add_init_script(
        f"localStorage.setItem('meshpad:user', JSON.stringify({{name: '{who}', color: '{color}'}}))"
    )
    await page.goto(f"{peer.url}/doc/{name}")
    await page.wait_for_function("window.meshpad && window.meshpad.provider.synced", timeout=DEADLINE)
    return page


async def name_version(page, label: str) -> None:
    if await page.get_attribute("#history-toggle", "aria-expanded") != "true":
        await page.click("#history-toggle")
    count = await page.locator("#history-list .version-button").count()
    await page.fill("#name-label", label)
    await page.click("#name-form button[type=submit]")
    await page.wait_for_function(
        f"document.querySelectorAll('#history-list .version-button').length > {count}", timeout=DEADLINE
    )


async def test_step_back_see_the_diff_and_restore(browser, peer, page_errors):
    create(peer, "story")
    ann = await open_as(browser, peer, "story", page_errors, "Ann", "#cc3300")
    bob = await open_as(browser, peer, "story", page_errors, "Bob", "#0055cc")
    await type_at_end(ann, "Once upon a time, a good opening.")
    await ann.wait_for_function("window.meshpad.isSaved()", timeout=DEADLINE)
    await name_version(ann, "good opening")
    # Bob replaces it all with something worse.
    await wait_text(bob, "t === 'Once upon a time, a good opening.'")
    await bob.click(".cm-content")
    await bob.keyboard.press("Control+a")
    await bob.keyboard.type("A bad opening.")
    await bob.wait_for_function("window.meshpad.isSaved()", timeout=DEADLINE)
    await wait_text(ann, "t === 'A bad opening.'")
    await name_version(ann, "bad")
    # Step back with the slider to the good version: read-only, with the diff.
    slider = ann.locator("#history-slider")
    steps = int(await slider.get_attribute("max"))
    assert steps >= 2
    await slider.focus()
    good_button = ann.locator("#history-list .version-button", has_text="good opening")
    await good_button.click()
    await ann.wait_for_selector("#version-view:not([hidden])", timeout=DEADLINE)
    assert await ann.is_hidden("#editor")
    assert await ann.inner_text("#version-text") == "Once upon a time, a good opening."
    assert "good opening" in await ann.inner_text("#version-title")
    # The version after it shows what Bob did: Ann's text struck out, Bob's in his colour.
    await ann.keyboard.press("ArrowRight")  # the slider: one step newer
    await ann.locator("#history-slider").press("ArrowRight")
    await ann.wait_for_function(
        "document.querySelector('#version-text ins') && document.querySelector('#version-text del')", timeout=DEADLINE
    )
    inserted = await ann.eval_on_selector(
        "#version-text ins", "e => [e.textContent, e.style.getPropertyValue('--who'), e.title]"
    )
    deleted = await ann.eval_on_selector("#version-text del", "e => e.textContent")
    assert inserted[0].strip() and "Bob" in inserted[2] and inserted[1] == "#0055cc"
    assert "good opening" in deleted
    # Restore the good version; Bob's tab shows it.
    await good_button.click()
    await ann.wait_for_function("document.getElementById('version-text').textContent.includes('good opening')")
    await ann.click("#version-restore")
    await ann.wait_for_selector("#version-view", state="hidden", timeout=DEADLINE)
    await wait_text(bob, "t === 'Once upon a time, a good opening.'")
    await wait_text(ann, "t === 'Once upon a time, a good opening.'")
    assert server_text(peer, "story") == "Once upon a time, a good opening."
    await ann.wait_for_function(
        "[...document.querySelectorAll('#history-list .version-button')].some(b => b.textContent.includes('restored'))",
        timeout=DEADLINE,
    )
    # Back to live: the editor is editable again.
    await type_at_end(ann, " The end.")
    await wait_text(bob, "t.endsWith(' The end.')")


async def test_author_colours_show_who_wrote_what(browser, peer, page_errors):
    create(peer, "two")
    ann = await open_as(browser, peer, "two", page_errors, "Ann", "#cc3300")
    bob = await open_as(browser, peer, "two", page_errors, "Bob", "#0055cc")
    await type_at_end(ann, "Ann wrote this. ")
    await wait_text(bob, "t === 'Ann wrote this. '")
    await type_at_end(bob, "Bob wrote that.")
    await wait_text(ann, "t === 'Ann wrote this. Bob wrote that.'")
    await ann.click("#authors-toggle")
    assert await ann.get_attribute("#authors-toggle", "aria-pressed") == "true"
    await ann.wait_for_function(
        "[...document.querySelectorAll('.by-author')].map(e => e.dataset.author).join() === 'Ann,Bob'", timeout=DEADLINE
    )
    marks = await ann.eval_on_selector_all(
        ".by-author", "els => els.map(e => [e.textContent, e.style.getPropertyValue('--who'), e.title])"
    )
    assert marks[0][0] == "Ann wrote this. " and marks[0][1] == "#cc3300" and marks[0][2].startswith("Ann")
    assert marks[1][0] == "Bob wrote that." and marks[1][1] == "#0055cc" and marks[1][2].startswith("Bob")
    colours = await ann.eval_on_selector_all(".by-author", "els => els.map(e => getComputedStyle(e).borderBottomColor)")
    assert colours[0] != colours[1]
    await ann.click("#authors-toggle")
    await ann.wait_for_function("document.querySelectorAll('.by-author').length === 0", timeout=DEADLINE)
