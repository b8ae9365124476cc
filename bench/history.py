"""History rows: what keeping history costs, and how fast it answers.

* overhead: the stored state and the resident memory of the automerge-paper
  document with its deleted content kept and 100 versions recorded, against
  the same document collected as before history (``Doc()``, gc on);
* open a version: 100 random versions, each from a fresh history (the order
  of characters read anew), against the fallback that lets pycrdt order a
  cut of the state;
* list the history;
* restore: the bytes a restore that changes one paragraph of a 100 KB
  document sends on a peer link, against the paragraph's size.

Run alone: ``python bench/history.py [--quick]``.
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import Row, encode_trace, percentile

from crdt import history, peerwire, ystructs
from crdt.document import Document

VERSIONS = 100
ANN = history.Author("Ann", "#cc3300", "aa" * 16)


def build(updates: list[bytes]) -> Document:
    """The trace through the causal gate, a session closed every
    len/VERSIONS edits (times one second apart)."""
    doc = Document("paper", 0x1234)
    rec = history.Recorder(ANN.peer)
    every = max(1, len(updates) // VERSIONS)
    for i, update in enumerate(updates):
        for change in doc.receive(update, 1):
            rec.note(doc, change.update, {0x4D455348: ("Ann", "#cc3300")}, at=1_700_000_000 + i / 1000)
        if (i + 1) % every == 0:
            rec.close(doc, 1_700_000_000 + i / 1000)
    rec.close(doc, 1_700_000_000 + len(updates) / 1000)
    return doc


_RSS = """
import sys, json
from pathlib import Path
sys.path.insert(0, sys.argv[1])
def rss():
    for line in Path('/proc/self/status').read_text().splitlines():
        if line.startswith('VmRSS:'):
            return int(line.split()[1]) / 1024
import pycrdt
from crdt.document import Document
from crdt import history
state = Path(sys.argv[2]).read_bytes()
before = rss()
if sys.argv[3] == 'gc':
    doc = pycrdt.Doc()
    text = doc.get('content', type=pycrdt.Text)
    doc.apply_update(state)
    len(str(text))
    opened = rss()
    browsing = opened
else:
    doc = Document('paper', 99)
    doc.load([state])
    len(doc.text)
    opened = rss()
    h = history.History(doc)
    versions = h.versions()
    h.text(versions[len(versions) // 2])
    browsing = rss()
print(json.dumps({'opened': opened - before, 'browsing': browsing - before}))
"""


def _rss(state: bytes, kind: str, work: Path) -> dict[str, float]:
    path = work / f"state-{kind}.bin"
    path.write_bytes(state)
    root = str(Path(__file__).resolve().parents[1])
    out = subprocess.run(
        [sys.executable, "-c", _RSS, root, str(path), kind], capture_output=True, text=True, check=True
    )
    result: dict[str, float] = json.loads(out.stdout)
    return result


def rows_history(updates: list[bytes], work: Path) -> list[Row]:
    from pycrdt import Doc, Text

    plain: Doc = Doc()
    plain.get("content", type=Text)
    for update in updates:
        plain.apply_update(update)
    plain_state = plain.get_update()
    doc = build(updates)
    state = doc.encode_state()
    h = history.History(doc)
    versions = h.versions()
    rss_plain = _rss(plain_state, "gc", work)
    rss_hist = _rss(state, "history", work)
    size_ratio = len(state) / len(plain_state)
    rss_ratio = rss_hist["opened"] / rss_plain["opened"]
    rows = [
        Row(
            f"history overhead (automerge-paper, {len(updates):,} edits, {len(versions)} versions)",
            f"stored state {len(state):,} B ({size_ratio:.2f} ×); resident with the document open "
            f"{rss_hist['opened']:.1f} MB ({rss_ratio:.2f} ×), {rss_hist['browsing']:.1f} MB after listing the "
            "history and opening a version",
            f"without history (gc on, no versions): {len(plain_state):,} B, {rss_plain['opened']:.1f} MB",
            "≤ 1.3 ×",
            size_ratio <= 1.3 and rss_ratio <= 1.3,
        )
    ]
    # Open a version: each from a fresh history, so the order of characters is read anew.
    rng = random.Random(1)
    picks = [rng.choice(versions) for _ in range(100)]
    cold: list[float] = []
    fallback: list[float] = []
    for v in picks:
        start = time.perf_counter()
        text = history.History(doc).text(v)
        cold.append(time.perf_counter() - start)
        start = time.perf_counter()
        snap = h.snapshot(v.id)
        again = Document.text_of(ystructs.cut(state, snap.sv, snap.ds))
        fallback.append(time.perf_counter() - start)
        assert again == text
    warm = []
    for v in picks:
        start = time.perf_counter()
        h.text(v)
        warm.append(time.perf_counter() - start)
    p99 = percentile(cold, 99) * 1000
    rows.append(
        Row(
            "open a version (100 random versions of that document)",
            f"p50 {percentile(cold, 50) * 1000:.0f} ms, p99 {p99:.0f} ms, each from a fresh history "
            f"(the order of characters read anew); p99 {percentile(warm, 99) * 1000:.1f} ms once read",
            f"the same versions rebuilt by pycrdt from a cut: p99 {percentile(fallback, 99) * 1000:.0f} ms",
            "p99 ≤ 250 ms",
            p99 <= 250,
        )
    )
    listing: list[float] = []
    for _ in range(20):
        start = time.perf_counter()
        history.History(doc).versions()
        listing.append(time.perf_counter() - start)
    worst = max(listing) * 1000
    rows.append(
        Row(
            f"history list ({len(versions)} versions)",
            f"{statistics_median(listing) * 1000:.1f} ms (slowest of 20: {worst:.1f} ms)",
            f"{len(h.records())} entries",
            "≤ 100 ms",
            worst <= 100,
        )
    )
    rows.append(_row_restore(plain_text(plain)))
    return rows


def plain_text(doc: object) -> str:
    from pycrdt import Text

    return str(doc.get("content", type=Text))  # type: ignore[attr-defined]


def statistics_median(values: list[float]) -> float:
    return sorted(values)[len(values) // 2]


def _row_restore(text: str) -> Row:
    doc = Document("d", 7)
    doc.edit_as(8, [(0, 0, text)], "local")
    vid, _ = history.name_version(doc, "before", ANN, at=1)
    paragraphs = [p for p in doc.text.split("\n\n") if 400 <= len(p) <= 2000]
    paragraph = paragraphs[len(paragraphs) // 2]
    at = doc.text.index(paragraph)
    doc.edit("local", at=at, delete=len(paragraph), insert="A paragraph overwritten by mistake.")
    _, changes = history.restore(doc, vid, ANN, at=2, client_id=9)
    assert doc.text == text
    sent = sum(len(peerwire.encode(peerwire.Update("d", c.update))) for c in changes)
    text_only = sum(len(peerwire.encode(peerwire.Update("d", c.update))) for c in changes if c.origin == "restore")
    size = len(paragraph.encode())
    return Row(
        f"restore (one paragraph of a {len(text.encode()) // 1000} KB document)",
        f"{sent:,} bytes of peer messages ({sent / size:.2f} × the paragraph): the text change {text_only:,} B, "
        "the author and the version entry the rest",
        f"the changed paragraph: {size:,} bytes",
        "≤ 2 × the paragraph",
        sent <= 2 * size,
    )


def main() -> int:
    from common import table

    quick = "--quick" in sys.argv
    with tempfile.TemporaryDirectory(prefix="meshpad-bench-") as tmp:
        work = Path(tmp)
        updates, _ = encode_trace(30_000 if quick else None, work)
        print(table(rows_history(updates, work)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
