"""Simulated runs: join, edit under faults, partition, crash, heal, check;
and the rounds anti-entropy alone takes to bring a change to every node."""

from __future__ import annotations

import random

from simnet import Faults, SimNetwork

from crdt import history
from crdt.node import Config

DOCS = ["alpha", "beta", "gamma"]


def run_scenario(seed: int, n: int, *, faults: Faults | None = None, heal_time: float = 20.0) -> SimNetwork:
    net = SimNetwork(seed, n, faults)
    rng = net.rng
    # Every node joins through one random earlier node (peer exchange does the rest).
    for i in range(1, n):
        net.join(i, rng.randrange(i))
    t = 0.0
    crashed: list[int] = []
    for phase in range(4):
        if phase == 1:
            half = rng.sample(range(n), n // 2)
            net.set_partition([half, [i for i in range(n) if i not in half]])
        if phase == 2:
            crashed = rng.sample(range(n), max(1, n // 10))
            for i in crashed:
                net.crash(i)
        if phase == 3:
            for i in crashed:
                net.restart(i)
            net.set_partition(None)
        for _ in range(40):
            t += rng.uniform(0.02, 0.25)
            net.run_until(t)
            i = rng.randrange(n)
            if not net.peers[i].up:
                continue
            doc = rng.choice(DOCS)
            roll = rng.random()
            if roll < 0.06:
                net.name_version(i, doc, f"v{phase}-{i}-{len(net.named)}")
            elif roll < 0.1 and net.named:
                restored_doc, version, _, _ = rng.choice(net.named)
                net.restore(i, restored_doc, version)
            else:
                net.edit(i, doc if rng.random() < 0.9 else f"made-by-{i}")
        t += 2.0
        net.run_until(t)
    # Heal: no more faults, everyone up, let anti-entropy finish.
    net.faults = Faults(drop=0.0, duplicate=0.0, max_delay=net.faults.max_delay)
    for i in range(n):
        net.restart(i)
    net.set_partition(None)
    net.run_until(t + heal_time)
    return net


def check(net: SimNetwork) -> None:
    prints = net.fingerprints()
    reference = prints[0]
    for index, fp in prints.items():
        if fp != reference:
            names = sorted(set(fp) | set(reference))
            diff = [n for n in names if fp.get(n) != reference.get(n)]
            raise AssertionError(
                f"seed {net.seed}: node {index} differs from node 0 on {diff} "
                f"(replay: pytest tests/sim --sim-first-seed {net.seed} --sim-seeds 1)"
            )
    assert net.active_graph_connected(), f"seed {net.seed}: active links do not connect every node"
    _check_history(net)
    for peer in net.peers:
        for name, browser in peer.browsers.items():
            node = peer.node
            assert node is not None and browser.conn is not None
            assert str(browser.text) == node.documents[name].text, (
                f"seed {net.seed}: node {peer.index}'s browser of {name} differs from its peer"
            )
    for peer in net.peers:
        node = peer.node
        assert node is not None
        ready = [link for link in node.links.values() if link.ready]
        assert 1 <= len(ready) <= node.config.active_max, f"seed {net.seed}: node {peer.index} has {len(ready)} links"
        assert not any(doc.pending_count() for doc in node.documents.values()), f"seed {net.seed}: updates left waiting"


def _check_history(net: SimNetwork) -> None:
    """Every node lists the same versions and authors, and each version
    opens to the same text everywhere; every version named, whose node did
    not crash before storing it, is listed."""
    listings: dict[int, dict[str, object]] = {}
    for peer in net.peers:
        node = peer.node
        assert node is not None
        listing: dict[str, object] = {}
        for name in DOCS:
            doc = node.documents.get(name)
            if doc is None:
                continue
            h = history.History(doc)
            versions = {v.id: (v.kind, v.label, _version_text(h, v)) for v in h.versions()}
            listing[name] = (versions, h.authors())
        listings[peer.index] = listing
    reference = listings[0]
    for index, listing in listings.items():
        assert _same(listing, reference), f"seed {net.seed}: node {index}'s history differs from node 0's"
    listed = {(name, vid) for name, (versions, _) in reference.items() for vid in versions}  # type: ignore[union-attr]
    missing = [vid for name, vid, _, _ in net.named if (name, vid) not in listed and vid not in net.at_risk]
    assert not missing, f"seed {net.seed}: named versions went missing: {missing}"


def _version_text(h: history.History, v: history.Version) -> str | None:
    """The version's text, or None where this replica cannot read it (it
    received some of its content already deleted): never a wrong text."""
    try:
        return h.text(v)
    except history.VersionNotHeld:
        return None


def _same(a: dict[str, object], b: dict[str, object]) -> bool:
    """Equal listings, a text that one replica cannot read aside."""
    if a.keys() != b.keys():
        return False
    for name in a:
        (va, aa), (vb, ab) = a[name], b[name]  # type: ignore[misc]
        if aa != ab or va.keys() != vb.keys():
            return False
        for vid in va:
            (ka, la, ta), (kb, lb, tb) = va[vid], vb[vid]
            if (ka, la) != (kb, lb) or (ta is not None and tb is not None and ta != tb):
                return False
    return True


def rounds_to_reach_all(seed: int, n: int, *, warm_up: float = 8, give_up: float = 120) -> float:
    """Rounds (``ae_interval``s of virtual time) that anti-entropy alone
    takes to bring one node's change to all *n* nodes, or inf after
    *give_up* rounds.

    The nodes run the default ``Config`` except ``push=False``: membership,
    peer exchange, link shuffling and liveness run as in a real peer, and
    only anti-entropy can move the change. They join through one random
    earlier node, a document is created and spreads during a warm-up of
    *warm_up* shuffle intervals (the links formed at joining are the
    neighbourhood of each node's contact; shuffling makes them a random
    graph), then one random node changes it. Resolution: 1/20 round.
    """
    # Rounds as an active network runs them: a quiet one slows its rounds
    # down (crdt.antientropy rule 4), which the pushes it has make up for.
    config = Config(push=False, ae_idle_factor=1)
    net = SimNetwork(seed, n, Faults(drop=0, duplicate=0, max_delay=0.002), config)
    rng = random.Random(seed)
    for i in range(1, n):
        net.join(i, rng.randrange(i))
    net.author(rng.randrange(n), "r", "base")
    net.run_until(warm_up * config.shuffle_interval)
    assert all(_text(net, i) == "base" for i in range(n)), f"seed {seed}: the document did not spread"
    net.author(rng.randrange(n), "r", "x")  # the change every other node misses
    start = t = net.now
    while not all(_text(net, i) == "basex" for i in range(n)):
        t += config.ae_interval / 20
        net.run_until(t)
        if t - start > give_up * config.ae_interval:
            return float("inf")
    return (t - start) / config.ae_interval


def _text(net: SimNetwork, i: int) -> str | None:
    node = net.peers[i].node
    doc = node.documents.get("r") if node is not None else None
    return doc.text if doc is not None else None
