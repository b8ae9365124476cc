"""Deterministic simulation of many nodes: after faults heal, every replica
is identical (text, state vector, delete set) and the links connect everyone.
Any failure names the seed that replays it:

    pytest tests/sim --sim-first-seed SEED --sim-seeds 1
"""

from __future__ import annotations

import os
from concurrent.futures import ProcessPoolExecutor

import pytest
from scenario import check, run_scenario


def _seeds(config, default: int) -> list[int]:
    count = config.getoption("--sim-seeds") or default
    first = config.getoption("--sim-first-seed")
    return list(range(first, first + count))


def _run(args: tuple[int, int, float]) -> str | None:
    seed, n, heal = args
    try:
        check(run_scenario(seed, n, heal_time=heal))
    except AssertionError as exc:
        return str(exc)
    return None


def _run_all(seeds: list[int], n: int, heal: float) -> None:
    workers = min(len(seeds), os.cpu_count() or 1)
    with ProcessPoolExecutor(workers) as pool:
        failures = [f for f in pool.map(_run, [(s, n, heal) for s in seeds]) if f]
    assert not failures, f"{len(failures)} of {len(seeds)} seeds failed:\n" + "\n".join(failures[:10])


@pytest.mark.timeout(1800)
def test_converges_after_faults_20_nodes(sim_options):
    _run_all(_seeds(sim_options, 200), sim_options.getoption("--sim-nodes") or 20, 15.0)


@pytest.mark.sim_large
@pytest.mark.timeout(7200)
def test_converges_after_faults_100_nodes(sim_options):
    _run_all(_seeds(sim_options, 20), sim_options.getoption("--sim-nodes") or 100, 30.0)


def test_replay_is_deterministic():
    a = run_scenario(5, 8)
    b = run_scenario(5, 8)
    assert a.fingerprints() == b.fingerprints()
    assert a.delivered == b.delivered


def test_the_check_sees_a_divergence():
    """The invariant is not vacuous: a replica changed behind the network's
    back is reported with its seed."""
    net = run_scenario(11, 6, heal_time=10.0)
    node = net.peers[3].node
    assert node is not None
    node.documents["alpha"].edit("tamper", insert="!")
    with pytest.raises(AssertionError, match="seed 11: node 3 differs"):
        check(net)


def test_the_check_sees_a_lost_version():
    """History is checked too: a version named that no node lists fails the run."""
    net = run_scenario(12, 6, heal_time=10.0)
    assert net.named, "the scenario names versions"
    check(net)
    net.named.append(("alpha", "A" * 16, 0, net.now - 100))
    with pytest.raises(AssertionError, match="named versions went missing"):
        check(net)
