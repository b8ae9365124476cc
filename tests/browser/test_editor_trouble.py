"""The editor when things go wrong, in Chromium against a real peer: a paste
over the document size limit (a clear message, no retry loop, undo or export
what was typed), a peer that stops answering (said within seconds, not
"saving…" for ever), and the bar staying in view in a long document."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path

import pytest
from test_editor import DEADLINE, create, open_editor, server_text, type_at_end, wait_text

from crdt.document import MAX_DOCUMENT_BYTES

pytestmark = [pytest.mark.browser, pytest.mark.slow]

# A paste that is 1 MiB over the limit once encoded as a Yjs update.
PASTE_JS = """(size) => {
    const line = 'A paragraph far too long to keep, pasted by mistake. '.repeat(4) + '\\n'
    const text = line.repeat(Math.ceil(size / line.length))
    const data = new DataTransfer()
    data.setData('text/plain', text)
    const view = window.meshpad.view
    view.dispatch({ selection: { anchor: view.state.doc.length } })
    view.contentDOM.dispatchEvent(new ClipboardEvent('paste', { clipboardData: data, bubbles: true, cancelable: true }))
    return text.length
}"""


def refused_frames(peer) -> int:
    with urllib.request.urlopen(peer.url + "/healthz") as resp:
        return int(json.loads(resp.read())["frames_refused"])


async def test_a_paste_over_the_limit_stops_with_a_message_and_can_be_undone(browser, peer, page_errors):
    create(peer, "big")
    page = await open_editor(browser, peer, "big", page_errors)
    sockets: list[str] = []
    page.on("websocket", lambda ws: sockets.append(ws.url))
    await type_at_end(page, "kept before the paste. ")
    await page.wait_for_function("window.meshpad.isSaved()", timeout=DEADLINE)

    pasted = await page.evaluate(PASTE_JS, MAX_DOCUMENT_BYTES + 1024 * 1024)
    await page.wait_for_selector("#problem:not([hidden])", timeout=DEADLINE * 3)
    message = await page.inner_text("#problem-text")
    assert "too large" in message and "MiB over its limit of 12 MiB" in message, message
    assert await page.get_attribute("#status", "data-state") == "stopped"
    assert "too large" in await page.inner_text("#saved")
    assert refused_frames(peer) == 1
    assert await page.evaluate("window.meshpad.provider.shouldConnect") is False
    assert server_text(peer, "big") == "kept before the paste. "

    # Export hands over everything typed, the paste included.
    async with page.expect_download() as download:
        await page.click("#problem-export")
    path = await (await download.value).path()
    exported = Path(path).read_text(encoding="utf-8")
    assert exported.startswith("kept before the paste. ") and len(exported) == len("kept before the paste. ") + pasted

    # Undo, then try again: only the text now in the editor is sent.
    await page.click("#problem-undo")
    await wait_text(page, "t === 'kept before the paste. '")
    await page.click("#problem-retry")
    await page.wait_for_selector("#problem", state="hidden", timeout=DEADLINE)
    await type_at_end(page, "and after.")
    await page.wait_for_function("window.meshpad.isSaved()", timeout=DEADLINE)
    assert server_text(peer, "big") == "kept before the paste. and after."
    # The only connection opened since the editor started is the one the
    # person asked for: nothing retried in between, and the peer refused
    # one frame in all.
    assert len(sockets) == 1, sockets
    assert refused_frames(peer) == 1


async def test_a_reload_with_the_paste_still_in_the_browser_tries_once(browser, peer, page_errors):
    create(peer, "big2", "safe text")
    page = await open_editor(browser, peer, "big2", page_errors)
    await page.evaluate(PASTE_JS, MAX_DOCUMENT_BYTES + 512 * 1024)
    await page.wait_for_selector("#problem:not([hidden])", timeout=DEADLINE * 3)
    sockets: list[str] = []
    page.on("websocket", lambda ws: sockets.append(ws.url))
    await page.reload()
    # The paste is in IndexedDB: the page sends it once, is refused, and stops.
    await page.wait_for_selector("#problem:not([hidden])", timeout=DEADLINE * 3)
    assert refused_frames(peer) == 2
    page.on("dialog", lambda dialog: dialog.accept())
    await page.click("#problem-discard")
    await page.wait_for_function("window.meshpad && window.meshpad.provider.synced", timeout=DEADLINE)
    await wait_text(page, "t === 'safe text'")
    assert await page.is_hidden("#problem")
    assert len(sockets) == 2, sockets  # the reload's attempt, then the page after discarding
    assert refused_frames(peer) == 2


async def test_a_frozen_peer_is_reported_within_seconds(browser, peer, page_errors):
    create(peer, "frozen")
    page = await open_editor(browser, peer, "frozen", page_errors)
    await type_at_end(page, "before. ")
    await page.wait_for_function("window.meshpad.isSaved()", timeout=DEADLINE)
    peer.pause()  # SIGSTOP: the socket stays open, nothing answers
    try:
        await type_at_end(page, "typed while frozen.")
        await page.wait_for_function(
            "document.getElementById('saved').textContent.includes('peer not responding')", timeout=DEADLINE
        )
        assert "kept in this browser" in await page.inner_text("#saved")
        assert await page.get_attribute("#status", "data-state") == "not-responding"
    finally:
        peer.resume()
    await page.wait_for_function("window.meshpad.isSaved()", timeout=DEADLINE)
    assert await page.get_attribute("#status", "data-state") == "connected"
    assert server_text(peer, "frozen") == "before. typed while frozen."


async def test_an_idle_editor_notices_a_frozen_peer(browser, peer, page_errors):
    create(peer, "idle")
    page = await open_editor(browser, peer, "idle", page_errors)
    await page.wait_for_function("window.meshpad.isSaved()", timeout=DEADLINE)
    peer.pause()
    try:
        await page.wait_for_function(
            "document.getElementById('status').dataset.state === 'not-responding'", timeout=DEADLINE * 2
        )
        assert await page.inner_text("#saved") == "saved on this peer"  # what was saved stays saved
    finally:
        peer.resume()
    await page.wait_for_function("document.getElementById('status').dataset.state === 'connected'", timeout=DEADLINE)


async def test_the_bar_stays_in_view_in_a_long_document(browser, peer, page_errors):
    create(peer, "long", "\n".join(f"line {i}" for i in range(2000)))
    page = await open_editor(browser, peer, "long", page_errors)
    await page.click(".cm-content")
    await page.keyboard.press("Control+End")
    await page.mouse.wheel(0, 100_000)
    # The text scrolls in its pane under the bar (or, in a layout without
    # panes, the page scrolls): either way it has moved far down.
    await page.wait_for_function(
        "window.scrollY > 1000 || document.querySelector('.cm-scroller').scrollTop > 1000", timeout=DEADLINE
    )
    await page.wait_for_function(
        "[...document.querySelectorAll('.cm-line')].some(l => l.textContent === 'line 1999')", timeout=DEADLINE
    )
    box = await page.locator("header.bar").bounding_box()
    assert box is not None and abs(box["y"]) < 1, box
    assert await page.locator("#saved").is_visible()
    # Nothing covers it: the element at the bar's centre belongs to the bar.
    inside = await page.evaluate(
        "() => { const r = document.querySelector('header.bar').getBoundingClientRect();"
        " return document.querySelector('header.bar').contains("
        "document.elementFromPoint(r.left + 5, r.top + r.height / 2)) }"
    )
    assert inside
