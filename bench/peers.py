"""Many ``meshpad serve`` processes on loopback for one row: started and
stopped in parallel, and the overlay they form read from their
``/api/peers`` (links, connected parts, hops), so that a row can wait for a
mesh to carry a document and say how far it got when it does not.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Protocol

from common import exists, wait_sync
from processes import Peer


def start_peers(work: Path, prefix: str, n: int, rng: random.Random) -> list[Peer]:
    """*n* peers on loopback; peer i joins through the address of a uniformly
    random earlier peer. Started in parallel (a peer whose join address is not
    up yet redials it). The caller stops them."""
    peers: list[Peer] = []
    for i in range(n):
        args = ["--join", peers[rng.randrange(i)].address] if i else []
        peers.append(Peer(work / f"{prefix}-{i:02d}", args=args))
    with ThreadPoolExecutor(n) as pool:
        list(pool.map(lambda p: p.start(timeout=120), peers))
    return peers


class Stoppable(Protocol):
    def stop(self) -> None: ...


def stop_peers(peers: Sequence[Stoppable]) -> None:
    """Stop every one of *peers* (a Peer, or a peer in a namespace), in parallel."""
    with ThreadPoolExecutor(max(1, len(peers))) as pool:
        list(pool.map(lambda p: p.stop(), peers))


def connected_addresses(peer: Peer) -> set[str]:
    return {r["address"] for r in peer.get("/api/peers") if r["state"] == "connected"}


def distances(links: list[set[int]], origin: int) -> dict[int, int]:
    """Links on the shortest path from *origin* to each peer it can reach."""
    dist = {origin: 0}
    frontier = [origin]
    while frontier:
        nxt = []
        for i in frontier:
            for j in links[i]:
                if j not in dist:
                    dist[j] = dist[i] + 1
                    nxt.append(j)
        frontier = nxt
    return dist


def islands(links: list[set[int]]) -> list[int]:
    """Sizes of the overlay's connected parts, largest first."""
    both = [set(s) for s in links]
    for i, s in enumerate(links):
        for j in s:
            both[j].add(i)  # a link counts for both ends even if one side's view lags
    left = set(range(len(links)))
    sizes = []
    while left:
        part = set(distances(both, min(left)))
        sizes.append(len(part))
        left -= part
    return sorted(sizes, reverse=True)


def overlay(peers: list[Peer]) -> list[set[int]]:
    index = {p.address: i for i, p in enumerate(peers)}
    return [{index[a] for a in connected_addresses(p) if a in index} for p in peers]


def mesh_ready(peers: list[Peer], name: str, timeout: float) -> None:
    """Every peer has a connected link; then *name*, created on the first
    peer, exists on every peer. Raises AssertionError saying how far it got."""
    try:
        wait_sync(lambda: all(connected_addresses(p) for p in peers), timeout, poll=0.2)
        peers[0].post("/api/docs", {"name": name})
        wait_sync(lambda: all(exists(p, name) for p in peers), timeout, poll=0.2)
    except TimeoutError:
        having = sum(1 for p in peers if exists(p, name))
        parts = islands(overlay(peers))
        raise AssertionError(
            f"after {timeout:g} s the document was on {having} of {len(peers)} peers; "
            f"overlay in {len(parts)} parts of {', '.join(map(str, parts))} peers"
        ) from None


def hops_from(peers: list[Peer], origin: int) -> int:
    """Links between *origin* and the peer farthest from it, now (-1 when
    some peer cannot be reached)."""
    dist = distances(overlay(peers), origin)
    return max(dist.values()) if len(dist) == len(peers) else -1
