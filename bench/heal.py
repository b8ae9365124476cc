"""The heal row: 20 peers in two halves of a real network (Linux network
namespaces, tests/netns.py), the cable between the halves pulled while
every peer's client edits, then put back: seconds until every peer holds
identical text. Each half's clients run in an agent (bench/agent.py) inside
a host of that half, the only place its peers can be reached.

    python bench/heal.py               # 5 seconds of edits, as a table (needs root)

The row makes its namespaces and removes them whatever happens.
"""

from __future__ import annotations

import hashlib
import os
import random
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from agent import AgentProcess, call_all
from common import Row, not_measured, prose, table, wait_sync
from netns import NetnsError, Network, NsPeer, inside
from peers import islands, stop_peers

SUBNET = "10.78.0"
CABLE = ("br0", "br1")  # the bridges of the left and right halves


class Halves(Network):
    """Two switches joined by one cable: a bridge per half on the switch,
    the two bridges joined by a veth pair (the cable), and one host per peer
    with its link to its half's bridge, plus one host per half with no peer,
    for that half's clients. ``cut`` and ``restore`` set the cable down and
    up: packets between the halves are dropped in the switch, as when a
    cable is pulled; within a half nothing changes."""

    def __init__(self, prefix: str, per_half: int) -> None:
        super().__init__(prefix, SUBNET)
        self.per_half = per_half

    def client_host(self, side: int) -> int:
        """A host with no peer, for one half's clients (side 0 left, 1 right)."""
        return 101 + side

    def side(self, i: int) -> int:
        """The half host *i* is in (hosts 1..per_half and 101 on the left)."""
        return 0 if i <= self.per_half or i == 101 else 1

    def build(self) -> None:
        for bridge in CABLE:
            self.add_bridge(bridge)
        self.add_cable(*CABLE)
        for i in [*range(1, 2 * self.per_half + 1), self.client_host(0), self.client_host(1)]:
            self.add_host(i, CABLE[self.side(i)])

    def cut(self) -> None:
        self.set_link(self.switch, "-".join(CABLE), up=False)

    def restore(self) -> None:
        self.set_link(self.switch, "-".join(CABLE), up=True)


def _texts(agents: list[AgentProcess]) -> list[dict[str, Any]]:
    return [p for answer in call_all(agents, "status") for p in answer["peers"]]


def _wait(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll gently: each poll is two requests to each of the 20 peers, and
    the time of convergence is taken from the clients, not from the poll."""
    try:
        wait_sync(predicate, timeout, poll=0.25)
    except TimeoutError:
        raise AssertionError(f"{what}: not within {timeout:g} s") from None


def row_heal(work: Path, edit_seconds: float) -> Row:
    """20 peers in two halves of a real network (10 hosts per half). The
    cable between the halves is pulled; one client per peer edits for
    *edit_seconds* (5 edits a second each); once each half agrees within
    itself the cable is put back: seconds from then until every peer holds
    identical text (the last change any client sees, each client on its own
    peer)."""
    name = f"heal (20 peers, two halves edit for {edit_seconds:g} s, then reconnected)"
    target = "≤ 2 s"
    per_half = 10
    if os.geteuid() != 0:
        return not_measured(name, target, "network namespaces need root")
    net = Halves(f"mpn{os.getpid() % 100000}", per_half)
    hosts = range(1, 2 * per_half + 1)
    peers = [
        NsPeer(net.host(i), net.address(i), work / f"heal-{i:02d}", work / f"heal-peer-{i:02d}.log") for i in hosts
    ]
    sides = [net.side(i) for i in hosts]
    agents: list[AgentProcess] = []
    rng = random.Random(10)
    try:
        net.build()
        for k, p in enumerate(peers):
            p.start(*([peers[rng.randrange(k)].address] if k else []))
        for side in (0, 1):
            host = net.client_host(side)
            agent = AgentProcess(work / f"heal-agent-{side}.log", inside(net.host(host)))
            agents.append(agent)
            mine = [p for p, s in zip(peers, sides, strict=True) if s == side]
            agent.call("attach", urls=[p.url for p in mine], token_files=[str(p.token_file) for p in mine], name="heal")
        call_all(agents, "ready", timeout=120)
        left = {p.address for p, s in zip(peers, sides, strict=True) if s == 0}
        index = {p.address: k for k, p in enumerate(peers)}

        def crossing(status: list[dict[str, Any]]) -> int:
            """Links between the halves, counted once."""
            ends = [
                a for p, s in zip(peers, status, strict=True) for a in s["links"] if (a in left) != (p.address in left)
            ]
            return len(ends) // 2

        _wait(lambda: all(s["links"] for s in _texts(agents)), 120, "every peer connected")
        base = prose(rng, 2000)
        agents[0].call("create", text=base)
        digest = hashlib.sha256(base.encode()).hexdigest()
        try:
            _wait(lambda: all(s["text"] == digest for s in _texts(agents)), 120, "the document on every peer")
        except AssertionError:
            now = _texts(agents)
            having = sum(1 for s in now if s["text"] == digest)
            parts = islands([{index[a] for a in s["links"] if a in index} for s in now])
            raise AssertionError(
                f"after 120 s the document was on {having} of 20 peers; "
                f"overlay in {len(parts)} parts of {', '.join(map(str, parts))} peers"
            ) from None
        for side, agent in enumerate(agents):  # Yjs client ids must differ across all 20 clients
            agent.send("connect", first_id=500 + 100 * side)
        for agent in agents:
            agent.receive()
        across_before = crossing(_texts(agents))

        net.cut()
        for side, agent in enumerate(agents):
            agent.send("edit", seconds=edit_seconds, rate=5.0, seed=side)
        ops = sum(a.receive(timeout=edit_seconds + 120)["ops"] for a in agents)

        def texts_per_half() -> list[int]:
            """Distinct texts in each half."""
            status = _texts(agents)
            return [len({s["text"] for s, side in zip(status, sides, strict=True) if side == k}) for k in (0, 1)]

        # Heal is measured from one text per half. A half still split (its own
        # overlay in islands) after 30 s is reconnected anyway, and said so.
        settled = ""
        try:
            _wait(lambda: texts_per_half() == [1, 1], 30, "each half identical within itself")
        except AssertionError:
            held = " and ".join(map(str, texts_per_half()))
            settled = f"; when reconnected the halves still held {held} different texts"

        restored = time.monotonic()
        net.restore()
        status: list[dict[str, Any]] = []

        def identical() -> bool:
            status[:] = _texts(agents)
            return len({s["text"] for s in status}) == 1

        try:
            _wait(identical, 60, "identical text on all 20 peers")
        except AssertionError as exc:
            return Row(
                name,
                f"failed: {exc}; {len({s['text'] for s in status})} different texts at the end; links between "
                f"the halves: {across_before} before the cut, {crossing(status)} at the end{settled}",
                "—",
                target,
                False,
            )
        seen = time.monotonic() - restored
        final = status[0]["text"]
        clients = [c for answer in call_all(agents, "contents", expect=final) for c in answer["clients"]]
        if any(c["text"] != final for c in clients):
            raise AssertionError("a client's text differs from its peer's")
        healed = max(c["last_change"] for c in clients) - restored
        across_after = crossing(status)
    except (AssertionError, NetnsError) as exc:
        return Row(name, f"failed: {exc}", "—", target, False)
    finally:
        for a in agents:
            a.stop()
        stop_peers(peers)
        left_behind = net.remove()
        if left_behind:
            print(f"namespaces left behind: {left_behind}", file=sys.stderr)
    return Row(
        name,
        f"{healed:.2f} s until the last client saw the merged text (all 20 peers' texts identical when polled "
        f"{seen:.2f} s after); {ops:,} edits during the cut; links between the halves: {across_before} before "
        f"the cut, {across_after} after healing{settled}",
        "—",
        target,
        healed <= 2.0,
    )


if __name__ == "__main__":
    with tempfile.TemporaryDirectory(prefix="meshpad-bench-") as tmp:
        print(table([row_heal(Path(tmp), 5.0)]))
