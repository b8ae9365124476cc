"""A join that cannot work says why: in ``meshpad serve``'s output, in
``GET /api/peers`` and on the Peers page (refused, timed out, wrong network
key), instead of a silent ``down``."""

from __future__ import annotations

import socket
import urllib.request

import pytest
from processes import Peer, free_port
from waiting import wait_for_blocking

pytestmark = pytest.mark.slow


def row_for(peer: Peer, address: str) -> dict:
    rows = [r for r in peer.get("/api/peers") if r["address"] == address]
    return rows[0] if rows else {}


def wait_error(peer: Peer, address: str, words: str, timeout: float = 20.0) -> dict:
    def named() -> dict:
        row = row_for(peer, address)
        return row if words in (row.get("error") or "") else {}

    return wait_for_blocking(named, timeout, what=lambda: f"error {words!r} for {address}: {row_for(peer, address)}")


def page(peer: Peer) -> str:
    with urllib.request.urlopen(peer.url + "/peers", timeout=5) as resp:
        return resp.read().decode()


def test_an_address_nobody_listens_on_is_refused(tmp_path):
    nowhere = f"127.0.0.1:{free_port()}"
    b = Peer(tmp_path / "b", args=["--join", nowhere]).start()
    try:
        row = wait_error(b, nowhere, "refused")
        assert row["state"] in ("down", "connecting")
        assert f"cannot connect to {nowhere}: refused" in b.log()
        assert "refused (nothing listens on that port)" in page(b)
        # Retries are not logged again and again.
        wait_for_blocking(lambda: row_for(b, nowhere).get("failures", 0) >= 3, what="three failed dials")
        assert b.log().count(f"cannot connect to {nowhere}") == 1
    finally:
        b.stop()


def test_an_address_that_never_answers_times_out(tmp_path):
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)  # the kernel completes connections; nobody ever answers
        address = f"127.0.0.1:{silent.getsockname()[1]}"
        b = Peer(tmp_path / "b", args=["--join", address]).start()
        try:
            wait_error(b, address, "timed out")
            assert f"cannot connect to {address}: timed out" in b.log()
            assert "timed out" in page(b)
        finally:
            b.stop()


def test_a_wrong_network_key_is_named(tmp_path):
    a = Peer(tmp_path / "a", env={"MESHPAD_NETWORK_KEY": "the network of peer a"}).start()
    b = Peer(tmp_path / "b", env={"MESHPAD_NETWORK_KEY": "some other network"}, args=["--join", a.address]).start()
    try:
        wait_error(b, a.address, "wrong network key")
        assert f"cannot connect to {a.address}: wrong network key" in b.log()
        assert "wrong network key" in page(b)
    finally:
        b.stop()
        a.stop()


def test_the_error_goes_once_the_peer_answers(tmp_path):
    port = free_port()
    address = f"127.0.0.1:{port}"
    b = Peer(tmp_path / "b", args=["--join", address]).start()
    try:
        wait_error(b, address, "refused")
        a = Peer(tmp_path / "a", port=port).start()
        try:
            wait_for_blocking(
                lambda: (
                    row_for(b, address).get("state") == "connected"
                    or any(r["state"] == "connected" for r in b.get("/api/peers"))
                ),
                40,
                what=lambda: f"a connected link: {b.get('/api/peers')}",
            )
            assert all(r["error"] is None for r in b.get("/api/peers") if r["state"] == "connected")
        finally:
            a.stop()
    finally:
        b.stop()
