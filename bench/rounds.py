"""The simulator row: gossip rounds until an update reaches every node."""

from __future__ import annotations

import random
import statistics
import sys

from common import ROOT, Row, percentile


def row_rounds(n: int, seeds: int) -> Row:
    """Anti-entropy alone (no push): rounds until an update one node made
    reaches all N simulated nodes."""
    sys.path.insert(0, str(ROOT / "tests" / "sim"))
    from simnet import Faults, SimNetwork

    from crdt.node import Config

    # No push, and no liveness traffic: only anti-entropy moves the update.
    config = Config(ping_interval=1e6, suspect_after=1e9, dead_after=1e9, exchange_interval=1e9, push=False)
    theory = {100: 6.5, 1000: 9.2}[n]
    results = []
    for seed in range(seeds):
        net = SimNetwork(seed, n, Faults(drop=0, duplicate=0, max_delay=0.002), config)
        rng = random.Random(seed)
        for i in range(1, n):
            net.join(i, rng.randrange(i))
        net.run_until(30.0)  # membership settles
        origin = net.peers[rng.randrange(n)].node
        assert origin is not None
        origin.document("r").edit("local", insert="x")  # no push: only anti-entropy spreads it
        start = net.now
        t = start
        while not all(_has(p.node) for p in net.peers):
            t += 0.25
            net.run_until(t)
            if t - start > 120:
                t = float("inf")  # never reached everyone: shows as a failed target
                break
        results.append((t - start) / config.ae_interval)
    p99 = percentile(results, 99)
    return Row(
        f"rounds to reach all (simulator, N = {n:,}, {seeds} seeds)",
        f"p99 {p99:.1f} rounds (median {statistics.median(results):.1f})",
        f"push-pull theory ≈ {theory}",
        f"≤ {theory + 1:.1f}",
        p99 <= theory + 1,
    )


def _has(node: object) -> bool:
    docs = getattr(node, "documents", {})
    return "r" in docs and docs["r"].text == "x"
