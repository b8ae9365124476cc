"""A document's life with real ``meshpad serve`` processes: a delete that a
peer missed while it was away and editing, a rename made while a peer was
down, a delete forever that reaches a peer still holding the document, and
two renames made apart."""

from __future__ import annotations

import asyncio
import http.client
import json
import sqlite3
import urllib.error
import urllib.request
from pathlib import Path

import aiohttp
import pytest
from processes import Peer, free_port
from waiting import wait_for, wait_for_blocking
from yclient import YClient

pytestmark = pytest.mark.slow

DEADLINE = 25.0  # seconds for anything to spread between peers


def call(peer: Peer, method: str, path: str, body: dict | None = None) -> tuple[int, object]:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(
        peer.url + path, data=data, method=method, headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read() or b"null")


def text(peer: Peer, name: str) -> str | None:
    status, body = call(peer, "GET", f"/api/docs/{name}")
    return body["text"] if status == 200 else None  # type: ignore[index]


def live(peer: Peer) -> set[str]:
    return {d["name"] for d in peer.get("/api/docs")}


def trash(peer: Peer) -> dict[str, dict]:
    return {e["name"]: e for e in peer.get("/api/trash")}


def page(peer: Peer, path: str) -> tuple[int, str | None]:
    """GET a page without following a redirect: (status, Location)."""
    conn = http.client.HTTPConnection(peer.host, peer.port, timeout=10)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        resp.read()
        return resp.status, resp.getheader("Location")
    finally:
        conn.close()


def connected(peer: Peer) -> int:
    return sum(r["state"] == "connected" for r in peer.get("/api/peers"))


def store_rows(data_dir: Path, key: str) -> dict[str, int]:
    """How many rows of *key* each table of a stopped peer's store holds."""
    db = sqlite3.connect(data_dir / "meshpad.sqlite3")
    try:
        return {
            table: db.execute(f"SELECT COUNT(*) FROM {table} WHERE name = ?", (key,)).fetchone()[0]
            for table in ("documents", "updates", "snapshots")
        }
    finally:
        db.close()


def type_into(peer: Peer, name: str, words: str, client_id: int) -> str:
    """Append *words* to *name* on *peer* as a browser does, and wait until
    the peer says it is saved; returns the text the client then holds."""

    async def go() -> str:
        async with aiohttp.ClientSession() as session:
            y = await YClient.connect(session, f"{peer.url}/ws/{name}?acks=1", client_id)
            await wait_for(lambda: y.synced, what=f"{name} synced on {peer.address}")
            assert y.content, f"{name} is empty on {peer.address}: the client did not get the old copy"
            frame = await y.insert(len(y.content.encode()), words)
            await wait_for(lambda: y.saved >= frame, what=f"{words!r} saved on {peer.address}")
            content = y.content
            await y.close()
            return content

    return asyncio.run(go())


def alone(peer: Peer) -> None:
    """Restart a stopped *peer* knowing no other peer, on a new port, so that
    nobody who remembers it can dial it either."""
    (peer.data_dir / "peers.json").unlink()  # what it remembers (server.identity)
    peer.args = []
    peer.port = free_port()
    peer.start()


@pytest.fixture
def cluster(tmp_path):
    started: list[Peer] = []

    def start(name: str, *args: str) -> Peer:
        peer = Peer(tmp_path / name, args=list(args)).start()
        started.append(peer)
        return peer

    try:
        yield start
    finally:
        for peer in started:
            peer.stop()


def test_delete_missed_by_an_editing_peer_wins_and_keeps_its_edit(cluster):
    a = cluster("a")
    b = cluster("b", "--join", a.address)
    c = cluster("c", "--join", a.address)
    peers = [a, b, c]
    wait_for_blocking(lambda: all(connected(p) == 2 for p in peers), DEADLINE, what="a full mesh of 3")
    base = "The plan: step one.\n"
    assert call(a, "POST", "/api/docs", {"name": "plan", "text": base})[0] == 201
    wait_for_blocking(lambda: all(text(p, "plan") == base for p in peers), DEADLINE, what="plan on all three")
    c.wait_durable()
    c.stop()

    status, deleted = call(a, "DELETE", "/api/docs/plan", {"author": {"name": "Ann"}})
    assert status == 200, deleted
    assert call(a, "GET", "/api/docs/plan")[0] == 404
    wait_for_blocking(lambda: "plan" in trash(b), DEADLINE, what="b lists plan in its Trash")
    assert "plan" not in live(b)
    assert trash(b)["plan"]["changed_after_delete"] is False

    # C comes back alone, still holding its old, live copy, and edits it.
    alone(c)
    assert "plan" in live(c) and "plan" not in trash(c)
    edited = type_into(c, "plan", "Step two, typed on C.\n", 4242)
    assert edited == base + "Step two, typed on C.\n"
    assert text(c, "plan") == edited
    assert connected(c) == 0, "c heard of another peer before it joined"

    # C joins: the delete it did not see wins, and its edit is in the trashed copy.
    assert call(c, "POST", "/api/peers", {"address": a.address})[0] == 202

    def trashed_everywhere_with_the_edit() -> bool:
        for p in peers:
            entry = trash(p).get("plan")
            if entry is None or not entry["changed_after_delete"] or "plan" in live(p):
                return False
        return True

    wait_for_blocking(
        trashed_everywhere_with_the_edit,
        DEADLINE,
        what=lambda: (
            "plan trashed and changed after delete on all three: " + repr([(live(p), trash(p)) for p in peers])
        ),
    )
    for p in peers:
        assert call(p, "GET", "/api/docs/plan")[0] == 404
        assert trash(p)["plan"]["deleted_by"] == "Ann"

    # A restore on B brings it back on all three, with C's edit.
    status, restored = call(b, "POST", "/api/trash/plan/restore")
    assert status == 200 and restored["name"] == "plan", restored  # type: ignore[index]
    wait_for_blocking(
        lambda: all(text(p, "plan") == edited and "plan" not in trash(p) for p in peers),
        DEADLINE,
        what=lambda: f"plan restored with C's edit: {[text(p, 'plan') for p in peers]}",
    )


def test_rename_made_while_a_peer_is_down_reaches_it(cluster):
    a = cluster("a")
    b = cluster("b", "--join", a.address)
    body = "A draft that will be final.\n"
    assert call(a, "POST", "/api/docs", {"name": "draft", "text": body})[0] == 201
    wait_for_blocking(lambda: text(b, "draft") == body, DEADLINE, what="draft on b")
    b.wait_durable()
    b.stop()

    status, renamed = call(a, "POST", "/api/docs/draft/rename", {"name": "final"})
    assert status == 200 and renamed["name"] == "final", renamed  # type: ignore[index]
    assert live(a) == {"final"}

    b.args = []  # it rejoins with the peers it remembers
    b.start()
    wait_for_blocking(lambda: live(b) == {"final"}, DEADLINE, what=lambda: f"b lists final, not draft: {live(b)}")
    for p in (a, b):
        assert page(p, "/doc/draft") == (302, "/doc/final")
        status, missing = call(p, "GET", "/api/docs/draft")
        assert status == 404 and missing["name"] == "final", missing  # type: ignore[index]
        assert text(p, "final") == body
        assert trash(p) == {}


def test_delete_forever_reaches_a_peer_that_held_the_document(cluster):
    a = cluster("a")
    b = cluster("b", "--join", a.address)
    body = "Nobody may read this.\n"
    assert call(a, "POST", "/api/docs", {"name": "secret", "text": body})[0] == 201
    assert call(a, "POST", "/api/docs", {"name": "other", "text": "stays"})[0] == 201
    wait_for_blocking(
        lambda: text(b, "secret") == body and text(b, "other") == "stays", DEADLINE, what="both documents on b"
    )
    assert call(a, "DELETE", "/api/docs/secret")[0] == 200
    wait_for_blocking(lambda: "secret" in trash(b), DEADLINE, what="b lists secret in its Trash")
    b.wait_durable()
    b.stop()
    held = store_rows(b.data_dir, "secret")
    assert held["documents"] == 1 and held["updates"] + held["snapshots"] > 0, held

    status, forgot = call(a, "DELETE", "/api/trash/secret")
    assert status == 200 and forgot == {"name": "secret", "deleted_forever": True}, forgot
    assert "secret" not in live(a) and "secret" not in trash(a)

    b.args = []  # it rejoins with the peers it remembers, holding secret in its Trash
    b.start()

    def gone_everywhere() -> bool:
        return all("secret" not in live(p) and "secret" not in trash(p) for p in (a, b))

    wait_for_blocking(gone_everywhere, DEADLINE, what=lambda: f"secret gone: {[(live(p), trash(p)) for p in (a, b)]}")
    for p in (a, b):
        assert call(p, "GET", "/api/docs/secret")[0] == 404
        assert call(p, "POST", "/api/trash/secret/restore")[0] == 404
        assert text(p, "other") == "stays"
    b.wait_durable()
    b.stop()
    assert store_rows(b.data_dir, "secret") == {"documents": 0, "updates": 0, "snapshots": 0}
    a.stop()
    assert store_rows(a.data_dir, "secret") == {"documents": 0, "updates": 0, "snapshots": 0}


def renamed_apart(cluster) -> tuple[Peer, Peer, str, str, str]:
    """A and B both hold "memo"; apart, A renames it "alpha" and B "beta";
    then they join. Returns (a, b, the text, the name both show, the other)."""
    a = cluster("a")
    b = cluster("b", "--join", a.address)
    body = "One memo, two names.\n"
    assert call(a, "POST", "/api/docs", {"name": "memo", "text": body})[0] == 201
    wait_for_blocking(lambda: text(b, "memo") == body, DEADLINE, what="memo on b")
    b.wait_durable()
    # Both stop, forget each other and come back alone: a partition with both up.
    for p in (a, b):
        p.stop()
    for p in (a, b):
        alone(p)
    assert call(a, "POST", "/api/docs/memo/rename", {"name": "alpha"})[0] == 200
    assert call(b, "POST", "/api/docs/memo/rename", {"name": "beta"})[0] == 200
    assert live(a) == {"alpha"} and live(b) == {"beta"}
    assert connected(a) == 0 and connected(b) == 0

    assert call(b, "POST", "/api/peers", {"address": a.address})[0] == 202
    wait_for_blocking(
        lambda: live(a) == live(b) and len(live(a)) == 1 and live(a) <= {"alpha", "beta"},
        DEADLINE,
        what=lambda: f"one name on both: a {live(a)}, b {live(b)}",
    )
    (winner,) = live(a)
    return a, b, body, winner, "beta" if winner == "alpha" else "alpha"


def test_two_renames_made_apart_agree_on_one_name(cluster):
    a, b, body, winner, loser = renamed_apart(cluster)
    for p in (a, b):
        assert text(p, winner) == body
        assert text(p, loser) is None and trash(p) == {}
        assert page(p, "/doc/memo") == (302, f"/doc/{winner}")
        status, missing = call(p, "GET", "/api/docs/memo")
        assert status == 404 and missing["name"] == winner, missing  # type: ignore[index]


def test_the_name_that_lost_a_rename_conflict_redirects(cluster):
    a, b, _, winner, loser = renamed_apart(cluster)
    for p in (a, b):
        assert page(p, f"/doc/{loser}") == (302, f"/doc/{winner}"), f"/doc/{loser} on {p.address}"
        status, missing = call(p, "GET", f"/api/docs/{loser}")
        assert status == 404 and missing["name"] == winner, missing  # type: ignore[index]
