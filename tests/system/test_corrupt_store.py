"""A store that cannot be read is a clear error naming the file, never an
empty document."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import urllib.error
import urllib.request

import pytest
from processes import Peer

pytestmark = pytest.mark.slow


def test_unreadable_database_stops_the_peer_with_the_file_name(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    db = data / "meshpad.sqlite3"
    db.write_bytes(b"this is not a database" * 500)
    proc = subprocess.run(
        [sys.executable, "-m", "server", "serve", "--port", "0", "--data-dir", str(data)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 1
    assert str(db) in proc.stderr
    assert "Meshpad peer: open" not in proc.stdout
    assert db.read_bytes() == b"this is not a database" * 500  # left as it was


def test_damaged_document_is_an_error_not_an_empty_text(tmp_path):
    peer = Peer(tmp_path / "data").start()
    req = urllib.request.Request(
        peer.url + "/api/docs", data=b'{"name": "d", "text": "precious"}', headers={"Content-Type": "application/json"}
    )
    urllib.request.urlopen(req).close()
    peer.stop()
    db = tmp_path / "data" / "meshpad.sqlite3"
    with sqlite3.connect(db) as conn:
        (rowid, blob) = conn.execute("SELECT seq, data FROM updates WHERE name = 'd'").fetchone()
        damaged = bytes(blob[:-3]) + bytes([blob[-3] ^ 0xFF]) + bytes(blob[-2:])
        conn.execute("UPDATE updates SET data = ? WHERE seq = ?", (damaged, rowid))
    peer.start()
    try:
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(peer.url + "/api/docs/d")
        assert err.value.code == 500
        assert str(db) in err.value.read().decode()
    finally:
        peer.stop()
