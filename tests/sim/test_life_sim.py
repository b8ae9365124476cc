"""Deletes, restores, renames and deletes forever, mixed with edits, under
loss, reordering, partitions and crash-restarts: after healing every node
holds the same documents under the same names, the same Trash and the same
tombstones, with identical document states. Any failure names its seed:

    pytest tests/sim/test_life_sim.py --sim-first-seed SEED --sim-seeds 1
"""

from __future__ import annotations

import os
from concurrent.futures import ProcessPoolExecutor

import pytest
from scenario import check
from simnet import Faults, SimNetwork

from crdt.meta import FORGOTTEN_KEY
from crdt.node import Config

# Documents unloaded as soon as they are idle, one held at most: every
# message, browser and anti-entropy round meets unloaded documents.
UNLOADING = Config(unload_after=0.3, max_loaded=1)

DOCS = ["alpha", "beta", "gamma", "delta", "epsilon"]
NAMES = ["one", "two", "three", "alpha", "beta"]


def run_life(
    seed: int, n: int, heal_time: float = 20.0, config: Config | None = None
) -> tuple[SimNetwork, dict[str, int]]:
    net = SimNetwork(seed, n, Faults(drop=0.05, duplicate=0.02), config)
    rng = net.rng
    for i in range(1, n):
        net.join(i, rng.randrange(i))
    done = {"delete": 0, "undelete": 0, "rename": 0, "forget": 0}
    t = 0.0
    crashed: list[int] = []
    for phase in range(4):
        if phase == 1:
            half = rng.sample(range(n), n // 2)
            net.set_partition([half, [i for i in range(n) if i not in half]])
        if phase == 2:
            crashed = rng.sample(range(n), max(1, n // 5))
            for i in crashed:
                net.crash(i)
        if phase == 3:
            for i in crashed:
                net.restart(i)
            net.set_partition(None)
        for _ in range(50):
            t += rng.uniform(0.02, 0.3)
            net.run_until(t)
            i = rng.randrange(n)
            if not net.peers[i].up:
                continue
            key = rng.choice(DOCS)
            roll = rng.random()
            if roll < 0.08:
                done["delete"] += net.delete(i, key)
            elif roll < 0.14:
                done["undelete"] += net.undelete(i, key)
            elif roll < 0.2:
                done["rename"] += net.rename(i, key, rng.choice(NAMES))
            elif roll < 0.24 and phase < 3:
                done["forget"] += net.forget(i, key)
            else:
                net.edit(i, key)
        t += 2.0
        net.run_until(t)
    net.faults = Faults(drop=0.0, duplicate=0.0, max_delay=net.faults.max_delay)
    for i in range(n):
        net.restart(i)
    net.set_partition(None)
    net.run_until(t + heal_time)
    return net, done


def check_life(net: SimNetwork) -> None:
    for peer in net.peers:  # what is unloaded is compared too
        assert peer.engine is not None
        for key in list(peer.engine.node.replicas.unloaded):
            net.ensure_loaded(peer.index, key)
    check(net)  # identical documents, a connected graph, browsers equal to their peers
    views = {}
    for peer in net.peers:
        engine = peer.engine
        assert engine is not None
        registry = engine.registry
        trash = [(e.key, e.name, e.deleted.id) for e in registry.trash()]
        views[peer.index] = (dict(registry.live()), trash, sorted(registry.forgotten))
        for key in registry.forgotten:
            assert key not in engine.documents, f"seed {net.seed}: node {peer.index} still holds {key}, forgotten"
            assert key not in [info.name for info in peer.store.documents()], (
                f"seed {net.seed}: node {peer.index}'s store still holds {key}, forgotten"
            )
        held = set(engine.documents) - {FORGOTTEN_KEY}
        assert held == set(registry.metas), f"seed {net.seed}: node {peer.index}'s registry differs from its documents"
    reference = views[0]
    for index, view in views.items():
        assert view == reference, f"seed {net.seed}: node {index}'s names, Trash or tombstones differ from node 0's"


def _seeds(config, default: int) -> list[int]:
    count = config.getoption("--sim-seeds") or default
    return list(range(config.getoption("--sim-first-seed"), config.getoption("--sim-first-seed") + count))


def _run(seed: int, config: Config | None = None) -> tuple[str | None, dict[str, int]]:
    net, done = run_life(seed, 12, config=config)
    done = done | {"loads": net.loads, "unloads": net.unloads}
    try:
        check_life(net)
    except AssertionError as exc:
        return str(exc), done
    return None, done


def _run_unloading(seed: int) -> tuple[str | None, dict[str, int]]:
    return _run(seed, UNLOADING)


@pytest.mark.timeout(1800)
def test_life_converges_after_faults(sim_options):
    seeds = _seeds(sim_options, 40)
    with ProcessPoolExecutor(min(len(seeds), os.cpu_count() or 1)) as pool:
        results = list(pool.map(_run, seeds))
    failures = [f for f, _ in results if f]
    assert not failures, f"{len(failures)} of {len(seeds)} seeds failed:\n" + "\n".join(failures[:10])
    total = {k: sum(done[k] for _, done in results) for k in results[0][1] if k not in ("loads", "unloads")}
    # The runs did what they are about: each kind of operation, many times.
    assert all(count >= len(seeds) for count in total.values()), total


@pytest.mark.timeout(1800)
def test_life_converges_with_documents_unloaded(sim_options):
    """The same, on peers that unload every idle document at once and hold
    one at most: loads and unloads happen in the middle of everything."""
    seeds = _seeds(sim_options, 12)
    with ProcessPoolExecutor(min(len(seeds), os.cpu_count() or 1)) as pool:
        results = list(pool.map(_run_unloading, seeds))
    failures = [f for f, _ in results if f]
    assert not failures, f"{len(failures)} of {len(seeds)} seeds failed:\n" + "\n".join(failures[:10])
    assert all(done["unloads"] > 20 and done["loads"] > 20 for _, done in results), [d for _, d in results]


def test_a_delete_concurrent_with_an_edit_keeps_the_edit_in_the_trash():
    net = SimNetwork(3, 3)
    net.join(1, 0)
    net.join(2, 0)
    net.author(0, "plan", "the plan")
    net.run_until(5.0)
    net.set_partition([[0, 1], [2]])
    net.delete(0, "plan")
    net.author(2, "plan", " and more")
    net.run_until(10.0)
    assert net._engine(2).registry.is_live("plan")
    net.set_partition(None)
    net.run_until(30.0)
    check_life(net)
    for peer in net.peers:
        engine = peer.engine
        assert engine is not None
        [(key, name, deleted, changed)] = engine.trash()
        assert (key, name, deleted.by, changed) == ("plan", "plan", "person-0", True)
        assert engine.documents["plan"].text == "the plan and more"


def test_a_delete_concurrent_with_a_restore_wins():
    net = SimNetwork(4, 2)
    net.join(1, 0)
    net.author(0, "plan", "text")
    net.run_until(5.0)
    net.delete(0, "plan")
    net.run_until(10.0)
    net.set_partition([[0], [1]])
    net.undelete(0, "plan")
    net.delete(0, "plan")  # deleted again on one side ...
    net.undelete(1, "plan")  # ... restored on the other, which had not seen that delete
    net.run_until(15.0)
    assert net._engine(1).registry.is_live("plan")
    net.set_partition(None)
    net.run_until(40.0)
    check_life(net)
    assert all(p.engine is not None and p.engine.registry.is_trashed("plan") for p in net.peers)


def test_concurrent_renames_converge_and_the_other_name_redirects():
    net = SimNetwork(5, 2)
    net.join(1, 0)
    net.author(0, "draft", "text")
    net.run_until(5.0)
    net.set_partition([[0], [1]])
    assert net.rename(0, "draft", "final") and net.rename(1, "draft", "last")
    net.run_until(10.0)
    net.set_partition(None)
    net.run_until(40.0)
    check_life(net)
    registries = [p.engine.registry for p in net.peers if p.engine is not None]
    [name] = {r.name("draft") for r in registries}
    assert name in ("final", "last")
    assert all(r.moved("draft") == "draft" for r in registries)


def test_a_stale_peer_forgets_what_was_deleted_forever_and_never_brings_it_back():
    net = SimNetwork(6, 3)
    net.join(1, 0)
    net.join(2, 0)
    net.author(0, "secret", "text")
    net.run_until(5.0)
    net.crash(2)
    net.delete(0, "secret")
    net.run_until(8.0)
    net.forget(1, "secret")
    net.run_until(12.0)
    net.restart(2)  # it comes back with its copy, live
    assert "secret" in net._engine(2).documents
    net.run_until(40.0)
    check_life(net)
    for peer in net.peers:
        assert peer.engine is not None and "secret" in peer.engine.registry.forgotten
        assert "secret" not in peer.engine.documents
