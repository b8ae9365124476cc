"""One simulated run: join, edit under faults, partition, crash, heal, check."""

from __future__ import annotations

from simnet import Faults, SimNetwork

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
            if net.peers[i].up:
                net.edit(i, rng.choice(DOCS if rng.random() < 0.9 else [f"made-by-{i}"]))
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
    for peer in net.peers:
        node = peer.node
        assert node is not None
        ready = [link for link in node.links.values() if link.ready]
        assert 1 <= len(ready) <= node.config.active_max, f"seed {net.seed}: node {peer.index} has {len(ready)} links"
        assert not any(doc.pending_count() for doc in node.documents.values()), f"seed {net.seed}: updates left waiting"
