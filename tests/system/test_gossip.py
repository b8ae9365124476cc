"""Several real ``meshpad serve`` processes on loopback, joined through one
address: replication, peer exchange, kill -9 and restart, a paused process
standing for a partition, offline edit-then-merge, a dial-out-only peer, and
cursors between peers."""

from __future__ import annotations

import json
import random
import re
import urllib.error
import urllib.request

import aiohttp
import pytest
from processes import Peer
from waiting import wait_for
from yclient import YClient, awareness_frame

pytestmark = pytest.mark.slow


def get(peer: Peer, path: str):
    return peer.get(path)


def post(peer: Peer, path: str, body: dict) -> int:
    return peer.post(path, body)


def text_of(peer: Peer, name: str) -> str | None:
    try:
        return get(peer, f"/api/docs/{name}")["text"]
    except OSError:
        return None


async def converge(peers: list[Peer], name: str, timeout: float = 20.0, expect: str | None = None) -> str:
    def same() -> bool:
        texts = {text_of(p, name) for p in peers}
        return len(texts) == 1 and None not in texts and (expect is None or texts == {expect})

    await wait_for(same, timeout=timeout, what=f"{name} identical on {len(peers)} peers")
    return text_of(peers[0], name) or ""


@pytest.fixture
def cluster(tmp_path):
    started: list[Peer] = []

    def start(name: str, *args: str) -> Peer:
        peer = Peer(tmp_path / name, args=list(args)).start()
        started.append(peer)
        return peer

    yield start
    for peer in started:
        peer.stop()


async def test_join_through_one_address_replicates_everywhere(cluster):
    a = cluster("a")
    others = [cluster(n, "--join", a.address) for n in "bcd"]
    peers = [a, *others]
    # Peer exchange: every peer learns every other, though each only knew a.
    await wait_for(
        lambda: all(sum(1 for r in get(p, "/api/peers") if r["state"] == "connected") == 3 for p in peers),
        timeout=20,
        what="a full mesh of 4",
    )
    # A document created anywhere appears everywhere, with its text.
    assert post(others[2], "/api/docs", {"name": "made-on-d", "text": "hello from d"}) == 201
    await converge(peers, "made-on-d", expect="hello from d")
    # Edits from a browser-protocol client on b reach a client on c.
    async with aiohttp.ClientSession() as http:
        on_b = await YClient.connect(http, f"{others[0].url}/ws/made-on-d", 501)
        on_c = await YClient.connect(http, f"{others[1].url}/ws/made-on-d", 502)
        await wait_for(lambda: on_b.synced and on_c.synced)
        await on_b.insert(0, ">> ")
        await wait_for(lambda: on_c.content == ">> hello from d", what="c sees b's edit")
        # Cursors travel too, and leave when the tab closes.
        await on_b.send(awareness_frame([(501, 1, {"user": {"name": "Bea"}})]))
        await wait_for(lambda: 501 in on_c.present(), what="c sees bea's cursor")
        await on_b.close()
        await wait_for(lambda: 501 not in on_c.present(), timeout=3, what="bea's cursor gone on c")
        await on_c.close()
    rows = get(a, "/api/peers")
    assert {"id", "address", "state", "push", "rtt_ms", "bytes_in", "bytes_out", "in_sync"} <= set(rows[0])

    # b's edit went out on its three links and each peer passed it on: the
    # copies that came twice pruned links, and pushes now take a tree.
    def eager_ends() -> int:
        return sum(r["push"] == "eager" for p in peers for r in get(p, "/api/peers") if r["state"] == "connected")

    await wait_for(lambda: eager_ends() < 12, timeout=5, what="some of the 12 link ends lazy")


async def test_kill_9_pause_and_restart(cluster):
    a = cluster("a")
    b = cluster("b", "--join", a.address)
    c = cluster("c", "--join", a.address)
    d = cluster("d", "--join", a.address)
    assert post(b, "/api/docs", {"name": "log", "text": "start."}) == 201
    await converge([a, b, c, d], "log", expect="start.")
    await wait_for(lambda: len(get(c, "/api/peers")) >= 3, what="c knows b and d")
    # The peer everyone joined through dies: the others keep replicating.
    a.kill()
    assert post(b, "/api/docs", {"name": "after-a", "text": "a is gone"}) == 201
    await converge([b, c, d], "after-a", expect="a is gone")
    # A paused process stands for a partition; the rest go on without it.
    d.pause()
    async with aiohttp.ClientSession() as http:
        client = await YClient.connect(http, f"{b.url}/ws/log", 601)
        await wait_for(lambda: client.synced)
        await client.insert(len(client.text), " while d slept.")
        await client.close()
    await converge([b, c], "log", expect="start. while d slept.")
    await wait_for(
        lambda: all(
            r["state"] != "connected" or r["id"] is None for r in get(b, "/api/peers") if r["address"] == d.address
        ),
        timeout=15,
        what="b notices d is gone",
    )
    d.resume()
    # a comes back with no --join: it remembers its peers and catches up.
    a.args = []
    a.start()
    await converge([a, b, c, d], "log", expect="start. while d slept.")
    await converge([a, b, c, d], "after-a", expect="a is gone")


async def test_offline_edits_merge_with_inserts_and_deletes(cluster, tmp_path):
    a = cluster("a")
    b = cluster("b", "--join", a.address)
    base = "".join(f"[{i:02d}]" for i in range(30))
    assert post(a, "/api/docs", {"name": "merge", "text": base}) == 201
    await converge([a, b], "merge", expect=base)
    b.wait_durable()  # b only relayed the text: it commits it within RELAYED_COMMIT_DELAY
    # The link goes away: both are stopped, forget each other, restart alone.
    for peer in (a, b):
        peer.kill()
        (peer.data_dir / "peers.json").unlink()
        peer.args = []
        peer.start()
    rng = random.Random(3)
    inserted: list[str] = []
    deleted: set[str] = set()
    async with aiohttp.ClientSession() as http:
        for side, peer in (("A", a), ("B", b)):
            client = await YClient.connect(http, f"{peer.url}/ws/merge", 700 + ord(side))
            await wait_for(lambda c=client: c.synced)
            for k in range(15):
                text = client.content
                if rng.random() < 0.4:
                    # delete one whole token that nobody else touched
                    live = [t for t in (f"[{i:02d}]" for i in range(30)) if t in text and t not in deleted]
                    victim = rng.choice(live)
                    start = text.index(victim)
                    await client.delete(start, start + len(victim))
                    deleted.add(victim)
                else:
                    token = f"<{side}{k}>"
                    cut = [m.end() for m in re.finditer(r"[\]>]", text)]
                    await client.insert(rng.choice([0, *cut]), token)
                    inserted.append(token)
            await client.close()
        # Restart both sides while still apart.
        a.kill()
        a.start()
        b.kill()
        b.start()
    assert text_of(a, "merge") != text_of(b, "merge")
    # The link comes back.
    assert post(b, "/api/peers", {"address": a.address}) == 202
    merged = await converge([a, b], "merge")
    for token in inserted:
        assert token in merged, f"insert {token} lost"
    for token in deleted:
        assert token not in merged, f"delete of {token} lost"


async def test_dial_out_only_peer_sends_and_receives(cluster):
    a = cluster("a")
    b = cluster("b", "--join", a.address)
    nat = cluster("nat", "--join", a.address, "--advertise", "none")
    await wait_for(lambda: any(r["state"] == "connected" for r in get(nat, "/api/peers")), what="nat linked")
    assert post(nat, "/api/docs", {"name": "from-nat", "text": "outbound only"}) == 201
    await converge([a, b, nat], "from-nat", expect="outbound only")
    assert post(b, "/api/docs", {"name": "to-nat", "text": "reaches it"}) == 201
    await converge([a, b, nat], "to-nat", expect="reaches it")
    # Nobody has its address: nothing but its own dial links it.
    for peer in (a, b):
        assert all(r["address"] != nat.address for r in get(peer, "/api/peers"))


def test_bad_peer_address_is_refused(cluster):
    a = cluster("a")
    for bad in ["", "nohost", "host:notaport", "a b:1", "x:99999"]:
        req = urllib.request.Request(
            a.url + "/api/peers",
            data=json.dumps({"address": bad}).encode(),
            headers={"Content-Type": "application/json"},
        )
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(req, timeout=5)
        assert err.value.code == 400
