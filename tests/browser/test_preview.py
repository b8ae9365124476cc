"""The editor's preview in Chromium, under the pages' own CSP: the three
views (buttons and Ctrl-Alt-P, remembered across a reload), GFM rendered
live, the panes scrolled together, task boxes that edit the text on the peer
(and are undone like typing), and a hostile document that runs no script and
makes no request to anything but the peer. Screenshots of the side-by-side
view in light, dark and 390 px wide go to ``screenshots/`` in the test's tmp
dir."""

from __future__ import annotations

import pytest
from test_editor import create, server_text
from test_life import open_editor, screenshots, until
from waiting import wait_for

pytestmark = [pytest.mark.browser, pytest.mark.slow]

GFM = """# Preview

| Fruit | Count |
| ----- | ----: |
| apple | 3 |
| pear  | 5 |

- [ ] buy milk
- [x] write tests

This is ~~gone~~ and see https://example.org/page for more.

```python
def greet(name):
    return "hi " + name
```
"""


async def rendered(page, after: int = 0) -> int:
    return await until(
        page,
        f"Number(document.getElementById('preview').dataset.rendered || 0) > {after}"
        " && Number(document.getElementById('preview').dataset.rendered)",
        "the preview to render",
    )


async def test_views_render_gfm_and_are_remembered(browser, peer, page_errors, tmp_path):
    create(peer, "gfm", GFM)
    page = await open_editor(browser, peer, "gfm", page_errors)
    assert await page.get_attribute("#panes", "data-view") == "editor"
    assert await page.get_attribute("#view-choice [data-view=editor]", "aria-pressed") == "true"
    # Nothing is rendered while the preview is not shown.
    assert await page.evaluate("document.getElementById('preview').childElementCount") == 0

    await page.click("#view-choice [data-view=split]")
    await rendered(page)
    assert await page.get_attribute("#panes", "data-view") == "split"
    assert await page.get_attribute("#view-choice [data-view=split]", "aria-pressed") == "true"
    assert await page.is_visible("#preview") and await page.is_visible("#editor")
    # GFM: a table, task list, strikethrough, an autolink; code highlighted.
    assert await page.inner_text("#preview table th:nth-child(2)") == "Count"
    assert await page.inner_text("#preview table tbody tr:nth-child(2) td:first-child") == "pear"
    boxes = await page.eval_on_selector_all(
        "#preview li.task-list-item input[type=checkbox]", "bs => bs.map(b => b.checked)"
    )
    assert boxes == [False, True]
    assert await page.inner_text("#preview li.task-list-item >> nth=0") == "buy milk"
    assert await page.inner_text("#preview s") == "gone"
    link = page.locator("#preview a[href='https://example.org/page']")
    assert await link.get_attribute("rel") == "noopener noreferrer"
    assert await link.get_attribute("target") == "_blank"
    assert await page.inner_text("#preview pre code .tok-keyword >> nth=0") == "def"

    # Live: an edit shows in the preview.
    count = await rendered(page)
    await page.click(".cm-content")
    await page.keyboard.press("Control+End")
    await page.keyboard.type("\n## Added live\n")
    await rendered(page, count)
    await until(
        page, "[...document.querySelectorAll('#preview h2')].some(h => h.textContent === 'Added live')", "an edit"
    )
    await screenshots(page, tmp_path / "screenshots", "preview-split")

    # The shortcut cycles: side by side -> preview only -> editor only.
    await page.keyboard.press("Control+Alt+KeyP")
    assert await page.get_attribute("#panes", "data-view") == "preview"
    assert not await page.is_visible("#editor")
    assert await page.evaluate("document.activeElement.id") == "preview"  # the focus is not lost
    await screenshots(page, tmp_path / "screenshots", "preview-only")
    await page.keyboard.press("Control+Alt+KeyP")
    assert await page.get_attribute("#panes", "data-view") == "editor"
    assert not await page.is_visible("#preview")
    assert await page.evaluate("document.activeElement.classList.contains('cm-content')")
    await page.keyboard.press("Control+Alt+KeyP")
    assert await page.get_attribute("#panes", "data-view") == "split"

    # Remembered across a reload.
    await page.click("#view-choice [data-view=preview]")
    await page.reload()
    await until(page, "!!(window.meshpad && window.meshpad.provider.synced)", "the editor to sync again")
    assert await page.get_attribute("#panes", "data-view") == "preview"
    assert await page.get_attribute("#view-choice [data-view=preview]", "aria-pressed") == "true"
    await rendered(page)

    # 390 px wide: no room for two panes, side by side shows the editor.
    await page.click("#view-choice [data-view=split]")
    await page.set_viewport_size({"width": 390, "height": 844})
    await until(page, "document.getElementById('panes').dataset.view === 'editor'", "the narrow window's single pane")
    assert not await page.is_visible("#view-choice [data-view=split]")


async def test_panes_scroll_together(browser, peer, page_errors):
    text = "\n\n".join(f"## Section {n}\n\nParagraph {n} " + "words " * 30 for n in range(80))
    create(peer, "long", text)
    page = await open_editor(browser, peer, "long", page_errors)
    await page.click("#view-choice [data-view=split]")
    await rendered(page)
    # The editor scrolled to section 40: the preview shows section 40 at its top.
    await page.evaluate(
        """() => { const v = window.meshpad.view; const line = v.state.doc.line(4 * 40 + 1)
        v.dispatch({ effects: v.constructor.scrollIntoView(line.from, { y: 'start', yMargin: 0 }) }) }"""
    )
    top_heading = """(() => { const p = document.getElementById('preview'); const top = p.getBoundingClientRect().top
      const hs = [...p.querySelectorAll('h2')].filter(h => h.getBoundingClientRect().bottom > top + 2)
      return hs.length ? hs[0].textContent : null })()"""
    await until(page, f"{top_heading} === 'Section 40'", "the preview to follow the editor")
    # The preview scrolled to section 10: the editor shows its line.
    await page.evaluate(
        """() => { const p = document.getElementById('preview')
        const h = [...p.querySelectorAll('h2')].find(h => h.textContent === 'Section 10')
        p.scrollTop = h.getBoundingClientRect().top - p.getBoundingClientRect().top + p.scrollTop }"""
    )
    editor_top = """(() => { const v = window.meshpad.view
      const b = v.lineBlockAtHeight(v.scrollDOM.scrollTop + 2); return v.state.doc.lineAt(b.from).number })()"""
    await until(page, f"Math.abs({editor_top} - (4 * 10 + 1)) <= 1", "the editor to follow the preview")


async def test_task_box_edits_the_text_and_undoes(browser, peer, page_errors):
    create(peer, "tasks", "# Tasks\n\n- [ ] first\n- [x] second\n\n> - [ ] quoted\n")
    page = await open_editor(browser, peer, "tasks", page_errors)
    await page.click("#view-choice [data-view=split]")
    await rendered(page)
    await page.click("#preview li.task-list-item >> nth=0 >> input")
    await wait_for(lambda: "- [x] first" in server_text(peer, "tasks"), timeout=10, what="the peer to get the check")
    count = await rendered(page)
    await page.click("#preview li.task-list-item >> nth=1 >> input")
    stop = "window.meshpad.undoManager.stopCapturing()"  # each toggle its own undo step
    await page.evaluate(stop)
    await page.click("#preview li.task-list-item >> nth=2 >> input")
    await page.evaluate(stop)
    await wait_for(
        lambda: server_text(peer, "tasks") == "# Tasks\n\n- [x] first\n- [ ] second\n\n> - [x] quoted\n",
        timeout=10, what="the peer to get both toggles",
    )  # fmt: skip
    await rendered(page, count)
    assert await page.eval_on_selector_all("#preview .task-box", "b => b.map(x => x.checked)") == [True, False, True]
    # Undone like typing, from the editor: the last toggle.
    await page.click(".cm-content")
    await page.keyboard.press("Control+z")
    undone = "# Tasks\n\n- [x] first\n- [ ] second\n\n> - [ ] quoted\n"
    await wait_for(lambda: server_text(peer, "tasks") == undone, timeout=10, what="the undo to reach the peer")
    # Lines added above (the list's block is kept as it was): a box still
    # toggles its own line.
    await page.evaluate("document.querySelector('#preview .task-box').closest('.md-block').kept = true")
    count = await rendered(page)
    await page.evaluate("window.meshpad.text.insert(0, 'Intro\\n\\nMore intro\\n\\n')")
    await rendered(page, count)
    assert await page.evaluate("document.querySelector('#preview .task-box').closest('.md-block').kept === true")
    await page.click("#preview li.task-list-item >> nth=1 >> input")
    toggled = "Intro\n\nMore intro\n\n# Tasks\n\n- [x] first\n- [x] second\n\n> - [ ] quoted\n"
    await wait_for(lambda: server_text(peer, "tasks") == toggled, timeout=10, what="the second box to toggle its line")


HOSTILE = """# Hostile

![markdown image](http://evil.test/md.png) and [a link](javascript:window.pwned='mdlink')

<script>window.pwned = 'script'</script>
<img src="x" onerror="window.pwned = 'onerror'">
<img src="http://evil.test/track.png" alt="tracker">
<a href="javascript:window.pwned='htmllink'" id="jslink">html link</a>
<iframe src="http://evil.test/frame"></iframe>
<svg><script>window.pwned = 'svg'</script><image href="http://evil.test/svg.png"/></svg>
<style>body { background: url(http://evil.test/style.png) }</style>
<div style="background: url(http://evil.test/div.png)">styled</div>
<object data="http://evil.test/object"></object><embed src="http://evil.test/embed">
<link rel="stylesheet" href="http://evil.test/sheet.css">
<form action="http://evil.test/form"><input name="q" autofocus onfocus="window.pwned='focus'"></form>
<details open ontoggle="window.pwned = 'toggle'"><summary>more</summary>inside</details>
<video poster="http://evil.test/poster.png" src="http://evil.test/v.mp4"></video>
<table background="http://evil.test/table.png"><tr><td>cell</td></tr></table>
<math><mi xlink:href="javascript:window.pwned='math'">m</mi></math>
<meta http-equiv="refresh" content="0;url=http://evil.test/">
<base href="http://evil.test/">
<img srcset="http://evil.test/set.png 2x">
<a href="/doc/hostile" id="inside">a link here</a>

The end.
"""


async def test_hostile_document_runs_nothing_and_loads_nothing(browser_foreign, peer, page_errors):
    create(peer, "hostile", HOSTILE)
    # DOMPurify parses the HTML in an inert copy of the page, under the
    # page's CSP, which reports the handlers and <base> it refuses there:
    # those are counted apart; any other report (a load refused) fails.
    refused: list[str] = []
    page = await open_editor(browser_foreign, peer, "hostile", refused)
    requests: list[str] = []
    dialogs: list[str] = []
    page.on("request", lambda r: requests.append(r.url))
    page.on("dialog", lambda d: dialogs.append(d.message))
    await page.click("#view-choice [data-view=preview]")
    await rendered(page)
    await page.wait_for_load_state("networkidle")
    # The rendered text is there.
    assert "The end." in await page.inner_text("#preview")
    assert "tracker (not loaded: http://evil.test/track.png)" in await page.inner_text("#preview")
    assert "(not loaded: http://evil.test/md.png)" in await page.inner_text("#preview")
    # Links: none with javascript:, every one opens with no opener or referrer.
    hrefs = await page.eval_on_selector_all("#preview a", "as => as.map(a => [a.getAttribute('href'), a.rel])")
    assert hrefs, "the document's links are rendered"
    assert all(not (href or "").strip().lower().startswith("javascript") for href, _ in hrefs), hrefs
    assert all(rel == "noopener noreferrer" for href, rel in hrefs if href), hrefs
    # Nothing that could run, frame, submit or load.
    dangerous = "script, iframe, object, embed, style, link, meta, base, form, input, svg, math, video, [style]"
    dangerous += ", [srcset]"
    assert await page.eval_on_selector_all(f"#preview :is({dangerous})", "els => els.length") == 0
    handlers = await page.eval_on_selector_all(
        "#preview *", "els => els.flatMap(e => [...e.attributes].map(a => a.name)).filter(n => n.startsWith('on'))"
    )
    assert handlers == []
    # Clicking the javascript: links runs nothing either.
    await page.click("#preview #jslink")
    assert await page.evaluate("typeof window.pwned") == "undefined"
    assert dialogs == []
    await page.wait_for_load_state("networkidle")
    outside = [url for url in requests if not url.startswith(peer.url)]
    assert outside == [], outside
    # A live edit with more of it is sanitised too.
    count = await rendered(page)
    await page.evaluate(
        "window.meshpad.text.insert(window.meshpad.text.length, '\\n<img src=y onerror=\"window.pwned=1\">\\n')"
    )
    await rendered(page, count)
    await page.wait_for_load_state("networkidle")
    assert await page.evaluate("typeof window.pwned") == "undefined"
    assert [url for url in requests if not url.startswith(peer.url)] == []
    inert = ("Executing inline event handler", "Setting the document's base URI")
    assert [m for m in refused if not m.startswith(inert)] == []
