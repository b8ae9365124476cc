"""SQLiteStore runs the Store contract, plus what only a file can do wrong:
torn WAL writes, a file that is not a database, bit rot in a blob.

A crash is simulated without killing anything: while the store is open, its
database and write-ahead log are copied (what a kill -9 leaves on disk), the
copied WAL is cut in the middle of the last transaction's frames (the part
the OS never wrote), and the copy is opened as a restarted peer would."""

from __future__ import annotations

import shutil
import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import closing
from pathlib import Path

import pytest
from contract import StoreContract, edits, fingerprint

from crdt.errors import StoreCorrupt, StoreError
from crdt.store import Store, Write
from server.sqlite_store import DB_FILE, SQLiteStore

WAL_HEADER = 32
FRAME_HEADER = 24


def wal_of(data_dir: Path) -> Path:
    return data_dir / (DB_FILE + "-wal")


class SQLiteHarness:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.opened: list[SQLiteStore] = []
        self.crashes = 0

    def open(self, data_dir: Path | None = None) -> SQLiteStore:
        store = SQLiteStore(data_dir or self.root / "data")
        self.opened.append(store)
        return store

    def reopen(self, store: Store) -> Store:
        assert isinstance(store, SQLiteStore)
        store.close()
        return self.open(store.path.parent)

    def crash_tearing(self, store: Store, batch: Sequence[Write]) -> Store:
        assert isinstance(store, SQLiteStore)
        start = wal_of(store.path.parent).stat().st_size
        store.write(batch)
        end = wal_of(store.path.parent).stat().st_size
        assert end > start, "the batch must have gone to the WAL"
        return self.open(self.crash_copy(store, cut_at=(start + end) // 2))

    def crash_copy(self, store: SQLiteStore, cut_at: int | None) -> Path:
        """Copy the open store's files as a crash leaves them, the WAL cut
        at byte *cut_at* (or whole)."""
        self.crashes += 1
        target = self.root / f"crash-{self.crashes}"
        target.mkdir()
        shutil.copyfile(store.path, target / DB_FILE)
        shutil.copyfile(wal_of(store.path.parent), wal_of(target))
        if cut_at is not None:
            with open(wal_of(target), "r+b") as wal:
                wal.truncate(cut_at)
        return target

    def close_all(self) -> None:
        for store in self.opened:
            store.close()


@pytest.fixture
def sqlite_harness(tmp_path: Path) -> Iterator[SQLiteHarness]:
    harness = SQLiteHarness(tmp_path)
    yield harness
    harness.close_all()


class TestSQLiteStore(StoreContract):
    @pytest.fixture
    def harness(self, sqlite_harness: SQLiteHarness) -> SQLiteHarness:
        return sqlite_harness


# -- crashes -------------------------------------------------------------------


def test_a_crash_at_any_point_of_the_last_commit_loses_exactly_that_commit(sqlite_harness: SQLiteHarness) -> None:
    store = sqlite_harness.open()
    updates, texts = edits(30, seed=1)
    store.write([Write("doc", u, at=1.0) for u in updates[:20]])  # batch A
    start = wal_of(store.path.parent).stat().st_size
    # Batch B spans several pages: big enough to need overflow pages.
    store.write([Write("doc", u, at=2.0) for u in updates[20:]] + [Write("blob", b"\x5a" * 20_000, at=2.0)])
    end = wal_of(store.path.parent).stat().st_size
    with closing(sqlite3.connect(store.path)) as db:
        page = db.execute("PRAGMA page_size").fetchone()[0]
    frame = FRAME_HEADER + page
    assert (end - start) // frame >= 4
    cuts = sorted({*range(start, end, frame), *range(start + frame // 2, end, frame), end - 1})
    for cut in cuts:
        torn = sqlite_harness.open(sqlite_harness.crash_copy(store, cut_at=cut))
        assert torn.load("doc") == updates[:20], cut
        assert torn.load("blob") == []
        assert fingerprint(torn.load("doc"))[0] == texts[19]
    whole = sqlite_harness.open(sqlite_harness.crash_copy(store, cut_at=None))
    assert whole.load("doc") == updates  # control: an intact WAL keeps batch B
    assert whole.load("blob") == [b"\x5a" * 20_000]


# -- corruption ----------------------------------------------------------------


@pytest.mark.parametrize(
    "content",
    [b"this is not a database, just text\n" * 200, b"short", b"SQLite format 3\x00" + b"\xff" * 200],
    ids=["text", "short", "bad-header"],
)
def test_a_file_that_is_not_a_database_is_reported_with_its_path(tmp_path: Path, content: bytes) -> None:
    (tmp_path / DB_FILE).write_bytes(content)
    with pytest.raises(StoreCorrupt) as refused:
        SQLiteStore(tmp_path)
    assert str(tmp_path / DB_FILE) in str(refused.value)


def _flip_a_byte(db_file: Path, table: str) -> None:
    db = sqlite3.connect(db_file)
    try:
        rowid, data = db.execute(f"SELECT rowid, data FROM {table} ORDER BY rowid LIMIT 1").fetchone()
        flipped = bytearray(data)
        flipped[len(flipped) // 2] ^= 0x10
        db.execute(f"UPDATE {table} SET data = ? WHERE rowid = ?", (bytes(flipped), rowid))
        db.commit()
    finally:
        db.close()


def test_a_flipped_byte_in_an_update_is_reported_with_the_file(sqlite_harness: SQLiteHarness) -> None:
    store = sqlite_harness.open()
    updates, _ = edits(5)
    store.write([Write("doc", u) for u in updates])
    store.write([Write("other", updates[0])])
    store.close()
    _flip_a_byte(store.path, "updates")
    reopened = sqlite_harness.open(store.path.parent)
    with pytest.raises(StoreCorrupt) as refused:
        reopened.load("doc")
    assert str(store.path) in str(refused.value)
    assert reopened.load("other") == [updates[0]]  # the rest stays readable


def test_a_flipped_byte_in_a_snapshot_is_reported_with_the_file(sqlite_harness: SQLiteHarness) -> None:
    store = sqlite_harness.open()
    updates, _ = edits(20)
    store.write([Write("doc", u) for u in updates])
    store.compact("doc")
    store.close()
    _flip_a_byte(store.path, "snapshots")
    reopened = sqlite_harness.open(store.path.parent)
    with pytest.raises(StoreCorrupt) as refused:
        reopened.load("doc")
    assert str(store.path) in str(refused.value)
    reopened.write([Write("doc", updates[0])])
    with pytest.raises(StoreCorrupt):
        reopened.compact("doc")  # never folds unreadable data into a new snapshot


def test_unknown_documents_load_as_empty(sqlite_harness: SQLiteHarness) -> None:
    store = sqlite_harness.open()
    store.write([Write("known", edits(1)[0][0])])
    assert store.load("unknown") == []
    assert store.load("") == []


def test_a_database_from_a_newer_version_is_refused(sqlite_harness: SQLiteHarness) -> None:
    store = sqlite_harness.open()
    store.close()
    db = sqlite3.connect(store.path)
    db.execute("PRAGMA user_version = 99")
    db.close()
    with pytest.raises(StoreError) as refused:
        sqlite_harness.open(store.path.parent)
    assert str(store.path) in str(refused.value)


def test_the_data_directory_is_created(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "a" / "b")
    try:
        assert (tmp_path / "a" / "b" / DB_FILE).exists()
    finally:
        store.close()
