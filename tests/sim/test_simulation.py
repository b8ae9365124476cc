"""Deterministic simulation of many nodes: after faults heal, every replica
is identical (text, state vector, delete set) and the links connect everyone.
Any failure names the seed that replays it."""

from __future__ import annotations

import pytest
from scenario import check, run_scenario


def _seeds(config, default: int) -> range:
    count = config.getoption("--sim-seeds") or default
    first = config.getoption("--sim-first-seed")
    return range(first, first + count)


def test_converges_after_faults_20_nodes(sim_options):
    n = sim_options.getoption("--sim-nodes") or 20
    for seed in _seeds(sim_options, 200):
        check(run_scenario(seed, n))


@pytest.mark.sim_large
def test_converges_after_faults_100_nodes(sim_options):
    n = sim_options.getoption("--sim-nodes") or 100
    for seed in _seeds(sim_options, 20):
        check(run_scenario(seed, n, heal_time=30.0))


def test_replay_is_deterministic():
    a = run_scenario(5, 8)
    b = run_scenario(5, 8)
    assert a.fingerprints() == b.fingerprints()
    assert a.delivered == b.delivered
