"""Spaces from the command line, with real processes: ``meshpad invite
--space NAME [--read-only]`` prints an invite for that space alone, and
``meshpad serve --join INVITE`` joins it at start (and again after a
restart, without the invite)."""

from __future__ import annotations

import os
import subprocess
import sys

from processes import Peer
from waiting import wait_for_blocking as wait_for

MESHPAD = [sys.executable, "-m", "server"]


def invite(peer: Peer, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MESHPAD_")}
    return subprocess.run(
        [*MESHPAD, "invite", "--data-dir", str(peer.data_dir), *args],
        capture_output=True, text=True, env=env, timeout=60,
    )  # fmt: skip


def spaces(peer: Peer) -> dict[str, dict]:
    return {s["name"]: s for s in peer.get("/api/spaces")}


def test_invite_to_one_space_and_join_it_at_start(tmp_path):
    a = Peer(tmp_path / "a", env={"MESHPAD_NETWORK_KEY": "the network of peer a only"}, args=["--name", "Ada"]).start()
    b: Peer | None = None
    try:
        assert a.post("/api/spaces", {"name": "family"}) == 201
        assert a.post("/api/docs", {"name": "soup", "space": "family", "text": "onions"}) == 201
        assert a.post("/api/docs", {"name": "budget", "space": "main", "text": "private"}) == 201
        done = invite(a, "--space", "family", "--read-only")
        assert done.returncode == 0, done.stderr
        text = done.stdout.strip()
        assert text.startswith(f"meshpad://{a.address}/") and "#" in text
        # --read-only without --space is a usage error; an unknown space fails.
        assert invite(a, "--read-only").returncode == 2
        unknown = invite(a, "--space", "nowhere")
        assert unknown.returncode == 1 and "404" in unknown.stderr
        b = Peer(
            tmp_path / "b",
            env={"MESHPAD_NETWORK_KEY": "the network of peer b only"},
            args=["--join", text, "--name", "Ben"],
        )
        b.start()
        wait_for(lambda: spaces(b).get("family", {}).get("role") == "reader", timeout=30)
        wait_for(lambda: [d["name"] for d in b.get("/api/docs?space=family")] == ["soup"], timeout=30)
        assert "budget" not in [d["name"] for d in b.get("/api/docs")]
        assert set(spaces(b)) == {"main", "family"}
        members = {m["name"]: m["role"] for m in a.get("/api/spaces/family")["members"]}
        assert members == {"Ada": "admin", "Ben": "reader"}
        # The invite was used: a restart joins nothing new, and the space stays.
        b.stop()
        b = Peer(tmp_path / "b", port=b.port, env={"MESHPAD_NETWORK_KEY": "the network of peer b only"})
        b.start()
        assert spaces(b)["family"]["role"] == "reader"
        assert a.post("/api/docs", {"name": "bread", "space": "family", "text": "flour"}) == 201
        wait_for(lambda: "bread" in [d["name"] for d in b.get("/api/docs?space=family")], timeout=30)
    finally:
        if b is not None:
            b.stop()
        a.stop()
