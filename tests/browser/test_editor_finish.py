"""The editor's finish in Chromium, under the pages' own CSP: list
continuation that does not double a typed marker, the formatting shortcuts,
find and replace, sized headings, the theme switch on every page (auto,
light, dark; remembered), and remote cursors' names readable in both themes.
Screenshots in light, dark and 390 px wide go to ``screenshots/`` in the
test's tmp dir."""

from __future__ import annotations

import pytest
from test_editor import create, server_text
from test_life import open_editor, open_page, screenshots, until
from waiting import wait_for

pytestmark = [pytest.mark.browser, pytest.mark.slow]

TEXT = "window.meshpad.text.toString()"


async def text_is(page, expected: str) -> None:
    await until(page, f"{TEXT} === {expected!r}", f"the text to be {expected!r}")


async def start_typing(page, text: str = "") -> None:
    await page.click(".cm-content")
    await page.keyboard.press("Control+End")
    if text:
        await page.keyboard.type(text)


async def test_list_continuation_keeps_one_marker(browser, peer, page_errors):
    create(peer, "lists")
    page = await open_editor(browser, peer, "lists", page_errors)
    await start_typing(page, "- one")
    await page.keyboard.press("Enter")
    await text_is(page, "- one\n- ")
    # Typing the marker again, out of habit, gives one marker.
    await page.keyboard.type("- two")
    await text_is(page, "- one\n- two")
    await page.keyboard.press("Enter")
    await page.keyboard.type("* three")  # another bullet: the typed one stands
    await text_is(page, "- one\n- two\n* three")
    await page.keyboard.press("Enter")
    await page.keyboard.press("Enter")  # an empty item ends the list
    await page.keyboard.type("1. first")
    await page.keyboard.press("Enter")
    await page.keyboard.type("2. second")
    await text_is(page, "- one\n- two\n* three\n\n1. first\n2. second")
    await page.keyboard.press("Enter")
    await page.keyboard.type("- [ ] task")
    await page.keyboard.press("Enter")
    await page.keyboard.type("- [ ] next")
    await text_is(page, "- one\n- two\n* three\n\n1. first\n2. second\n- [ ] task\n- [ ] next")
    # A marker typed later, not right after Enter, nests as typed.
    await page.keyboard.press("Enter")
    await page.keyboard.type("x")
    await page.keyboard.press("Backspace")
    await page.keyboard.type("- nested")
    assert (await page.evaluate(TEXT)).endswith("\n- [ ] next\n- [ ] - nested")
    await page.wait_for_function("window.meshpad.isSaved()")
    assert server_text(peer, "lists") == await page.evaluate(TEXT)


async def test_formatting_shortcuts_toggle(browser, peer, page_errors):
    create(peer, "format", "word")
    page = await open_editor(browser, peer, "format", page_errors)
    await page.click(".cm-content")
    await page.keyboard.press("Control+a")
    await page.keyboard.press("Control+b")
    await text_is(page, "**word**")
    await page.keyboard.press("Control+b")  # the same selection again: unwrapped
    await text_is(page, "word")
    await page.keyboard.press("Control+i")
    await text_is(page, "*word*")
    await page.keyboard.press("Control+i")
    await text_is(page, "word")
    await page.keyboard.press("Control+e")
    await text_is(page, "`word`")
    await page.keyboard.press("Control+e")
    await text_is(page, "word")
    await page.keyboard.press("Control+k")
    await text_is(page, "[word](https://)")
    # The URL is selected: typing replaces it.
    await page.keyboard.type("https://example.org")
    await text_is(page, "[word](https://example.org)")
    await page.keyboard.press("Control+a")
    await page.keyboard.press("Control+k")
    await text_is(page, "word")
    # An empty selection gets the marks with the cursor between them.
    await page.keyboard.press("Control+End")
    await page.keyboard.type(" ")
    await page.keyboard.press("Control+b")
    await page.keyboard.type("bold")
    await text_is(page, "word **bold**")
    # Each is undone like typing.
    await page.evaluate("window.meshpad.undoManager.stopCapturing()")
    await page.keyboard.press("Control+z")
    await until(page, f"!{TEXT}.includes('bold')", "the undo")


async def test_find_and_replace_panel(browser, peer, page_errors, tmp_path):
    create(peer, "find", "cat and cat and dog\n")
    page = await open_editor(browser, peer, "find", page_errors)
    await page.click(".cm-content")
    await page.keyboard.press("Control+f")
    await page.wait_for_selector(".cm-search")
    field = page.locator(".cm-search input[name=search]")
    assert await field.evaluate("el => el === document.activeElement")
    await field.fill("cat")
    await page.fill(".cm-search input[name=replace]", "bird")
    await screenshots(page, tmp_path / "screenshots", "editor-search")
    await page.click(".cm-search button[name=replaceAll]")
    await text_is(page, "bird and bird and dog\n")
    await wait_for(lambda: server_text(peer, "find") == "bird and bird and dog\n", timeout=10, what="the peer")
    await page.keyboard.press("Escape")
    await page.wait_for_selector(".cm-search", state="detached")


async def test_headings_are_sized_not_underlined(browser, peer, page_errors):
    create(peer, "heads", "# One\n\n## Two\n\n###### Six\n\nbody text\n")
    page = await open_editor(browser, peer, "heads", page_errors)
    sizes = await page.evaluate(
        """() => [...document.querySelectorAll('.cm-line')].filter(l => l.textContent).map(l => {
          const span = l.querySelector('span:last-child') || l
          const style = getComputedStyle(span)
          return [l.textContent, parseFloat(style.fontSize), style.textDecorationLine, style.fontWeight]
        })"""
    )
    by_text = {text: (size, decoration, weight) for text, size, decoration, weight in sizes}
    body = by_text["body text"][0]
    assert by_text["# One"][0] > by_text["## Two"][0] > body
    assert all(by_text[h][1] == "none" for h in ("# One", "## Two", "###### Six"))
    assert all(int(by_text[h][2]) >= 700 for h in ("# One", "## Two", "###### Six"))


async def test_theme_switch_on_every_page(browser, peer, page_errors, tmp_path):
    create(peer, "themed", "# Themed\n\n```js\nconst x = 1\n```\n")
    page = await open_page(browser, peer, "/", page_errors)
    theme = "document.documentElement.dataset.theme"
    await page.emulate_media(color_scheme="dark")
    await until(page, f"{theme} === 'dark'", "auto to follow the system to dark")
    await page.emulate_media(color_scheme="light")
    await until(page, f"{theme} === 'light'", "auto to follow the system to light")
    bg = "getComputedStyle(document.body).backgroundColor"
    light_bg = await page.evaluate(bg)
    await page.select_option("#theme-choice", "dark")
    assert await page.get_attribute("html", "data-theme") == "dark"
    assert await page.evaluate(bg) != light_bg
    # Remembered on every page, before the page is painted.
    for path in ("/peers", "/trash", "/doc/themed", "/doc/themed/history"):
        await page.goto(peer.url + path)
        assert await page.get_attribute("html", "data-theme") == "dark", path
        assert await page.input_value("#theme-choice") == "dark"
    await until(page, "!!(window.meshpad || document.querySelector('.timeline, main'))", "the page")
    await page.goto(peer.url + "/doc/themed")
    await until(page, "!!(window.meshpad && window.meshpad.provider.synced)", "the editor")
    await page.screenshot(path=_shot(tmp_path, "editor-dark-chosen"))
    await page.select_option("#theme-choice", "light")
    await page.emulate_media(color_scheme="dark")  # chosen by hand: the system's preference does not count
    assert await page.evaluate("matchMedia('(prefers-color-scheme: dark)').matches")
    assert await page.get_attribute("html", "data-theme") == "light"
    await page.select_option("#theme-choice", "auto")
    await until(page, f"{theme} === 'dark'", "auto to follow the system")
    await page.emulate_media(color_scheme="light")
    await page.goto(peer.url + "/")
    await screenshots(page, tmp_path / "screenshots", "documents")
    await page.goto(peer.url + "/peers")
    await screenshots(page, tmp_path / "screenshots", "peers")


def _shot(tmp_path, name: str):
    directory = tmp_path / "screenshots"
    directory.mkdir(exist_ok=True)
    return directory / f"{name}.png"


def contrast(fg: list[float], bg: list[float]) -> float:
    def lum(rgb: list[float]) -> float:
        parts = [c / 255 for c in rgb]
        lin = [c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4 for c in parts]
        return 0.2126 * lin[0] + 0.7152 * lin[1] + 0.0722 * lin[2]

    a, b = sorted((lum(fg), lum(bg)), reverse=True)
    return (a + 0.05) / (b + 0.05)


async def test_remote_cursor_names_readable(browser, peer, page_errors, tmp_path):
    create(peer, "cursors", "# Cursors\n\nSome text to stand in.\n")
    ann = await open_editor(browser, peer, "cursors", page_errors, user="Ann")
    bob = await open_page(browser, peer, "/doc/cursors", page_errors)
    # Bob picked a light colour by hand.
    await bob.add_init_script("localStorage.setItem('meshpad:user', JSON.stringify({name: 'Bob', color: '#ffe066'}))")
    await bob.reload()
    await until(bob, "!!(window.meshpad && window.meshpad.provider.synced)", "Bob's editor")
    await start_typing(bob, " Bob was here.")
    await ann.wait_for_selector(".cm-ySelectionInfo:has-text('Bob')", state="attached")
    for scheme in ("light", "dark"):
        await ann.emulate_media(color_scheme=scheme)
        await ann.hover(".cm-ySelectionCaret")
        colours = await ann.evaluate(
            """() => { const infos = [...document.querySelectorAll('.cm-ySelectionInfo')]
              const info = infos.find(i => i.textContent === 'Bob')
              const rgb = s => s.match(/\\d+/g).slice(0, 3).map(Number)
              const style = getComputedStyle(info)
              return [rgb(style.color), rgb(style.backgroundColor)] }"""
        )
        assert contrast(*colours) >= 4.5, (scheme, colours)
        chip = await ann.evaluate(
            """() => { const el = [...document.querySelectorAll('#people .person')].find(p => p.textContent === 'Bob')
              const rgb = s => s.match(/\\d+/g).slice(0, 3).map(Number)
              const style = getComputedStyle(el); return [rgb(style.color), rgb(style.backgroundColor)] }"""
        )
        assert contrast(*chip) >= 4.5, (scheme, chip)
        await ann.screenshot(path=_shot(tmp_path, f"cursors-{scheme}"))
    await ann.emulate_media(color_scheme="light")
    await screenshots(ann, tmp_path / "screenshots", "editor")


async def test_code_blocks_are_coloured_once_the_grammars_come(browser, peer, page_errors):
    # The grammars are the bundle's second entry: the editor paints without
    # them, then colours the code. Both entries share one chunk, which must be
    # one module (one URL), or CodeMirror's trees from the two would not
    # recognise each other and its highlighter would crash on a table.
    create(peer, "fenced", "# Fenced\n\n| a | b |\n| - | - |\n| 1 | 2 |\n\n```python\ndef f(x):\n    return x\n```\n")
    page = await open_editor(browser, peer, "fenced", page_errors)
    crashed: list[str] = []
    page.on("console", lambda m: crashed.append(m.text) if "crashed" in m.text else None)
    await until(page, "!!document.querySelector('.cm-content .tok-keyword')", "the python block coloured")
    assert await page.inner_text(".cm-content .tok-keyword >> nth=0") == "def"
    # A fence typed later colours its block too, in a page that had none.
    create(peer, "plain", "just text\n")
    page = await open_editor(browser, peer, "plain", page_errors)
    page.on("console", lambda m: crashed.append(m.text) if "crashed" in m.text else None)
    await page.click(".cm-content")
    await page.keyboard.press("Control+End")
    await page.keyboard.type("\n```js\nconst y = 2\n")
    await until(page, "!!document.querySelector('.cm-content .tok-keyword')", "the typed js block coloured")
    assert crashed == []
    assert page_errors == []
