"""Only peers holding the network key get in: a peer with another key learns
nothing and changes nothing; an invite carries the key; keys are private files."""

from __future__ import annotations

import os
import stat
import subprocess
import sys

import pytest
from processes import Peer
from waiting import wait_for_blocking

pytestmark = pytest.mark.slow


def get(peer: Peer, path: str):
    return peer.get(path)


def create(peer: Peer, name: str, text: str) -> None:
    peer.post("/api/docs", {"name": name, "text": text})


def test_peer_with_another_key_learns_nothing(tmp_path):
    a = Peer(tmp_path / "a", env={"MESHPAD_NETWORK_KEY": "network number one"}).start()
    create(a, "secret-a", "only for network one")
    b = Peer(tmp_path / "b", env={"MESHPAD_NETWORK_KEY": "network number two"}, args=["--join", a.address]).start()
    create(b, "secret-b", "only for network two")
    try:
        wait_for_blocking(lambda: get(a, "/healthz")["peer_links_refused"] >= 2, what="a refuses b's attempts")
        assert [d["name"] for d in get(a, "/api/docs")] == ["secret-a"]
        assert [d["name"] for d in get(b, "/api/docs")] == ["secret-b"]
        assert get(a, "/api/docs/secret-a")["text"] == "only for network one"
        assert get(b, "/api/docs/secret-b")["text"] == "only for network two"
        assert not [r for r in get(a, "/api/peers") if r["state"] == "connected"]
        assert not [r for r in get(b, "/api/peers") if r["state"] == "connected"]
        assert "refused link from 127.0.0.1" in a.log()
        # b keeps trying with backoff; after three refusals a bans the address.
        wait_for_blocking(lambda: "banned for" in a.log(), 30, what="a bans the address")
    finally:
        b.stop()
        a.stop()


def test_invite_carries_the_key_and_keys_are_private(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "MESHPAD_NETWORK_KEY"}
    a = Peer(tmp_path / "a", env={"MESHPAD_NETWORK_KEY": ""}).start()
    try:
        for name in ("network-key", "identity-key", "browser-token"):
            mode = stat.S_IMODE((a.data_dir / name).stat().st_mode)
            assert mode == 0o600, f"{name} has mode {oct(mode)}"
        invite = subprocess.run(
            [sys.executable, "-m", "server", "invite", "--data-dir", str(a.data_dir), "--address", a.address],
            capture_output=True, text=True, env=env, check=True,
        ).stdout.strip()  # fmt: skip
        assert invite.startswith(f"meshpad://{a.address}#")
        assert invite.split("#", 1)[1] == (a.data_dir / "network-key").read_text().strip()
        create(a, "shared", "reached through an invite")
        b = Peer(tmp_path / "b", env={"MESHPAD_NETWORK_KEY": ""}, args=["--join", invite]).start()
        try:
            wait_for_blocking(
                lambda: any(d["name"] == "shared" for d in get(b, "/api/docs")), what="b receives a's document"
            )
            assert get(b, "/api/docs/shared")["text"] == "reached through an invite"
            assert (b.data_dir / "network-key").read_text() == (a.data_dir / "network-key").read_text()
        finally:
            b.stop()
    finally:
        a.stop()
