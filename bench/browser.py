"""The browser rows: what a page downloads, how soon the editor shows a
100 KB document, and how long a keystroke takes from one browser to its
paint in another browser on another peer. Real headless Chromium (Debian's,
through Playwright), real ``meshpad serve`` processes.

    python bench/browser.py            # the rows, as a table
    python bench/browser.py --quick    # fewer loads and keystrokes

* bundle: raw and gzipped (-9) bytes of every JavaScript and CSS file the
  pages may load (``server/assets.py`` SERVED, read now), against the same
  list at commit ab6d573 (``git show``), before issue 14;
* first paint: a 100 KB Markdown document opened in a fresh browser
  context (empty cache and IndexedDB), from navigation start to the frame
  after the editor holds the whole text and shows its first lines, timed
  inside the page (``performance.now()``; a script added before the page's
  own, which the page's CSP does not govern, polls every frame); against the
  same page with an empty document, and the same document on a peer of the
  code at ab6d573 (``git archive``), measured in turn in the same run;
* browser to browser: a browser on each of two peers, the same document;
  a key typed in A is timestamped at keydown inside A and at the frame that
  paints it inside B (a MutationObserver on the editor, then the end of the
  next frame), both as ``performance.timeOrigin + performance.now()`` of one
  Chromium; one keystroke after the other has arrived. The two pages' clocks
  are compared through the DevTools protocol and the difference reported.
  Against the peer-level keystroke row (run.py's), measured in the same run.
"""

from __future__ import annotations

import argparse
import ast
import asyncio
import gzip
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import ROOT, Row, exists, get_json, not_measured, percentile, post_json, prose, table, wait_sync
from measure import MachineLoad
from processes import Peer

BASE_REV = "ab6d57388f00d40a56b4dad16fb099c3616cfe34"  # before issue 14
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]


# -- bundle size -----------------------------------------------------------------------


def _served(source: str) -> list[str]:
    """SERVED of a server/assets.py, read without importing it."""
    values: dict[str, object] = {}
    for node in ast.parse(source).body:
        if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name):
            try:
                values[node.targets[0].id] = ast.literal_eval(node.value)
            except ValueError:
                if isinstance(node.value, ast.Tuple):  # names other constants
                    values[node.targets[0].id] = tuple(
                        values[e.id] if isinstance(e, ast.Name) else ast.literal_eval(e) for e in node.value.elts
                    )
    served = values["SERVED"]
    assert isinstance(served, tuple)
    return [str(p) for p in served if str(p).endswith((".js", ".css"))]


def _git_show(rev: str, path: str) -> bytes:
    return subprocess.run(["git", "show", f"{rev}:{path}"], cwd=ROOT, check=True, capture_output=True).stdout


def gzipped(data: bytes) -> int:
    """Bytes after ``gzip -9 -n`` (GNU gzip, as a person would measure; zlib's level 9 when it is missing)."""
    if shutil.which("gzip"):
        return len(subprocess.run(["gzip", "-9", "-n", "-c"], input=data, check=True, capture_output=True).stdout)
    return len(gzip.compress(data, 9, mtime=0))


def _sizes(files: dict[str, bytes]) -> tuple[int, int]:
    return sum(len(b) for b in files.values()), sum(gzipped(b) for b in files.values())


def rows_bundle() -> list[Row]:
    now_list = _served((ROOT / "server" / "assets.py").read_text())
    then_list = _served(_git_show(BASE_REV, "server/assets.py").decode())
    now = {p: (ROOT / "static" / p).read_bytes() for p in now_list}
    then = {p: _git_show(BASE_REV, f"static/{p}") for p in then_list}
    print("bundle: file, raw bytes, gzip -9 bytes", file=sys.stderr)
    for label, files in (("now", now), (BASE_REV[:7], then)):
        for p, data in files.items():
            print(f"  {label:8} {p:40} {len(data):>9,} {gzipped(data):>9,}", file=sys.stderr)
    rows = []
    vendor_now = {p: b for p, b in now.items() if p.startswith("vendor/")}
    vendor_then = {p: b for p, b in then.items() if p.startswith("vendor/")}
    for name, a, b in (
        (f"vendor bundle ({', '.join(Path(p).name for p in vendor_now)})", vendor_now, vendor_then),
        (f"all JavaScript and CSS the pages load ({len(now)} files)", now, then),
    ):
        (raw, gz), (raw0, gz0) = _sizes(a), _sizes(b)
        rows.append(
            Row(
                f"bundle: {name}",
                f"{gz:,} bytes gzipped ({gz / gz0:.2f} ×), {raw:,} raw",
                f"at {BASE_REV[:7]} (before issue 14, {len(b)} files): {gz0:,} gzipped, {raw0:,} raw",
                "reported",
                None,
            )
        )
    return rows


def busy(load: MachineLoad) -> str:
    return (
        f"the machine's {os.cpu_count()} cores were {load.busy:.0%} busy (other programs included; "
        f"load average {os.getloadavg()[0]:.1f})"
    )


# -- the browser -------------------------------------------------------------------------


def _chromium() -> str:
    found = shutil.which("chromium") or "/usr/bin/chromium"
    if not Path(found).exists():
        raise FileNotFoundError("Debian's chromium is needed (apt-get install chromium)")
    return found


# Added before the page's own scripts: polls every frame until the editor
# holds *length* characters and shows *first*, then stamps the end of that
# frame (the message posted from its animation frame runs after the paint).
SHOWN = """(() => {
  const want = %(length)d, first = %(first)s
  let done, editor = null
  window.__shown = new Promise(resolve => { done = resolve })
  const check = () => {
    const m = window.meshpad, content = document.querySelector('.cm-content')
    if (editor === null && m && content) editor = performance.now()
    if (m && m.provider.synced && m.text.length === want && content && content.textContent.includes(first)) {
      const channel = new MessageChannel()
      channel.port1.onmessage = () => {
        const nav = performance.getEntriesByType('navigation')[0]
        done({ shown: performance.now(), editor, dcl: nav.domContentLoadedEventEnd })
      }
      channel.port2.postMessage(null)
      return
    }
    requestAnimationFrame(check)
  }
  requestAnimationFrame(check)
})()"""


def markdown(size: int, rng: random.Random) -> str:
    """*size* characters of Markdown: headings, paragraphs, lists, code."""
    parts: list[str] = []
    length = 0
    n = 0
    while length < size:
        n += 1
        block = (
            f"## Section {n}\n\n{prose(rng, 600)}\n\n- {prose(rng, 60).strip()}\n- [ ] {prose(rng, 40).strip()}\n\n"
            f"```python\ndef f{n}(x):\n    return x * {n}\n```\n\n"
        )
        parts.append(block)
        length += len(block)
    return ("# A long document\n\n" + "".join(parts))[:size]


async def _first_paint(browser, url: str, text: str) -> dict[str, float]:
    """ms from navigation start to the frame that shows *text*'s first line,
    in a fresh context ("shown"); and to DOMContentLoaded ("dcl", the
    scripts fetched and run) and the first frame with the editor ("editor")."""
    first = text.split("\n", 1)[0] if text else ""
    context = await browser.new_context()
    try:
        page = await context.new_page()
        await page.add_init_script(SHOWN % {"length": len(text), "first": repr(first)})
        await page.goto(url)
        try:
            return dict(await asyncio.wait_for(page.evaluate("window.__shown"), 20))
        except TimeoutError:
            raise AssertionError(f"{url} never showed its text") from None
    finally:
        await context.close()


def old_peer(work: Path) -> Peer:
    """A peer of the code at BASE_REV (``git archive``), before issue 14."""
    tree = work / "base-tree"
    if not tree.exists():
        tree.mkdir()
        archive = subprocess.run(["git", "archive", BASE_REV], cwd=ROOT, check=True, capture_output=True).stdout
        subprocess.run(["tar", "-x", "-C", str(tree)], input=archive, check=True)
    command = [sys.executable, "-c", f"import sys; sys.path.insert(0, {str(tree)!r}); from server.cli import main; "
               "sys.exit(main())"]  # fmt: skip
    return Peer(work / "paint-base", command=command)


async def _paint_rows(peer: Peer, base: Peer, loads: int) -> Row:
    from playwright.async_api import async_playwright

    text = markdown(100_000, random.Random(100))
    for p in (peer, base):
        post_json(f"{p.url}/api/docs", {"name": "big", "text": text})
        post_json(f"{p.url}/api/docs", {"name": "empty"})
    big: list[dict[str, float]] = []
    empty: list[dict[str, float]] = []
    before: list[dict[str, float]] = []
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=_chromium(), args=CHROMIUM_ARGS)
        try:
            for p in (peer, base):  # warm the peers' caches
                await _first_paint(browser, f"{p.url}/doc/empty", "")
                await _first_paint(browser, f"{p.url}/doc/big", text)
            with MachineLoad([]) as load:
                for _ in range(loads):
                    big.append(await _first_paint(browser, f"{peer.url}/doc/big", text))
                    empty.append(await _first_paint(browser, f"{peer.url}/doc/empty", ""))
                    before.append(await _first_paint(browser, f"{base.url}/doc/big", text))
        finally:
            await browser.close()

    def p(runs: list[dict[str, float]], key: str, q: float) -> float:
        return percentile([r[key] for r in runs], q)

    p50, p99 = p(big, "shown", 50), p(big, "shown", 99)
    return Row(
        f"first paint of a 100 KB document ({loads} loads, fresh context each)",
        f"p50 {p50:.0f} ms, p99 {p99:.0f} ms from navigation start (p50: scripts loaded and run, "
        f"DOMContentLoaded, at {p(big, 'dcl', 50):.0f} ms; the editor's first frame at {p(big, 'editor', 50):.0f} ms); "
        f"{busy(load)}",
        f"the same page with an empty document: p50 {p(empty, 'shown', 50):.0f} ms, p99 {p(empty, 'shown', 99):.0f} ms "
        f"(DOMContentLoaded p50 {p(empty, 'dcl', 50):.0f} ms); the 100 KB document on a peer of {BASE_REV[:7]} "
        f"(before issue 14): p50 {p(before, 'shown', 50):.0f} ms, p99 {p(before, 'shown', 99):.0f} ms",
        "p99 ≤ 300 ms",
        p99 <= 300,
    )


def row_first_paint(work: Path, loads: int) -> Row:
    name = f"first paint of a 100 KB document ({loads} loads, fresh context each)"
    peer, base = Peer(work / "paint"), old_peer(work)
    try:
        peer.start()
        base.start()
        return asyncio.run(_paint_rows(peer, base, loads))
    except (OSError, AssertionError, ImportError, subprocess.CalledProcessError) as exc:
        return Row(name, f"failed: {exc}", "—", "p99 ≤ 300 ms", False)
    finally:
        base.stop()
        peer.stop()


# -- browser to browser -------------------------------------------------------------------

SENDER = """() => {
  window.__sent = []
  window.__applied = []
  const now = () => performance.timeOrigin + performance.now()
  document.addEventListener('keydown', () => { window.__sent.push(now()) }, true)
  window.meshpad.text.observe(event => { if (event.transaction.local) window.__applied.push(now()) })
}"""

# In B: every time the editor's content changes, the characters that came
# since the last change are stamped at the end of the frame that paints them.
RECEIVER = """() => {
  window.__painted = []
  window.__arrived = []
  window.__waiters = new Map()
  const base = window.meshpad.text.length
  let seen = base, arrived = base
  window.meshpad.text.observe(() => {
    const at = performance.timeOrigin + performance.now()
    for (let i = arrived - base; i < window.meshpad.text.length - base; i++) window.__arrived[i] = at
    arrived = window.meshpad.text.length
  })
  new MutationObserver(() => {
    const now = window.meshpad.text.length
    if (now <= seen) return
    const from = seen - base, to = now - base
    seen = now
    requestAnimationFrame(() => {
      const channel = new MessageChannel()
      channel.port1.onmessage = () => {
        const at = performance.timeOrigin + performance.now()
        for (let i = from; i < to; i++) {
          window.__painted[i] = at
          const w = window.__waiters.get(i)
          if (w) { window.__waiters.delete(i); w() }
        }
      }
      channel.port2.postMessage(null)
    })
  }).observe(document.querySelector('.cm-content'), { subtree: true, childList: true, characterData: true })
}"""

WAIT_PAINTED = """k => window.__painted[k] !== undefined || new Promise(resolve => window.__waiters.set(k, resolve))"""


async def _clock_offset(page) -> tuple[float, float]:
    """The page's clock (timeOrigin + now, ms) minus this process's wall
    clock, from the quickest of 30 round trips; and that round trip."""
    best = (0.0, float("inf"))
    for _ in range(30):
        t0 = time.time() * 1000
        at = await page.evaluate("performance.timeOrigin + performance.now()")
        t1 = time.time() * 1000
        if t1 - t0 < best[1]:
            best = (at - (t0 + t1) / 2, t1 - t0)
    return best


async def _open_editor(browser, url: str):
    context = await browser.new_context()
    page = await context.new_page()
    await page.goto(url)
    deadline = time.monotonic() + 20
    while not await page.evaluate(
        "() => Boolean(window.meshpad && window.meshpad.provider.synced"
        " && document.getElementById('status').dataset.state === 'connected')"
    ):
        assert time.monotonic() < deadline, f"{url} did not connect"
        await asyncio.sleep(0.05)
    return page


async def _browser_keystrokes(a: Peer, b: Peer, count: int) -> tuple[dict[str, list[float]], float, float, MachineLoad]:
    from playwright.async_api import async_playwright

    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=_chromium(), args=CHROMIUM_ARGS)
        try:
            pa = await _open_editor(browser, f"{a.url}/doc/b2b")
            pb = await _open_editor(browser, f"{b.url}/doc/b2b")
            await pa.click(".cm-content")
            await pa.evaluate(SENDER)
            await pb.evaluate(RECEIVER)
            with MachineLoad([]) as load:
                for k in range(count):
                    await pa.keyboard.type("k" if k % 8 else " ")
                    await asyncio.wait_for(pb.evaluate(WAIT_PAINTED, k), 10)
            sent = await pa.evaluate("window.__sent")
            applied = await pa.evaluate("window.__applied")
            arrived = await pb.evaluate("window.__arrived")
            painted = await pb.evaluate("window.__painted")
            assert len(sent) == len(applied) == len(arrived) == len(painted) == count, (len(sent), len(painted))
            assert await pb.evaluate("window.meshpad.text.toString()") == await pa.evaluate(
                "window.meshpad.text.toString()"
            )
            (offset_a, rtt_a), (offset_b, rtt_b) = await _clock_offset(pa), await _clock_offset(pb)
        finally:
            await browser.close()
    steps = {
        "total": [p - s for s, p in zip(sent, painted, strict=True)],
        "input": [a - s for s, a in zip(sent, applied, strict=True)],
        "wire": [r - a for a, r in zip(applied, arrived, strict=True)],
        "paint": [p - r for r, p in zip(arrived, painted, strict=True)],
    }
    return steps, offset_b - offset_a, (rtt_a + rtt_b) / 2, load


def row_browser_to_browser(work: Path, count: int, reference: str) -> Row:
    name = f"keystroke, browser on A → paint in a browser on B ({count} keys)"
    target = "p99 ≤ 30 ms"
    a = Peer(work / "b2b-a").start()
    b = Peer(work / "b2b-b", args=["--join", a.address]).start()
    try:
        wait_sync(lambda: any(r["state"] == "connected" for r in get_json(f"{b.url}/api/peers")), 20)  # type: ignore[index, union-attr]
        post_json(f"{a.url}/api/docs", {"name": "b2b"})
        wait_sync(lambda: exists(b, "b2b"), 20)
        steps, skew, uncertainty, load = asyncio.run(_browser_keystrokes(a, b, count))
    except (OSError, AssertionError, TimeoutError, ImportError) as exc:
        return Row(name, f"failed: {exc!r}", reference, target, False)
    finally:
        b.stop()
        a.stop()
    p50, p99 = percentile(steps["total"], 50), percentile(steps["total"], 99)

    def part(key: str) -> str:
        return f"{percentile(steps[key], 50):.1f} / {percentile(steps[key], 99):.1f}"

    return Row(
        name,
        f"p50 {p50:.1f} ms, p99 {p99:.1f} ms, keydown in A to the end of B's frame that paints it "
        f"(p50 / p99 of its parts: keydown to A's Yjs text {part('input')} ms, to B's Yjs text {part('wire')} ms, "
        f"to B's painted frame {part('paint')} ms; the two pages' clocks differ by {skew:+.2f} ms "
        f"± {uncertainty:.2f}); {busy(load)}",
        reference,
        target,
        p99 <= 30,
    )


def rows_browser(work: Path, quick: bool, keystroke: str) -> list[Row]:
    """The bench's browser rows; *keystroke* names the peer-level keystroke row."""
    rows = rows_bundle()
    try:
        _chromium()
    except FileNotFoundError as exc:
        rows.append(not_measured("first paint of a 100 KB document", "p99 ≤ 300 ms", str(exc)))
        rows.append(not_measured("keystroke, browser on A → paint in a browser on B", "p99 ≤ 30 ms", str(exc)))
        return rows
    rows.append(row_first_paint(work, 20 if quick else 40))
    rows.append(row_browser_to_browser(work, 200 if quick else 500, keystroke))
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer loads and keystrokes")
    args = parser.parse_args()
    from run import rows_latency_and_wire

    with tempfile.TemporaryDirectory(prefix="meshpad-bench-browser-") as tmp:
        work = Path(tmp)
        keystroke = rows_latency_and_wire(work, 500 if args.quick else 2000)[0]
        rows = [keystroke, *rows_browser(work, args.quick, f"keystroke latency row: {keystroke.measured}")]
    print(table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
