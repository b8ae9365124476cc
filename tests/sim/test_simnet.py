"""The simulator itself: what it promises about links."""

from __future__ import annotations

from simnet import Faults, SimNetwork

from crdt.node import Config


def test_a_close_arrives_after_the_frames_sent_before_it():
    """A busy peer sends a sample of peers and BYE, then closes: like a
    WebSocket, the link delivers both before the close, so the refused peer
    learns where else to go and counts the refusal. (Every frame takes the
    same time here: with random delays the BYE may overtake the sample.)"""
    faults = Faults(drop=0, duplicate=0, min_delay=0.001, max_delay=0.0015)
    net = SimNetwork(1, 3, faults, Config(active_target=1, active_max=1))
    net.join(1, 0)
    net.run_until(0.5)
    net.join(2, 0)  # node 0 already has its one link: busy
    net.run_until(0.6)
    node = net.peers[2].node
    assert node is not None
    assert "n1:7400" in node.known.by_address  # from the sample sent before BYE
    assert node.known.by_address["n0:7400"].failures >= 1  # from the BYE
