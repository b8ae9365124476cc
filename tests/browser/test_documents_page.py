"""The documents page in Chromium, under its CSP: a search typed in the box
runs as it is typed and swaps the list in without reloading the page (the
focus stays in the box, the address follows); the sort controls and the
sort headers sort; the page links page, from the keyboard; times read "3
minutes ago" with the exact time in their title, and stay fresh. Without
script the same form and links work as plain pages. Screenshots in light,
dark and 390 px wide go to ``screenshots/`` in the test's tmp dir."""

from __future__ import annotations

import json
import re
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from test_a11y import axe_violations, describe
from test_editor import create
from test_life import open_page, screenshots, until

pytestmark = [pytest.mark.browser, pytest.mark.slow]

COUNT = 120  # three pages of 50
FRUIT = {7: "kumquat", 42: "kumquat and fig", 99: "a kumquat tree"}


def text_of(i: int) -> str:
    return f"# Note {i}\n\n" + "Some words. " * (i % 13) + FRUIT.get(i, "")


@pytest.fixture
def filled(peer):
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(lambda i: create(peer, f"note-{i:03d}", text_of(i)), range(COUNT)))
    return peer


ROWS = "[...document.querySelectorAll('#results tbody td:first-child a')].map(a => a.textContent)"


async def rows(page) -> list[str]:
    return await page.evaluate(f"() => {ROWS}")


async def no_axe_violation(page, what: str) -> None:
    """axe-core finds no serious or critical violation, in light or dark."""
    for scheme in ("light", "dark"):
        await page.emulate_media(color_scheme=scheme)
        violations = await axe_violations(page)
        assert not violations, f"axe on {what} ({scheme}):\n{describe(violations)}"
    await page.emulate_media(color_scheme="light")


async def summary(page) -> str:
    return (await page.text_content("#list-summary") or "").strip()


async def test_search_sort_and_pages(browser, filled, page_errors, tmp_path):
    peer = filled
    page = await open_page(browser, peer, "/", page_errors)
    assert await rows(page) == [f"note-{i:03d}" for i in range(50)]
    assert (await summary(page)).startswith("1–50 of 120 documents")
    await page.evaluate("() => { window.notReloaded = true }")

    # Typed in the search box: the list follows as it is typed; the focus stays.
    await page.focus("#list-q")
    await page.keyboard.type("kumq")
    expected = [f"note-{i:03d}" for i in sorted(FRUIT)]
    wanted = json.dumps(json.dumps(expected, separators=(",", ":")))
    await until(page, f"JSON.stringify({ROWS}) === {wanted}", "the search results")
    assert await page.evaluate("() => document.activeElement.id") == "list-q"
    assert await page.evaluate("() => window.notReloaded === true")
    assert page.url.endswith("/?q=kumq")
    assert await until(page, "document.getElementById('list-status').textContent.includes('3 documents')", "the status")
    await screenshots(page, tmp_path / "screenshots", "documents-search")
    await no_axe_violation(page, "the search results")

    # Sorted by size from the keyboard: the largest first, then ascending.
    await page.focus("#list-sort")
    await page.keyboard.press("ArrowDown")  # Name -> Size
    await until(page, "document.getElementById('results').dataset.sort === 'size'", "the sort by size")
    sizes = {i: len(text_of(i)) for i in FRUIT}
    assert await rows(page) == [f"note-{i:03d}" for i in sorted(FRUIT, key=lambda i: -sizes[i])]
    await page.focus("#list-order")
    await page.keyboard.press("ArrowUp")  # Descending -> Ascending
    await until(page, "document.getElementById('results').dataset.order === 'asc'", "ascending")
    assert await rows(page) == [f"note-{i:03d}" for i in sorted(FRUIT, key=lambda i: sizes[i])]
    assert "sort=size" in page.url and "order=asc" in page.url

    # Cleared: everything again; a header sorts by name, Z to A.
    await page.fill("#list-q", "")
    await until(page, "document.querySelectorAll('#results tbody tr').length === 50", "the whole list")
    await page.focus("[data-list-link=sort-name]")
    await page.keyboard.press("Enter")
    await until(page, "document.getElementById('results').dataset.sort === 'name'", "the sort by name")
    assert (await rows(page))[0] == "note-000" and await page.get_attribute("th[aria-sort]", "aria-sort") == "ascending"
    assert await page.evaluate("() => document.activeElement.dataset.listLink") == "sort-name"
    await page.keyboard.press("Enter")  # the same header again: the other way round
    await until(page, "document.getElementById('results').dataset.order === 'desc'", "the sort by name, Z to A")
    assert (await rows(page))[0] == "note-119"
    assert await page.get_attribute("th[aria-sort]", "aria-sort") == "descending"
    assert await page.evaluate("() => document.activeElement.dataset.listLink") == "sort-name"
    assert await page.input_value("#list-sort") == "name" and await page.input_value("#list-order") == "desc"

    # Paged from the keyboard: the focus lands on the same link of the new page.
    await page.focus("[data-list-link=next]")
    await page.keyboard.press("Enter")
    await until(page, "document.getElementById('list-summary').textContent.includes('51–100')", "page 2")
    assert (await rows(page))[0] == "note-069"
    assert await page.evaluate("() => document.activeElement.dataset.listLink") == "next"
    await page.keyboard.press("Enter")
    await until(page, "document.getElementById('list-summary').textContent.includes('101–120')", "page 3")
    assert (await rows(page))[-1] == "note-000"
    assert await page.evaluate("() => document.activeElement.id") == "list-summary"  # no next link on the last page
    assert await page.evaluate("() => window.notReloaded === true")
    await page.locator(".pager").scroll_into_view_if_needed()
    await screenshots(page, tmp_path / "screenshots", "documents-last-page")
    await no_axe_violation(page, "the last page")
    await page.go_back()  # the address history holds the pages
    await until(page, "document.getElementById('list-summary').textContent.includes('51–100')", "back to page 2")


async def test_relative_times_with_the_exact_time(browser, filled, page_errors, tmp_path):
    page = await open_page(browser, filled, "/", page_errors)
    time_el = "#results tbody tr:first-child time"
    text = (await page.text_content(time_el) or "").strip()
    # Made a moment ago; as Intl says it in the page's language.
    assert text in await page.evaluate(
        "() => { const f = new Intl.RelativeTimeFormat('en', {numeric: 'auto'});"
        " return [f.format(0, 'second'), f.format(-1, 'minute')] }"
    )
    title = await page.get_attribute(time_el, "title") or ""
    assert re.search(r"\b20\d\d\b", title) and re.search(r"\d?\d:\d\d:\d\d", title), title
    assert title == await page.evaluate(
        f"() => new Intl.DateTimeFormat('en', {{dateStyle: 'full', timeStyle: 'long'}})"
        f".format(Date.parse(document.querySelector('{time_el}').dateTime))"
    )
    stamp = await page.get_attribute(time_el, "datetime") or ""
    assert abs(time.time() - time.mktime(time.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ")) + time.timezone) < 120
    # Three minutes later it says so, without a reload.
    await page.context.close()
    context = await browser.new_context(viewport={"width": 1100, "height": 720})
    page = await context.new_page()
    page.on("pageerror", lambda e: page_errors.append(str(e)))
    await page.clock.install()
    await page.goto(filled.url + "/")
    await page.clock.fast_forward("03:05")
    await until(page, f"document.querySelector('{time_el}').textContent === '3 minutes ago'", "3 minutes ago")
    await context.close()


async def test_without_script(browser, filled, tmp_path):
    context = await browser.new_context(java_script_enabled=False, viewport={"width": 1100, "height": 720})
    page = await context.new_page()
    await page.goto(filled.url + "/")
    await page.fill("#list-q", "kumquat")
    await page.press("#list-q", "Enter")  # the GET form
    await page.wait_for_url(re.compile(r"q=kumquat"))
    assert await rows(page) == [f"note-{i:03d}" for i in sorted(FRUIT)]
    assert (await page.text_content("#results tbody tr:first-child time") or "").strip() in ("now", "1 minute ago")
    await page.goto(filled.url + "/?sort=size")
    await page.click("[data-list-link=next]")
    await page.wait_for_url(re.compile(r"offset=50"))
    assert "51–100 of 120" in await summary(page)
    await context.close()
