"""Two peers, a browser on each: typing on one shows on the other with the
typist's cursor and name; a Yjs document attached to both peers at once (two
providers) converges although its edits reach each peer before their causes."""

from __future__ import annotations

import re
import urllib.request

import pytest
from processes import Peer
from test_editor import DEADLINE, create, open_editor, server_text, type_at_end, wait_text
from waiting import wait_for_blocking

pytestmark = [pytest.mark.browser, pytest.mark.slow]


async def test_typing_on_one_peer_shows_on_the_other(browser, two_peers, page_errors):
    a, b = two_peers
    create(a, "across")
    wait_for_blocking(lambda: _exists(b, "across"), 10, what="the document reaches b")
    on_a = await open_editor(browser, a, "across", page_errors, user="Ada")
    on_b = await open_editor(browser, b, "across", page_errors, user="Ben")
    await type_at_end(on_a, "typed on peer A")
    await wait_text(on_b, "t === 'typed on peer A'")
    await on_b.wait_for_selector(".cm-ySelectionInfo:has-text('Ada')", state="attached", timeout=DEADLINE)
    await type_at_end(on_b, ", answered on B")
    await wait_text(on_a, "t === 'typed on peer A, answered on B'")
    await on_a.context.close()
    await on_b.wait_for_function(
        "![...window.meshpad.provider.awareness.getStates().values()].some(s => s.user && s.user.name === 'Ada')",
        timeout=5_000,
    )


async def test_one_document_on_two_providers_converges(browser, two_peers, page_errors):
    """A stock Yjs document connected to both peers sends each edit to both;
    peer B often gets an edit before the text it builds on (still on its way
    from A). Both peers must end with the page's text."""
    a, b = two_peers
    create(a, "dual")
    wait_for_blocking(lambda: _exists(b, "dual"), 10, what="the document reaches b")
    html = urllib.request.urlopen(f"{a.url}/doc/dual").read().decode()
    bundle = re.search(r'"meshpad-vendor": "([^"]+)"', html).group(1)
    context = await browser.new_context(bypass_csp=True)
    page = await context.new_page()
    page.on("pageerror", lambda e: page_errors.append(str(e)))
    await page.goto(f"{a.url}/healthz")
    # Peer B is another origin for this page: it proves itself with B's token.
    token_b = (b.data_dir / "browser-token").read_text().strip()
    await page.evaluate(
        """async ([bundle, hostA, hostB, tokenB]) => {
            const { Y, WebsocketProvider } = await import(bundle)
            const doc = new Y.Doc()
            const pa = new WebsocketProvider('ws://' + hostA + '/ws', 'dual', doc)
            const pb = new WebsocketProvider('ws://' + hostB + '/ws', 'dual', doc, { params: { token: tokenB } })
            const synced = Promise.all([pa, pb].map(p => new Promise(r => p.on('sync', s => s && r()))))
            const late = new Promise((_, fail) => setTimeout(() => fail(new Error('providers did not sync')), 10000))
            await Promise.race([synced, late])
            const text = doc.getText('content')
            for (let i = 0; i < 200; i++) {
                if (i % 7 === 6 && text.length > 2) text.delete(Math.floor(text.length / 2), 2)
                else text.insert(i % 3 === 0 ? 0 : text.length, 'k' + i + ' ')
            }
            window.dual = { doc, text }
        }""",
        [a.url + bundle, a.address, b.address, token_b],
    )
    expected = await page.evaluate("window.dual.text.toString()")
    wait_for_blocking(
        lambda: server_text(a, "dual") == expected and server_text(b, "dual") == expected,
        10,
        what="both peers converge",
    )


def _exists(peer: Peer, name: str) -> bool:
    try:
        urllib.request.urlopen(f"{peer.url}/api/docs/{name}").close()
        return True
    except OSError:
        return False
