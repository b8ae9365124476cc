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


def _join_all(net: SimNetwork, documents: dict[str, bytes], deadline: float) -> None:
    net.carried.clear()
    for i in range(SOURCES):
        net.join(SOURCES, i)  # all four links open at once
    while not _caught_up(net, documents):
        assert net.now < deadline, "the fresh peer did not catch up"
        net.run_until(net.now + 0.1)


def test_a_fresh_peer_takes_each_document_once_spread_over_its_sources() -> None:
    documents = _documents(200, 2000, seed=1)
    minimal = sum(len(update) for update in documents.values())
    net = _network(documents, seed=1)
    _join_all(net, documents, deadline=net.now + 30)
    served = [net.carried.get((i, SOURCES), 0) for i in range(SOURCES)]
    print(f"took in {sum(served)} bytes for {minimal}: {served}")
    assert sum(served) <= 1.3 * minimal, f"took in {sum(served)} bytes for {minimal} of documents ({served})"
    assert max(served) <= 0.5 * minimal, f"one source served more than half: {served} of {minimal}"


def test_a_fetch_lost_with_its_link_is_asked_of_another() -> None:
    documents = _documents(120, 500, seed=2)
    net = _network(documents, seed=2, config=Config(fetch_window=4))
    for i in range(SOURCES):
        net.join(SOURCES, i)
    fresh = net.peers[SOURCES].node
    assert fresh is not None
    wants = fresh.antientropy.fetches.wants
    deadline = net.now + 5
    while len(fresh.documents) < len(documents) or len(wants) > len(documents) // 2:
        assert net.now < deadline, "the fetch made no progress"
        net.run_until(net.now + 0.001)
    # The link asked last: its asks have not arrived (a frame takes 1.5 ms
    # at least), and the other links have passed over what it was asked for.
    victim = max(wants.values(), key=lambda want: want.sent).asked
    lost = [name for name, want in wants.items() if want.asked == victim]
    net.crash(next(other for link, (owner, other, _) in net.links.items() if owner == SOURCES and link == victim))
    deadline = net.now + 3  # well before the asks could time out (sync_timeout)
    while not _caught_up(net, documents):
        assert net.now < deadline, f"the documents asked of the lost link never came: {lost}"
        net.run_until(net.now + 0.1)


def test_a_fetch_its_link_is_slow_to_answer_is_asked_of_another() -> None:
    documents = _documents(120, 500, seed=3)
    net = _network(documents, seed=3, config=Config(fetch_window=4, sync_timeout=1.0))
    for i in range(SOURCES):
        net.join(SOURCES, i)
    fresh = net.peers[SOURCES].node
    assert fresh is not None
    wants = fresh.antientropy.fetches.wants
    deadline = net.now + 5
    while len(fresh.documents) < len(documents) or len(wants) > len(documents) // 2:
        assert net.now < deadline, "the fetch made no progress"
        net.run_until(net.now + 0.001)
    victim = max(wants.values(), key=lambda want: want.sent).asked
    slow = next(other for link, (owner, other, _) in net.links.items() if owner == SOURCES and link == victim)
    net.set_partition([[i for i in range(SOURCES + 1) if i != slow], [slow]])  # it hears nothing, says nothing
    deadline = net.now + 3  # after sync_timeout, well before the silent link is found dead (dead_after)
    while not _caught_up(net, documents):
        assert net.now < deadline, "the documents asked of the slow link never came"
        net.run_until(net.now + 0.1)
