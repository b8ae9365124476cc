"""Lazy push (Plumtree), anti-entropy partners and phase, link shuffling and
the backoff against a busy peer, on ``Node``s joined by the simulated
network's links (``nodenet``, perfect: no sockets, no sleeps)."""

from __future__ import annotations

import itertools
import random
from typing import Any

import pytest
from nodenet import LOSSY, NodeNetwork

from crdt import peerwire as pw
from crdt.node import CloseLink, Config, Dial, DocChanged, Effect, Node, SendPeer


def quiet(**changes: object) -> Config:
    """A peer that dials nothing on its own, with timers that stay out of
    the way unless a test turns them on."""
    base: dict[str, object] = {
        "active_target": 0,
        "ping_interval": 1e6,
        "suspect_after": 1e9,
        "dead_after": 1e9,
        "exchange_interval": 1e9,
        "shuffle_interval": 1e9,
        "ae_interval": 1e9,
    }
    base.update(changes)
    return Config(**base)  # type: ignore[arg-type]


def digests_sent(effects: list[Effect]) -> list[int]:
    return [e.link for e in effects if isinstance(e, SendPeer) and isinstance(pw.decode(e.data), pw.Digest)]


def sent(net: NodeNetwork, kind: type) -> list[tuple[str, str, pw.Message]]:
    return [entry for entry in net.sent if isinstance(entry[2], kind)]


# -- lazy push --------------------------------------------------------------------


def clique(names: str) -> NodeNetwork:
    """Every pair of the nodes linked; no anti-entropy, so what arrives came by push."""
    net = NodeNetwork()
    for name in names:
        net.add(name, quiet())
    for i, name in enumerate(names):
        for other in names[i + 1 :]:
            net.link(name, other)
    return net


def texts(net: NodeNetwork, name: str = "doc") -> dict[str, str]:
    return {address: node.documents[name].text if name in node.documents else "" for address, node in net.nodes.items()}


def test_duplicates_prune_a_flood_down_to_a_tree():
    """The first change floods the five-peer clique (4 + 4 × 3 UPDATEs) and
    every duplicate prunes its link; from then on a change costs one UPDATE
    per other peer, whoever makes it."""
    net = clique("abcde")
    net.perform("a", net.nodes["a"].edit("doc", net.now, insert="first"))
    assert len(sent(net, pw.Update)) == 16
    assert set(texts(net).values()) == {"first"}
    eager = {(x, y) for x in "abcde" for y in "abcde" if x != y and net.link_to(x, y).eager}
    assert len(eager) == 2 * 4, eager  # a tree over five peers, seen from both ends
    for author in "acd":
        net.sent.clear()
        node = net.nodes[author]
        net.perform(author, node.edit("doc", net.now, insert=author, at=0))
        assert len(sent(net, pw.Update)) == 4
        assert len(set(texts(net).values())) == 1
    assert not sent(net, pw.Prune)


def prune(net: NodeNetwork, address: str, other: str) -> None:
    """*address* prunes its link to *other*, as after a duplicate from it."""
    net.link_to(address, other).eager = False
    net.perform(address, [SendPeer(net.link_id(address, other), pw.encode(pw.Prune()))])


@pytest.mark.parametrize("change", [{"insert": "!", "at": 11}, {"delete": 6, "at": 0}], ids=["insert", "delete"])
def test_a_peer_left_off_the_tree_grafts_what_an_ihave_names(change: dict[str, Any]) -> None:
    """c's every link is lazy (pruned by changes from several sources, say):
    it hears of a's next change in an IHAVE, asks that link for it (GRAFT)
    when it has not come 0.1 s later, gets it, and that link is eager from
    then on. A deletion (which leaves state vectors as they were) is named
    by its range and mends the same way."""
    net = clique("abcd")
    net.perform("a", net.nodes["a"].edit("doc", net.now, insert="hello world"))
    assert net.link_to("a", "c").eager and not net.link_to("b", "c").eager
    prune(net, "c", "a")
    assert not any(net.link_to("c", x).eager or net.link_to(x, "c").eager for x in "abd")
    net.sent.clear()
    net.perform("a", net.nodes["a"].edit("doc", net.now, **change))
    assert texts(net)["c"] == "hello world" != texts(net)["a"]
    net.run_until(0.5)  # lazy_interval + graft_after = 0.3 s; no anti-entropy here
    assert len(set(texts(net).values())) == 1, texts(net)
    assert any(y == "c" for _, y, _ in sent(net, pw.IHave))
    [(asker, grafted)] = [(x, y) for x, y, _ in sent(net, pw.Graft)]
    assert asker == "c"
    assert net.link_to("c", grafted).eager and net.link_to(grafted, "c").eager
    net.sent.clear()
    net.perform("a", net.nodes["a"].edit("doc", net.now, insert="?"))
    assert len(set(texts(net).values())) == 1  # pushed along the mended tree at once
    assert not sent(net, pw.Graft)


def test_losing_a_link_of_the_tree_makes_every_link_eager_again():
    """When the eager link a–c closes, both ends graft all their lazy links
    at once: a's next change reaches c without waiting for an IHAVE, and its
    duplicates prune a new tree."""
    net = clique("abcd")
    net.perform("a", net.nodes["a"].edit("doc", net.now, insert="hello"))
    net.sent.clear()
    net.close("a", "c")
    assert sorted(x for x, _, m in sent(net, pw.Graft) if m == pw.Graft(())) == ["c", "c"]  # a had no lazy link
    assert all(net.link_to("c", x).eager and net.link_to(x, "c").eager for x in "bd")
    net.perform("a", net.nodes["a"].edit("doc", net.now, insert="!", at=5))
    assert set(texts(net).values()) == {"hello!"}
    assert sent(net, pw.Prune)  # c heard it from b and from d


def test_an_ihave_for_what_is_here_asks_for_nothing():
    net = clique("abc")
    net.perform("a", net.nodes["a"].edit("doc", net.now, insert="x"))
    net.perform("a", net.nodes["a"].edit("doc", net.now, insert="y"))
    net.run_until(1.0)
    ihaves = sent(net, pw.IHave)
    assert ihaves  # b and c are lazy to each other and both had a's changes
    assert not sent(net, pw.Graft)


def two_changes() -> tuple[bytes, bytes]:
    """Two updates by another author, the second built on the first."""
    source = Node(b"s".ljust(16, b"\0"), "s", random.Random(1), lambda: 99, quiet())
    [first] = [e.update for e in source.edit("doc", 0.0, insert="one") if isinstance(e, DocChanged)]
    [second] = [e.update for e in source.edit("doc", 0.0, insert="two", at=3) if isinstance(e, DocChanged)]
    return first, second


def test_an_update_that_waits_for_its_causes_does_not_prune():
    """Only an UPDATE that brought nothing new prunes its link: one that
    has to wait in the causal buffer is news. (b also has a link to c, so
    a is not its last eager link.)"""
    net = clique("abc")
    first, second = two_changes()
    link = net.link_id("a", "b")
    net.perform("a", [SendPeer(link, pw.encode(pw.Update("doc", second)))])
    assert not sent(net, pw.Prune) and net.link_to("a", "b").eager
    net.perform("a", [SendPeer(link, pw.encode(pw.Update("doc", first)))])
    assert net.nodes["b"].documents["doc"].text == "onetwo"
    net.perform("a", [SendPeer(link, pw.encode(pw.Update("doc", first)))])
    assert ("b", "a") in [(x, y) for x, y, _ in sent(net, pw.Prune)]
    assert not net.link_to("a", "b").eager and not net.link_to("b", "a").eager


def test_what_anti_entropy_brought_first_prunes_nothing():
    """While people type, an anti-entropy round can bring a change before
    its push does. That push is no sign of a redundant link: pruning on it
    would cut the tree (and leave peers to the slower IHAVE path)."""
    net = clique("abc")
    first, _ = two_changes()
    a_to_b = net.link_id("a", "b")
    net.perform("a", [SendPeer(a_to_b, pw.encode(pw.SyncStep2("doc", first)))])
    # b pushed it to c, c to a, and a's push reached b, which had it by sync.
    assert set(texts(net).values()) == {"one"}
    assert ("a", "b") in [(x, y) for x, y, _ in sent(net, pw.Update)]
    assert not sent(net, pw.Prune) and net.link_to("b", "a").eager


def test_a_peer_keeps_its_last_eager_link():
    """A PRUNE on the last eager link is answered with an empty GRAFT, and
    a duplicate on it prunes nothing: prunes from both ends of a peer's
    links can cross, and would leave it to IHAVEs alone."""
    net = clique("abc")
    prune(net, "c", "b")  # b's only other link is now lazy
    net.sent.clear()
    prune(net, "a", "b")
    assert [(x, y) for x, y, m in sent(net, pw.Graft) if m == pw.Graft(())] == [("b", "a")]
    assert net.link_to("a", "b").eager and net.link_to("b", "a").eager
    first, _ = two_changes()
    link = net.link_id("a", "b")
    net.perform("a", [SendPeer(link, pw.encode(pw.Update("doc", first)))])
    net.sent.clear()
    net.perform("a", [SendPeer(link, pw.encode(pw.Update("doc", first)))])
    assert not sent(net, pw.Prune)


def test_a_lazy_link_that_is_faster_replaces_the_eager_one():
    """An IHAVE from a that comes well before the pushed copy through b
    shows that the tree takes a detour: c makes a eager and b lazy."""
    net = clique("abc")
    prune(net, "c", "a")
    assert net.link_to("c", "b").eager and not net.link_to("c", "a").eager
    first, _ = two_changes()
    c = net.nodes["c"]
    a_to_c = net.link_id("a", "c")
    b_to_c = net.link_id("b", "c")
    net.perform("a", [SendPeer(a_to_c, pw.encode(pw.IHave("doc", ((99, 3),), ())))])
    net.now = c.config.swap_after  # the copy through b comes that much later
    net.sent.clear()
    net.perform("b", [SendPeer(b_to_c, pw.encode(pw.Update("doc", first)))])
    assert c.documents["doc"].text == "one"
    assert sorted((x, y, type(m).__name__) for x, y, m in net.sent if isinstance(m, (pw.Graft, pw.Prune))) == [
        ("c", "a", "Graft"),
        ("c", "b", "Prune"),
    ]
    assert net.link_to("c", "a").eager and not net.link_to("c", "b").eager


def test_cursors_follow_the_eager_links():
    """Once a's change has pruned the clique to a star around a, b's cursor
    goes to a alone (which relays it), not to all three neighbours."""
    net = clique("abcd")
    net.perform("a", net.nodes["a"].edit("doc", net.now, insert="x"))
    net.sent.clear()
    awareness = bytes([1, 7, 1, 2]) + b"{}"  # one client, clock 1, state "{}"
    net.perform("b", net.nodes["b"].local_awareness("doc", awareness))
    assert [(x, y) for x, y, _ in sent(net, pw.Awareness)] == [("b", "a")]


# -- anti-entropy ---------------------------------------------------------------


def test_each_pass_of_anti_entropy_visits_every_link_once():
    """Partners are taken in turn from a shuffled list of the links: each six
    rounds reach six different links (a random choice per round repeats one
    in 98% of passes)."""
    net = NodeNetwork()
    hub = net.add("hub", quiet(active_target=6, ae_interval=1.0, ae_idle_factor=1))
    for name in "abcdef":
        net.add(name, quiet())
        net.link("hub", name)
    targets: list[int] = []
    while len(targets) < 24:
        net.now = round(net.now + 0.01, 6)
        effects = hub.tick(net.now)
        targets += digests_sent(effects)
        net.perform("hub", effects)
    assert net.now < 25.0
    for start in range(0, 24, 6):
        assert len(set(targets[start : start + 6])) == 6, targets


def test_anti_entropy_starts_at_a_random_phase():
    """Peers whose first links open in the same instant do not all start
    their rounds in that instant: the first round comes at a random point of
    the interval."""
    firsts = []
    for seed in range(20):
        net = NodeNetwork()
        a = net.add("a", quiet(ae_interval=1.0), seed)
        net.add("b", quiet())
        net.link("a", "b")
        for step in range(1, 201):
            now = step * 0.01
            if digests_sent(a.tick(now)):
                firsts.append(now)
                break
    assert len(firsts) == 20
    assert min(firsts) < 0.3 and max(firsts) > 0.7, firsts
    assert all(0 < t <= 1.0 for t in firsts)


def test_a_round_leaves_both_sides_with_the_union():
    """One DIGEST from a to b moves a's change to b and b's change to a."""
    net = NodeNetwork()
    a = net.add("a", quiet(push=False))
    b = net.add("b", quiet(push=False))
    link = net.link("a", "b")
    net.perform("a", a.edit("doc", net.now, insert="from a"))
    net.perform("b", b.edit("doc", net.now, insert="from b "))
    assert a.root_digest() != b.root_digest()
    net.perform("a", [SendPeer(link, pw.encode(pw.Digest(a.root_digest(), len(a.documents))))])
    assert a.documents["doc"].text == b.documents["doc"].text
    assert "from a" in a.documents["doc"].text and "from b" in a.documents["doc"].text
    assert a.root_digest() == b.root_digest()


# -- shuffling --------------------------------------------------------------------


def shuffle_net(c_busy: bool) -> NodeNetwork:
    """a has links to b1 and b2 (its target) and knows c."""
    net = NodeNetwork()
    a = net.add("a", quiet(active_target=2, shuffle_interval=10.0))
    for name in ("b1", "b2"):
        net.add(name, quiet())
        net.link("a", name)
    net.add("c", quiet(active_max=0 if c_busy else 8))
    a.known.add("c", b"c".ljust(16, b"\0"))
    return net


def test_shuffle_replaces_a_link_by_one_to_a_random_known_peer():
    net = shuffle_net(c_busy=False)
    net.run_until(19.99)  # the first shuffle comes between 10 and 20 s, the next 10 s later
    assert net.neighbours("a") in ({"b1", "c"}, {"b2", "c"}), net.neighbours("a")
    assert [(at, reason) for _, at, _, reason in net.closes] == [("a", "shuffle: replaced by a link to another peer")]
    # A BYE tells the other end that its peer is alive (it keeps the cursors that came through the link).
    assert [(x, m) for x, _, m in sent(net, pw.Bye)] == [("a", pw.Bye("shuffle: replaced by a link to another peer"))]


def test_shuffle_closes_nothing_when_the_new_link_is_refused():
    net = shuffle_net(c_busy=True)
    net.run_until(19.99)
    assert net.neighbours("a") == {"b1", "b2"}
    assert [(at, reason) for _, at, _, reason in net.closes] == [("c", "busy: enough links")]


def test_no_shuffle_while_every_known_peer_is_linked():
    net = NodeNetwork()
    net.add("a", quiet(active_target=2, shuffle_interval=10.0))
    for name in ("b1", "b2"):
        net.add(name, quiet())
        net.link("a", name)
    net.run_until(60.0, step=0.1)
    assert net.closes == []
    assert net.neighbours("a") == {"b1", "b2"}


# -- membership -------------------------------------------------------------------


def test_a_busy_peer_is_redialled_ever_later():
    """A peer that answers every dial with PEERS and BYE (busy) is tried
    again after about 1, 2, 4, 8, 16 s: its HELLO does not reset the wait,
    only a kept link (its first DIGEST) does. Reset by HELLO, the wait stays
    at 1 s and the busy peer is dialled 40 times a minute."""
    net = NodeNetwork()
    a = net.add("a", quiet(active_target=1))
    net.add("busy", quiet(active_max=0))
    net.perform("a", a.join("busy", 0.0))
    net.run_until(60.0)
    refusals = [when for when, at, _, reason in net.closes if at == "busy"]
    assert 5 <= len(refusals) <= 7, refusals
    gaps = [later - earlier for earlier, later in itertools.pairwise(refusals)]
    assert all(later > earlier for earlier, later in itertools.pairwise(gaps)), gaps
    assert a.known.by_address["busy"].failures == len(refusals)


def test_a_kept_link_forgets_the_failures():
    net = NodeNetwork()
    a = net.add("a", quiet(active_target=1))
    net.add("b", quiet())
    a.known.add("b")
    a.known.by_address["b"].failures = 4
    net.link("a", "b")  # b keeps it: PEERS, then DIGEST
    assert a.known.by_address["b"].failures == 0


# -- catch-up -----------------------------------------------------------------------


def test_a_returning_peer_receives_what_it_missed_once():
    """Both ends of a new link open with a round; the two rounds must not
    each send the whole diff (nor a third round while one is under way)."""
    net = NodeNetwork()
    a = net.add("a", quiet(push=False))
    b = net.add("b", quiet(push=False))
    net.perform("a", a.edit("doc", net.now, insert="shared text " * 50))
    net.perform("b", b.edit("other", net.now, insert="b's own"))
    net.link("a", "b")
    assert a.root_digest() == b.root_digest()
    first = [m for frm, to, m in net.sent if frm == "a" and isinstance(m, pw.SyncStep2) and m.name == "doc"]
    assert len(first) == 1, [type(m).__name__ for _, _, m in net.sent]
    # b goes away; a changes 1%; b comes back.
    net.close("a", "b", "b stops")
    net.perform("a", a.edit("doc", net.now, insert="CHANGED", at=100))
    net.sent.clear()
    net.link("b", "a")
    assert a.documents["doc"].text == b.documents["doc"].text
    diffs = [m for frm, to, m in net.sent if to == "b" and isinstance(m, pw.SyncStep2) and m.name == "doc"]
    assert len(diffs) == 1, [(frm, type(m).__name__) for frm, _, m in net.sent]


def test_what_a_lossy_network_loses_is_mended():
    """Four peers type while the network drops, duplicates and reorders
    frames (``LOSSY``): once they stop, the lazy links' IHAVEs and the
    anti-entropy rounds have brought every change everywhere."""
    net = NodeNetwork(LOSSY, seed=7)
    for seed, name in enumerate("abcd"):
        net.add(name, quiet(ae_interval=1.0), seed)
    for i, name in enumerate("abcd"):
        for other in "abcd"[i + 1 :]:
            net.link(name, other)
    net.run_until(0.5)
    words = []
    for i in range(80):
        author = "abcd"[i % 4]
        words.append(f"{author}{i}")
        net.perform(author, net.nodes[author].edit("doc", net.now, insert=words[-1] + " "))
        net.run_until(net.now + 0.02)
    net.run_until(net.now + 5.0)
    final = texts(net)
    assert len(set(final.values())) == 1, final
    assert all(word in final["a"].split() for word in words), final["a"]


# -- joining --------------------------------------------------------------------------


def test_a_join_address_is_dialled_until_it_answers_even_with_full_links():
    """A peer whose links filled up (others joined through it) before its
    own join address was up still reaches that address once; after that the
    address is like any other and a full peer does not dial it."""
    net = NodeNetwork()
    a = net.add("a", quiet(active_target=1, active_max=2))
    net.add("b", quiet())
    net.link("b", "a")  # b joined through a: a's one link is taken
    net.perform("a", a.join("c", net.now))  # c is not up yet
    assert "c" not in net.neighbours("a")
    net.add("c", quiet())
    net.run_until(net.now + 60)  # the failed dial's backoff runs out
    assert "c" in net.neighbours("a")
    net.close("a", "c", "test closes it")
    assert "c" not in net.neighbours("a")
    net.run_until(net.now + 60)
    assert "c" not in net.neighbours("a"), "a full peer dialled an ordinary known address"


def test_a_silent_link_is_closed_once_and_replaced_at_once():
    """A link gone silent is asked closed once, not on every tick while its
    close completes (a partition used to log thousands of closes), its
    timer is not due again, and its slot is dialled anew meanwhile."""
    net = NodeNetwork()
    a = net.add("a", quiet(active_target=1, dead_after=5.0))
    net.add("b", quiet())
    net.add("c", quiet())
    link = net.link("a", "b")
    a.known.add("c", b"c".ljust(16, b"\0"))
    closes = []
    for step in range(1, 801):
        now = step * 0.01
        effects = a.tick(now)  # not performed: b's side never answers, the close never completes
        closes += [e for e in effects if isinstance(e, CloseLink)]
        if closes and any(isinstance(e, Dial) for e in effects):
            break
    assert [c.link for c in closes] == [link] and "silent" in closes[0].reason
    assert any(isinstance(e, Dial) and e.address == "c" for e in effects)
    assert a.next_deadline(now) > now + 0.5  # nothing due for the closing link


def test_a_quiet_peer_slows_its_rounds_and_a_change_brings_them_back():
    """(antientropy rule 4) Rounds that find nothing double the wait, up to
    ae_idle_factor intervals; an edit makes the next round come within one."""
    net = NodeNetwork()
    a = net.add("a", quiet(ae_interval=1.0, ae_idle_factor=8))
    net.add("b", quiet())
    net.link("a", "b")
    rounds: list[float] = []
    while net.now < 120.0:
        net.now = round(net.now + 0.05, 6)
        effects = a.tick(net.now)
        rounds += [net.now] * len(digests_sent(effects))
        net.perform("a", effects)
    gaps = [later - earlier for earlier, later in itertools.pairwise(rounds)]
    assert gaps[0] < 1.5 and max(gaps) > 7.5 and max(gaps) < 8.5, gaps
    net.perform("a", a.edit("notes", net.now, insert="x"))
    before = len(rounds)
    start = net.now
    while len(rounds) == before:
        net.now = round(net.now + 0.05, 6)
        effects = a.tick(net.now)
        rounds += [net.now] * len(digests_sent(effects))
        net.perform("a", effects)
    assert rounds[-1] - start <= 1.05
