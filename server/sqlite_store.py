"""The default Store: one SQLite database (standard library) in the data dir.

Schema (``PRAGMA user_version`` = 1):

* ``documents(name, length, created_at, updated_at)`` — the listing;
* ``updates(seq, name, data, crc)`` — the log; ``seq`` orders it;
* ``snapshots(name, data, crc, through_seq)`` — replaces log rows ``<= through_seq``;
* ``search_docs(id, name, fingerprint)`` and ``search(text)`` — the search
  index: an FTS5 table with the trigram tokenizer (any run of three or more
  characters matches, ignoring case), its rowid the ``search_docs`` id.
  Derived data: written in the same transactions as the rest, checked
  against each document's text when the peer starts and rewritten where it
  differs, so a crash or an older Meshpad that did not keep it leaves it
  stale only until the next start. Searching never loads a document.

WAL mode with ``synchronous=FULL``: a committed batch survives a process kill
and a power cut; a write torn by a crash is discarded whole by SQLite's WAL
recovery. Every blob carries a CRC-32, so bit rot is reported, not replayed.
Any failure to read is a :class:`StoreCorrupt` naming the file. The object is
used from one thread (the store thread in ``server.storage``).
"""

from __future__ import annotations

import sqlite3
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from crdt.compaction import merge_log
from crdt.errors import StoreCorrupt, StoreError
from crdt.store import COMPACT_AFTER_UPDATES, SEARCH_MIN_CHARS, DocumentInfo, Write, text_fingerprint

DB_FILE = "meshpad.sqlite3"
SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS documents (
    name TEXT PRIMARY KEY,
    length INTEGER NOT NULL DEFAULT 0,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS updates (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL,
    data BLOB NOT NULL,
    crc INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS updates_by_name ON updates (name, seq);
CREATE TABLE IF NOT EXISTS snapshots (
    name TEXT PRIMARY KEY,
    data BLOB NOT NULL,
    crc INTEGER NOT NULL,
    through_seq INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS search_docs (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    fingerprint INTEGER NOT NULL
);
CREATE VIRTUAL TABLE IF NOT EXISTS search USING fts5(text, tokenize = 'trigram');
"""


def fts_phrase(text: str) -> str:
    """*text* as one FTS5 string: literal, whatever it holds (quotes,
    operators, column filters, stars), matched as a substring by the
    trigram tokenizer."""
    return '"' + text.replace('"', '""') + '"'


class SQLiteStore:
    def __init__(self, data_dir: Path) -> None:
        self.path = Path(data_dir) / DB_FILE
        if sqlite3.sqlite_version_info < (3, 34, 0):
            raise StoreError(f"SQLite {sqlite3.sqlite_version} is too old: the search index needs 3.34 (FTS5 trigrams)")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"{self.path.parent}: cannot create the data directory: {exc}") from exc
        try:
            self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            version = self._db.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise StoreError(f"{self.path}: written by a newer Meshpad (schema {version})")
            check = self._db.execute("PRAGMA quick_check").fetchone()[0]
            if check != "ok":
                raise StoreCorrupt(f"{self.path}: database is corrupt: {check}")
            self._db.executescript(_SCHEMA)
            self._db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
            with self._transaction():  # what the index holds of documents no longer stored
                self._db.execute(
                    "DELETE FROM search WHERE rowid IN"
                    " (SELECT id FROM search_docs WHERE name NOT IN (SELECT name FROM documents))"
                )
                self._db.execute("DELETE FROM search_docs WHERE name NOT IN (SELECT name FROM documents)")
        except sqlite3.DatabaseError as exc:
            raise StoreCorrupt(f"{self.path}: cannot open the database: {exc}") from exc
        self._log_sizes: dict[str, int] = dict(
            self._db.execute("SELECT name, COUNT(*) FROM updates GROUP BY name").fetchall()
        )

    def documents(self) -> list[DocumentInfo]:
        rows = self._query("SELECT name, length, created_at, updated_at FROM documents ORDER BY name")
        return [DocumentInfo(*row) for row in rows]

    def load(self, name: str) -> list[bytes]:
        out: list[bytes] = []
        through = 0
        for data, crc, through_seq in self._query(
            "SELECT data, crc, through_seq FROM snapshots WHERE name = ?", (name,)
        ):
            out.append(self._checked(name, data, crc, "snapshot"))
            through = through_seq
        for seq, data, crc in self._query(
            "SELECT seq, data, crc FROM updates WHERE name = ? AND seq > ? ORDER BY seq", (name, through)
        ):
            out.append(self._checked(name, data, crc, f"update {seq}"))
        return out

    def write(self, batch: Sequence[Write]) -> list[str]:
        grown: list[str] = []
        try:
            with self._transaction():
                for w in batch:
                    if w.forget:
                        for table in ("updates", "snapshots", "documents"):
                            self._db.execute(f"DELETE FROM {table} WHERE name = ?", (w.name,))
                        self._unindex(w.name)
                        continue
                    if w.text is not None:
                        self._index(w.name, w.text)
                    self._db.execute(
                        "INSERT OR IGNORE INTO documents (name, length, created_at, updated_at) VALUES (?, 0, ?, ?)",
                        (w.name, w.at, w.at),
                    )
                    if w.update is not None:
                        self._db.execute(
                            "INSERT INTO updates (name, data, crc) VALUES (?, ?, ?)",
                            (w.name, w.update, zlib.crc32(w.update)),
                        )
                        self._db.execute(
                            "UPDATE documents SET updated_at = MAX(updated_at, ?) WHERE name = ?", (w.at, w.name)
                        )
                    if w.length is not None:
                        self._db.execute(
                            "UPDATE documents SET length = ?, updated_at = MAX(updated_at, ?) WHERE name = ?",
                            (w.length, w.at, w.name),
                        )
        except sqlite3.Error as exc:
            raise StoreError(f"{self.path}: write failed: {exc}") from exc
        for w in batch:
            if w.forget:
                self._log_sizes.pop(w.name, None)
            elif w.update is not None:
                size = self._log_sizes[w.name] = self._log_sizes.get(w.name, 0) + 1
                if size > COMPACT_AFTER_UPDATES and w.name not in grown:
                    grown.append(w.name)
        return grown

    def compact(self, name: str) -> None:
        rows = self._query("SELECT MAX(seq) FROM updates WHERE name = ?", (name,))
        through = rows[0][0]
        if through is None:
            return
        snapshot = merge_log(name, self.load(name))  # raises before anything is replaced
        try:
            with self._transaction():
                self._db.execute(
                    "INSERT OR REPLACE INTO snapshots (name, data, crc, through_seq) VALUES (?, ?, ?, ?)",
                    (name, snapshot, zlib.crc32(snapshot), through),
                )
                self._db.execute("DELETE FROM updates WHERE name = ? AND seq <= ?", (name, through))
        except sqlite3.Error as exc:
            raise StoreError(f"{self.path}: compaction of {name!r} failed: {exc}") from exc
        self._log_sizes[name] = self._db.execute("SELECT COUNT(*) FROM updates WHERE name = ?", (name,)).fetchone()[0]

    def search(self, text: str) -> list[str]:
        text = text.replace("\x00", "")
        if len(text) < SEARCH_MIN_CHARS:
            return []
        rows = self._query(
            "SELECT d.name FROM search JOIN search_docs AS d ON d.id = search.rowid WHERE search MATCH ?",
            (fts_phrase(text),),
        )
        return sorted(row[0] for row in rows)

    def indexed(self) -> dict[str, int]:
        return dict(self._query("SELECT name, fingerprint FROM search_docs"))

    def close(self) -> None:
        self._db.close()

    # -- helpers ---------------------------------------------------------------

    def _index(self, name: str, text: str) -> None:
        row = self._db.execute("SELECT id FROM search_docs WHERE name = ?", (name,)).fetchone()
        fingerprint = text_fingerprint(text)
        if row is None:
            cursor = self._db.execute("INSERT INTO search_docs (name, fingerprint) VALUES (?, ?)", (name, fingerprint))
            self._db.execute("INSERT INTO search (rowid, text) VALUES (?, ?)", (cursor.lastrowid, text))
        else:
            self._db.execute("UPDATE search_docs SET fingerprint = ? WHERE id = ?", (fingerprint, row[0]))
            self._db.execute("UPDATE search SET text = ? WHERE rowid = ?", (text, row[0]))

    def _unindex(self, name: str) -> None:
        row = self._db.execute("SELECT id FROM search_docs WHERE name = ?", (name,)).fetchone()
        if row is not None:
            self._db.execute("DELETE FROM search WHERE rowid = ?", (row[0],))
            self._db.execute("DELETE FROM search_docs WHERE id = ?", (row[0],))

    def _checked(self, name: str, data: bytes, crc: int, what: str) -> bytes:
        if zlib.crc32(data) != crc:
            raise StoreCorrupt(f"{self.path}: document {name!r}: {what} fails its checksum")
        return bytes(data)

    def _query(self, sql: str, args: tuple[object, ...] = ()) -> list[Any]:
        try:
            return self._db.execute(sql, args).fetchall()
        except sqlite3.DatabaseError as exc:
            raise StoreCorrupt(f"{self.path}: cannot read: {exc}") from exc

    def _transaction(self) -> _Transaction:
        return _Transaction(self._db)


class _Transaction:
    """BEGIN IMMEDIATE … COMMIT, or ROLLBACK on any error."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def __enter__(self) -> None:
        self._db.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if exc_type is None:
            self._db.execute("COMMIT")
        else:
            self._db.execute("ROLLBACK")
