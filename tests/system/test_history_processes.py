"""History with real processes: a version named on one peer survives a
destructive edit on another and is restored everywhere; names and restores
survive kill -9."""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request

import pytest
from processes import Peer
from waiting import wait_for_blocking

pytestmark = pytest.mark.slow


def call(peer: Peer, method: str, path: str, body: dict | None = None) -> tuple[int, dict]:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(
        peer.url + path, data=data, method=method, headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def text(peer: Peer, name: str) -> str | None:
    status, body = call(peer, "GET", f"/api/docs/{name}")
    return body["text"] if status == 200 else None


def test_a_version_named_on_a_is_restored_over_junk_typed_on_b(tmp_path):
    a = Peer(tmp_path / "a").start()
    b = Peer(tmp_path / "b", args=["--join", a.address]).start()
    try:
        good = "The paragraph we want to keep, ünïcode and all 😀.\n"
        assert call(a, "POST", "/api/docs", {"name": "doc", "text": good})[0] == 201
        status, named = call(a, "POST", "/api/docs/doc/versions", {"label": "keep", "author": {"name": "Ann"}})
        assert status == 201
        wait_for_blocking(lambda: text(b, "doc") == good, what="b receives the text")
        # On B: delete everything and type junk (as a browser does).
        junk_version = _junk(b)
        wait_for_blocking(lambda: text(a, "doc") == "junk junk", what="a receives b's junk")
        # On A: restore the named version.
        status, restored = call(a, "POST", "/api/docs/doc/restore", {"version": named["id"], "author": {"name": "Ann"}})
        assert status == 200
        wait_for_blocking(lambda: text(a, "doc") == good and text(b, "doc") == good, what="both show the named text")
        for peer in (a, b):
            wait_for_blocking(lambda p=peer: restored["id"] in _ids(p), what="the restore in the history")
            listing = call(peer, "GET", "/api/docs/doc/history")[1]["versions"]
            kinds = {v["id"]: v["kind"] for v in listing}
            assert kinds[restored["id"]] == "restore" and kinds[named["id"]] == "named" and junk_version in kinds
        # B opens A's named version by its id.
        status, opened = call(b, "GET", f"/api/docs/doc/versions/{named['id']}")
        assert status == 200 and opened["text"] == good and opened["label"] == "keep"
    finally:
        b.stop()
        a.stop()


def _ids(peer: Peer) -> set[str]:
    return {v["id"] for v in call(peer, "GET", "/api/docs/doc/history")[1]["versions"]}


def _junk(peer: Peer) -> str:
    """Type junk over everything on *peer*, through a browser connection."""
    import asyncio

    import aiohttp
    from waiting import wait_for
    from yclient import YClient

    async def go() -> None:
        async with aiohttp.ClientSession() as http:
            y = await YClient.connect(http, f"{peer.url}/ws/doc?acks=1", 31337)
            await wait_for(lambda: y.synced, what="sync")
            n = len(y.content.encode())
            await y.delete(0, n)
            last = await y.insert(0, "junk junk")
            await wait_for(lambda: y.saved >= last, what="saved")
            await y.close()

    asyncio.run(go())
    status, body = call(peer, "POST", "/api/docs/doc/versions", {"label": "junk"})
    assert status == 201
    return body["id"]


def test_names_and_restores_survive_kill_9(tmp_path):
    a = Peer(tmp_path / "a").start()
    answered: list[tuple[str, str]] = []  # (kind, id) the peer said it stored
    stop = threading.Event()

    def work() -> None:
        n = 0
        while not stop.is_set():
            n += 1
            try:
                status, body = call(a, "POST", "/api/docs/k/versions", {"label": f"v{n}"})
                if status == 201:
                    answered.append(("named", body["id"]))
                if answered and n % 3 == 0:
                    status, body = call(a, "POST", "/api/docs/k/restore", {"version": answered[0][1]})
                    if status == 200:
                        answered.append(("restore", body["id"]))
            except (OSError, ValueError):
                return  # the peer is gone

    try:
        assert call(a, "POST", "/api/docs", {"name": "k", "text": "start\n"})[0] == 201
        worker = threading.Thread(target=work)
        worker.start()
        wait_for_blocking(lambda: len(answered) >= 25, what="versions named and restored")
        a.kill()
        stop.set()
        worker.join(timeout=20)
        a.start()
        listing = call(a, "GET", "/api/docs/k/history")[1]["versions"]
        listed = {v["id"]: v["kind"] for v in listing}
        for kind, vid in answered:
            assert vid in listed, f"{kind} {vid} was answered, and lost"
        for vid in listed:
            status, body = call(a, "GET", f"/api/docs/k/versions/{vid}")
            assert status == 200, body
            assert body["text"] == "start\n"
    finally:
        stop.set()
        a.stop()
