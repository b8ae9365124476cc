"""The documents-list search rows: 10,000 documents of about 2 KB each.

    python bench/search.py             # the rows, as a table
    python bench/search.py --quick     # 2,000 documents, fewer queries

* search (HTTP): ``GET /api/docs?q=WORD&limit=50`` on a real peer process
  (``--max-loaded 100``: nearly every document is a summary only), for
  words found in about 6 % of the documents, parts of words (four of a
  word's characters) and words found nowhere; p50 and p99 of the whole
  request;
* the same queries in the store alone: the FTS5 trigram index
  (``SQLiteStore.search``) against a ``LIKE '%…%'`` scan of the same texts
  in a plain table of the same database (the reference);
* the first start of a peer whose store has no index yet (it indexes every
  text), against a second start (it only checks the texts' fingerprints).

The store is written directly (``SQLiteStore`` and ``crdt.store.Write``,
updates made by pycrdt through ``crdt.document.Document``), as bench/life.py
does.
"""

from __future__ import annotations

import argparse
import random
import sqlite3
import tempfile
import time
import urllib.parse
from pathlib import Path

from common import Row, percentile, table
from processes import Peer

from crdt.document import Document
from crdt.store import Write
from server.sqlite_store import DB_FILE, SQLiteStore

WORDS = 5000  # distinct words; a document holds about 330 of them


def vocabulary(rng: random.Random) -> list[str]:
    letters = "abcdefghijklmnopqrstuvwxyz"
    return sorted({"".join(rng.choices(letters, k=rng.randint(5, 10))) for _ in range(WORDS)})


def fill(data: Path, count: int, words: list[str], rng: random.Random) -> None:
    store = SQLiteStore(data)
    batch = []
    for i in range(count):
        name = f"doc-{i:05d}"
        text = " ".join(rng.choices(words, k=330))[:2000]
        doc = Document(name, i + 1)
        for change in doc.edit("seed", insert=text):
            batch.append(Write(name, change.update, length=len(doc.text), at=time.time() - count + i))
        if len(batch) >= 1000:
            store.write(batch)
            batch = []
    store.write(batch)
    store.close()


def started(peer: Peer) -> float:
    begin = time.perf_counter()
    peer.start(timeout=300)
    return time.perf_counter() - begin


def queries(words: list[str], rng: random.Random, n: int) -> list[str]:
    picked = rng.sample(words, n)
    third = n // 3
    return picked[:third] + [w[1:5] for w in picked[third : 2 * third]] + [w + "qqz" for w in picked[2 * third :]]


def ms(values: list[float]) -> str:
    return f"p50 {percentile(values, 50) * 1000:.1f} ms, p99 {percentile(values, 99) * 1000:.1f} ms"


def rows_search(work: Path, quick: bool) -> list[Row]:
    count = 2000 if quick else 10_000
    n = 60 if quick else 300
    rng = random.Random(14)
    words = vocabulary(rng)
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="meshpad-search-", dir=work) as tmp:
        data = Path(tmp) / "data"
        fill(data, count, words, rng)
        peer = Peer(data, args=["--max-loaded", "100"])
        first = started(peer)
        qs = queries(words, rng, n)
        http: list[float] = []
        try:
            for q in qs:
                begin = time.perf_counter()
                peer.get("/api/docs?" + urllib.parse.urlencode({"q": q, "limit": 50}))
                http.append(time.perf_counter() - begin)
            plain: list[float] = []
            for _ in range(min(n, 60)):
                begin = time.perf_counter()
                peer.get("/api/docs?limit=50")
                plain.append(time.perf_counter() - begin)
        finally:
            peer.stop()
        second = started(peer)
        peer.stop()

        store = SQLiteStore(data)
        fts = []
        for q in qs:
            begin = time.perf_counter()
            store.search(q)
            fts.append(time.perf_counter() - begin)
        store.close()
        db = sqlite3.connect(data / DB_FILE)
        db.execute("CREATE TEMP TABLE plain AS SELECT rowid, text FROM search")
        like = []
        for q in qs:
            begin = time.perf_counter()
            db.execute("SELECT rowid FROM plain WHERE text LIKE ?", (f"%{q}%",)).fetchall()
            like.append(time.perf_counter() - begin)
        db.close()

    docs = f"{count:,} documents of 2 KB"
    rows.append(Row(f"search, HTTP ({docs}, limit 50)", ms(http), f"the list unsearched: {ms(plain)}", "p99 ≤ 100 ms",
                    percentile(http, 99) <= 0.1))  # fmt: skip
    rows.append(Row(f"search, store: FTS5 trigram ({docs})", ms(fts), f"LIKE scan: {ms(like)}", "faster than the scan",
                    percentile(fts, 50) < percentile(like, 50)))  # fmt: skip
    rows.append(Row(f"start, building the index ({docs})", f"{first:.1f} s", f"with the index: {second:.1f} s", "—",
                    None))  # fmt: skip
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="meshpad-bench-") as work:
        print(table(rows_search(Path(work), args.quick)))


if __name__ == "__main__":
    main()
