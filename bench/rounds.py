"""The simulator row: gossip rounds until an update a node missed reaches
every node (``rounds_to_reach_all`` in tests/sim/scenario.py, which says
how a seed runs).

Push is off and everything else runs as in a real peer: membership, peer
exchange, link shuffling, liveness. The change comes after a warm-up of
eight shuffle intervals: the links formed at joining are those of each
joining peer's contact's neighbourhood, and shuffling turns them into a
random graph (at N = 1,000 the mean distance between peers falls from 6.6
links to 4.4, that of a random graph with the same degrees, in about eight
intervals). A round is one ``ae_interval``. Seeds run in parallel processes.
"""

from __future__ import annotations

import os
import statistics
import sys
from concurrent.futures import ProcessPoolExecutor

from common import ROOT, Row, percentile

sys.path.insert(0, str(ROOT / "tests" / "sim"))

THEORY = {100: 6.5, 1000: 9.2}  # synchronous push-pull with uniformly random partners


def rounds_once(args: tuple[int, int]) -> float:
    """Rounds for seed *args[0]* in a network of *args[1]* peers."""
    from scenario import rounds_to_reach_all

    seed, n = args
    return rounds_to_reach_all(seed, n)


def row_rounds(n: int, seeds: int) -> Row:
    """p99 and median rounds over *seeds* simulated networks of *n* peers."""
    workers = min(seeds, os.cpu_count() or 1)
    with ProcessPoolExecutor(workers) as pool:
        results = list(pool.map(rounds_once, [(seed, n) for seed in range(seeds)]))
    p99 = percentile(results, 99)
    theory = THEORY[n]
    return Row(
        f"rounds to reach all (simulator, N = {n:,}, {seeds} seeds)",
        f"p99 {p99:.1f} rounds (median {statistics.median(results):.1f})",
        f"push-pull theory ≈ {theory}",
        f"≤ {theory + 1:.1f}",
        p99 <= theory + 1,
    )


if __name__ == "__main__":
    size, count = (int(a) for a in sys.argv[1:3])
    print(row_rounds(size, count).cells())
