"""A peer catching up fetches each document once, spread over its links
(docs/protocol.md §7.4), on the simulated network with no faults."""

from __future__ import annotations

import random

from pycrdt import Doc, Text
from simnet import Faults, SimNetwork

from crdt.node import Config
from crdt.store import Write

SOURCES = 4
PERFECT = Faults(drop=0.0, duplicate=0.0, min_delay=0.001, max_delay=0.004, commit_lag=0.0)


def _documents(count: int, size: int, seed: int) -> dict[str, bytes]:
    rng = random.Random(seed)
    out = {}
    for i in range(count):
        doc = Doc(client_id=1000 + i)
        text = doc.get("content", type=Text)
        text += "".join(rng.choices("abcdefghij klmnop\n", k=size))
        del text[10:20]  # a delete set too, as real documents have
        out[f"doc-{i:04d}"] = doc.get_update()
    return out


def _network(documents: dict[str, bytes], seed: int, config: Config | None = None) -> SimNetwork:
    """Sources 0–3 hold *documents*, linked to each other; peer 4 is fresh."""
    net = SimNetwork(seed, SOURCES + 1, PERFECT, config)
    for i in range(SOURCES):
        net.crash(i)
        net.peers[i].store.write([Write(name, update) for name, update in documents.items()])
        net.restart(i)
    for i in range(1, SOURCES):
        net.join(i, 0)
    net.run_until(5.0)
    return net


def _caught_up(net: SimNetwork, documents: dict[str, bytes]) -> bool:
    source = next(i for i in range(SOURCES) if net.peers[i].up)
    prints = net.fingerprints([source, SOURCES])
    return set(prints[SOURCES]) == set(documents) and prints[SOURCES] == prints[source]


def _join_all(net: SimNetwork, documents: dict[str, bytes], seconds: float) -> None:
    net.carried.clear()
    for i in range(SOURCES):
        net.join(SOURCES, i)  # all four links open at once
    _catch_up_within(net, documents, seconds, "the fresh peer did not catch up")


def test_a_fresh_peer_takes_each_document_once_spread_over_its_sources() -> None:
    documents = _documents(200, 2000, seed=1)
    minimal = sum(len(update) for update in documents.values())
    net = _network(documents, seed=1)
    _join_all(net, documents, 30)
    served = [net.carried.get((i, SOURCES), 0) for i in range(SOURCES)]
    print(f"took in {sum(served)} bytes for {minimal}: {served}")
    assert sum(served) <= 1.3 * minimal, f"took in {sum(served)} bytes for {minimal} of documents ({served})"
    assert max(served) <= 0.5 * minimal, f"one source served more than half: {served} of {minimal}"


def _halfway(documents: dict[str, bytes], seed: int, config: Config) -> tuple[SimNetwork, int, list[str]]:
    """The fresh peer joins all four sources and has half the documents:
    returns the network, the source asked last (its asks have not arrived,
    a frame takes 1.5 ms at least, and the other links have passed over what
    it was asked for) and what it was asked for."""
    net = _network(documents, seed=seed, config=config)
    for i in range(SOURCES):
        net.join(SOURCES, i)
    fresh = net.peers[SOURCES].node
    assert fresh is not None
    wants = fresh.antientropy.fetches.wants
    deadline = net.now + 5
    while len(fresh.documents) < len(documents) or len(wants) > len(documents) // 2:
        assert net.now < deadline, "the fetch made no progress"
        net.run_until(net.now + 0.001)
    last = max(wants.values(), key=lambda want: want.sent).asked
    source = next(other for link, (owner, other, _) in net.links.items() if owner == SOURCES and link == last)
    return net, source, [name for name, want in wants.items() if want.asked == last]


def _catch_up_within(net: SimNetwork, documents: dict[str, bytes], seconds: float, what: str) -> None:
    deadline = net.now + seconds
    while not _caught_up(net, documents):
        assert net.now < deadline, what
        net.run_until(net.now + 0.1)


def test_a_fetch_lost_with_its_link_is_asked_of_another() -> None:
    documents = _documents(120, 500, seed=2)
    net, victim, lost = _halfway(documents, 2, Config(fetch_window=4))
    net.crash(victim)
    # Well before the asks could time out (sync_timeout).
    _catch_up_within(net, documents, 3, f"the documents asked of the lost link never came: {lost}")


def test_a_fetch_its_link_is_slow_to_answer_is_asked_of_another() -> None:
    documents = _documents(120, 500, seed=3)
    net, slow, asked = _halfway(documents, 3, Config(fetch_window=4, sync_timeout=1.0))
    net.set_partition([[i for i in range(SOURCES + 1) if i != slow], [slow]])  # it hears nothing, says nothing
    # After sync_timeout, well before the silent link is found dead (dead_after).
    _catch_up_within(net, documents, 3, f"the documents asked of the slow link never came: {asked}")
