"""Spaces under faults: peers in 2-3 spaces with overlapping members join
with invites, edit, change roles (writer to reader, reader to writer),
remove members with a new key (one removal made by an admin on one side of a
partition while an admin on the other side changes the same member's
role, and maybe removes the first admin), move documents from one space to
another, and readers try to edit:
typed into their own replica, and as raw UPDATE frames on their links. All
of it under loss, duplication, reordering, a partition and crash-restarts
(a peer comes back from its stored documents, roster ops and keys).

After healing, every member of a space holds the same roster and the same
documents; no unit holds anything of another space; a removed peer got
nothing made after every member knew of its removal, and can link to no
member; no reader's edit is in any replica but the reader's own. A control
run without the gate shows the reader check failing.

One thing the writers-only rule cannot give: an edit that only readers (or
its author) held when its author lost the right to write stays with them,
since no peer takes changes from a reader, nor from the author any more. Such
edits are counted ("stranded"), must be in no writer's replica, and are set
aside in the comparison like a reader's own typing. Any failure names its
seed:

    pytest tests/sim/test_spaces_sim.py --sim-first-seed SEED --sim-seeds 1
"""

from __future__ import annotations

import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field

import pytest
from nodenet import Faults
from spacenet import SpaceNet, Unit

from crdt import roster as rs

HEAL_DEADLINE = 400.0  # virtual seconds after healing for everything to settle


@dataclass
class Edit:
    space: int
    peer: int
    ranges: list[tuple[int, int, int]]  # (client, clock before, clock after)
    at: float
    text: str
    reader: bool = False
    raw: bool = False  # sent as an UPDATE frame: not in the reader's replica either
    name: str = ""


@dataclass
class Removal:
    space: int
    peer: int
    op: bytes  # the REMOVE's hash
    known: float | None = None  # when every other unit of the space held the REMOVE
    names_then: set[str] = field(default_factory=set)  # the documents the space had then


@dataclass
class Record:
    edits: list[Edit] = field(default_factory=list)
    removals: list[Removal] = field(default_factory=list)
    created: dict[tuple[int, str], float] = field(default_factory=dict)  # (space, name) -> first made
    imported: dict[int, set[int]] = field(default_factory=dict)  # space -> clients a move brought in
    tainted: dict[tuple[str, str], list[tuple[int, int, int]]] = field(default_factory=dict)
    done: dict[str, int] = field(default_factory=dict)
    concurrent: tuple[int, int] | None = None  # (space, peer): removed on one side, role changed on the other
    demoted: set[tuple[int, int]] = field(default_factory=set)  # (space, peer) made a reader

    def count(self, what: str) -> None:
        self.done[what] = self.done.get(what, 0) + 1


def _members_plan(net: SpaceNet, n: int, spaces: int) -> list[dict[int, rs.Role]]:
    rng = net.rng
    plans = []
    for k in range(spaces):
        others = [i for i in range(n) if i != k]
        members = [k, *rng.sample(others, rng.randint(4, n - 1))]
        roles: dict[int, rs.Role] = {k: "admin", members[1]: "admin", members[2]: "writer", members[3]: "reader"}
        for i in members[4:]:
            roles[i] = rng.choice(["writer", "reader"])
        plans.append(roles)
    return plans


def _units(net: SpaceNet, k: int) -> list[Unit]:
    return [p.units[k] for p in net.peers if k in p.units]


def _settled(net: SpaceNet, k: int) -> rs.Roster | None:
    """The roster of space *k* when every unit not removed in it holds the
    same one (down units by what they stored), else None."""
    rosters = [u.access.roster for u in _units(net, k) if u.access is not None]
    ref = max(rosters, key=len)
    for u in _units(net, k):
        assert u.access is not None
        if net.peers[u.peer].peer_id not in ref.removed and u.access.roster.heads != ref.heads:
            return None
    return ref


def _role(net: SpaceNet, k: int, i: int, roster: rs.Roster | None = None) -> rs.Role | None:
    r = roster or net.unit(i, k).access.roster  # type: ignore[union-attr]
    return r.role(net.peers[i].peer_id)


def run_spaces(seed: int, n: int | None = None) -> tuple[SpaceNet, Record]:
    net = SpaceNet(seed, n or 5 + seed % 3, Faults(drop=0.05, duplicate=0.02))
    rng = net.rng
    n = len(net.peers)
    spaces = 2 + seed % 2
    rec = Record()
    plans = _members_plan(net, n, spaces)
    for k in range(spaces):
        net.create_space(k, f"space-{k}")
    for k, plan in enumerate(plans):
        for i, role in plan.items():
            if i != k:
                net.invite(k, k, i, role)
    t = 0.0
    # The joins settle before anything else (an admin's invite needs it up).
    while not all(_settled(net, k) is not None and len(_settled(net, k).members) == len(plans[k])  # type: ignore[union-attr]
                  for k in range(spaces)):  # fmt: skip
        t += 1.0
        net.run_until(t)
        assert t < 200, f"seed {seed}: the joins did not settle"
    # A link between two units of different spaces is refused at HELLO.
    shared = [
        (a, b) for a in range(n) for b in range(n) if a != b and 0 in net.peers[a].units and 1 in net.peers[b].units
    ]
    a, b = rng.choice(shared)
    net.cross_link(net.unit(a, 0).address, net.unit(b, 1).address)
    net.run_until(t + 1)
    refused = "protocol error: this link is for another space"
    assert any(r == refused for _, _, _, r in net.closes), f"seed {seed}: cross link kept"

    # The plan of the special events.
    promote = next((k, i) for k in range(spaces) for i, r in plans[k].items() if r == "reader")
    demote = next((k, i) for k in range(spaces) for i, r in plans[k].items() if r == "writer" and (k, i) != promote)
    c_space = rng.randrange(spaces)
    admins = [i for i, r in plans[c_space].items() if r == "admin"]
    # The concurrent pair: a writer demoted on one side, removed on the other
    # (a reader, promoted, if the space has no other writer).
    victims = [i for i, r in plans[c_space].items() if r == "writer" and (c_space, i) not in (promote, demote)]
    victims = victims or [
        i for i, r in plans[c_space].items() if r == "reader" and (c_space, i) not in (promote, demote)
    ]
    victim = rng.choice(victims) if victims else None
    p_space = (c_space + 1) % spaces
    p_victims = [i for i, r in plans[p_space].items() if r != "admin" and (p_space, i) not in (promote, demote)]
    p_victim = rng.choice(p_victims)
    movers = [i for i in range(n) if sum(plans[k].get(i) in ("admin", "writer") for k in range(spaces)) >= 2]
    docs = {k: [f"s{k}-d{j}" for j in range(3)] for k in range(spaces)}
    # Readers that become writers, even for a while: what they typed as
    # readers would spread once they write (their browsers would have refused it).
    never_local = {promote, (c_space, victim)}
    quiet: set[tuple[int, int]] = set()  # readers that send nothing for now

    def act() -> None:
        i = rng.randrange(n)
        if not net.peers[i].up or not net.peers[i].units:
            return
        k = rng.choice(sorted(net.peers[i].units))
        unit = net.unit(i, k)
        net.ensure_loaded(unit)
        engine = unit.engine
        assert engine is not None and unit.access is not None
        my = unit.access.my_role
        roll = rng.random()
        if my in ("admin", "writer"):
            live = [d for d in docs[k] if engine.gone(d) is None]
            if not live:
                return
            name = rng.choice(live)
            if name in engine.documents and engine.documents[name].text and roll < 0.25:
                text = engine.documents[name].text
                ranges = net.delete_text(i, k, name, rng.randrange(len(text)), rng.randint(1, 3))
                rec.edits.append(Edit(k, i, ranges, net.now, "", name=name))
                rec.count("delete")
                return
            rec.created.setdefault((k, name), net.now)
            text = f"<{k}.{i}.{len(rec.edits)}>"
            where = rng.randint(0, len(engine.documents[name].text)) if name in engine.documents else 0
            rec.edits.append(Edit(k, i, net.author(i, k, name, text, where), net.now, text, name=name))
            rec.count("edit")
            return
        if my != "reader":
            return
        settled = _settled(net, k)
        if settled is None or _role(net, k, i, settled) != "reader" or (k, i) in quiet:
            return
        held = [d for d in docs[k] if d in engine.documents and engine.gone(d) is None]
        if not held:
            return
        name = rng.choice(held)
        text = f"READER-{k}-{i}-{len(rec.edits)}."
        if roll < 0.5 or (k, i) in never_local:
            ranges = net.inject_update(i, k, name, text)
            rec.edits.append(Edit(k, i, ranges, net.now, text, reader=True, raw=True, name=name))
            rec.count("reader-raw")
        else:
            ranges = net.author(i, k, name, text)
            rec.edits.append(Edit(k, i, ranges, net.now, text, reader=True, name=name))
            rec.tainted.setdefault((unit.address, name), []).extend(ranges)
            rec.count("reader-local")

    def track_removals() -> None:
        for removal in rec.removals:
            if removal.known is not None:
                continue
            units = [u for u in _units(net, removal.space) if u.peer != removal.peer and u.access is not None]
            gone = {net.peers[r.peer].peer_id for r in rec.removals if r.space == removal.space}
            digest = removal.op
            if all(digest in u.access.roster for u in units if net.peers[u.peer].peer_id not in gone):  # type: ignore[union-attr]
                removal.known = net.now
                removal.names_then = {name for (k, name) in rec.created if k == removal.space}

    def steps(count: int) -> None:
        nonlocal t
        for _ in range(count):
            t += rng.uniform(0.02, 0.3)
            net.run_until(t)
            track_removals()
            act()

    steps(35)
    # What a reader sends just before it may write could be taken by a peer
    # that already knows it may: the reader about to be promoted stays quiet.
    quiet.add(promote)
    steps(5)
    # Phase 1: role changes, both ways, and a document move.
    k, i = promote
    assert net.set_role(k, k, i, "writer")
    k, i = demote
    assert net.set_role(k, k, i, "reader")
    rec.demoted.add(demote)
    never_local.discard(promote)
    steps(40)
    if movers:
        mover = rng.choice(movers)
        pair = [k for k in range(spaces) if plans[k].get(mover) in ("admin", "writer")]
        src, dst = rng.sample(pair, 2)
        net.ensure_loaded(net.unit(mover, src))
        net.ensure_loaded(net.unit(mover, dst))
        engine = net.engine(mover, src)
        live = [d for d in docs[src] if d in engine.documents and engine.gone(d) is None]
        if live and _role(net, src, mover) in ("admin", "writer") and _role(net, dst, mover) in ("admin", "writer"):
            name = rng.choice(live)
            rec.imported.setdefault(dst, set()).update(net.move(mover, src, dst, name))
            rec.created.setdefault((dst, name), net.now)
            docs[dst].append(name)
            rec.count("move")
    steps(20)

    # Phase 2: a partition; an admin on each side acts on the same member.
    if victim is not None and len(admins) >= 2:
        a1, a2 = admins[0], admins[1]
        side = [a1] + [j for j in range(n) if j not in (a1, a2) and rng.random() < 0.5]
        net.set_partition([side, [j for j in range(n) if j not in side]])
        net.run_until(t := t + 0.5)
        role: rs.Role = "reader" if plans[c_space][victim] == "writer" else "writer"
        # Maybe the admin on that side also removes the other, before or
        # after the role change: of two concurrent removals, the first in
        # the replay order applies, and the other too if its author is
        # still an admin then; the same on every peer.
        mutual = rng.choice([None, "before", "after"])
        for step in ("before", "role", "after"):
            if step == "role" and net.set_role(c_space, a2, victim, role):
                rec.count("concurrent-role")
                rec.demoted.add((c_space, victim))
            if step == mutual:
                removing = net.remove(c_space, a2, a1)
                if removing is not None:
                    rec.removals.append(Removal(c_space, a1, removing))
                    rec.count("mutual-remove")
        op = net.remove(c_space, a1, victim)
        if op is not None:
            rec.removals.append(Removal(c_space, victim, op))
            rec.concurrent = (c_space, victim)
            rec.count("remove")
    else:
        half = rng.sample(range(n), n // 2)
        net.set_partition([half, [j for j in range(n) if j not in half]])
    steps(40)

    # Phase 3: crashes (the other removal's victim may be down when it happens), restarts, heal.
    p_admin = p_space  # the space's first admin (the victim is not an admin)
    crashed = rng.sample([j for j in range(n) if j != p_admin], 2)
    if rng.random() < 0.5 and p_victim not in crashed:
        crashed[0] = p_victim
    for j in crashed:
        net.crash(j)
    steps(15)
    op = net.remove(p_space, p_admin, p_victim)
    if op is not None:
        rec.removals.append(Removal(p_space, p_victim, op))
        rec.count("remove")
    steps(15)
    for j in crashed:
        net.restart(j)
    net.set_partition(None)
    steps(40)

    # Heal: no more faults, everyone up; wait (virtual time) until it settles.
    net.faults = Faults(drop=0.0, duplicate=0.0, max_delay=net.faults.max_delay)
    for j in range(n):
        net.restart(j)
    deadline = t + HEAL_DEADLINE
    while True:
        t += 5.0
        net.run_until(t)
        track_removals()
        if _converged(net, rec) or t > deadline:
            break
    rec.done["heal-seconds"] = int(t - deadline + HEAL_DEADLINE)
    # More edits after everyone knows of the removals: none may reach the removed.
    steps(30)
    net.run_until(t := t + 60.0)
    track_removals()
    return net, rec


def _converged(net: SpaceNet, rec: Record) -> bool:
    """Every member of every space holds the same roster, the same
    documents and the same states (a reader's own typing aside)."""
    for k in range(len(net.spaces)):
        roster = _settled(net, k)
        if roster is None:
            return False
        names: set[tuple[str, ...]] = set()
        digests: dict[str, set[bytes | None]] = {}
        for u in _units(net, k):
            if roster.role(net.peers[u.peer].peer_id) is None or u.engine is None:
                continue
            replicas = u.engine.node.replicas
            names.add(tuple(replicas.held()))
            for name in replicas.held():
                if (u.address, name) not in rec.tainted and roster.role(net.peers[u.peer].peer_id) != "reader":
                    digests.setdefault(name, set()).add(replicas.digest_of(name))
        if len(names) > 1 or any(len(d) > 1 for d in digests.values()):
            return False
    return True


def _covers(sv: dict[int, int], ranges: list[tuple[int, int, int]]) -> bool:
    """Whether a replica with state vector *sv* holds anything of *ranges*."""
    return any(sv.get(client, 0) > lo for client, lo, _ in ranges)


def _seed_msg(net: SpaceNet) -> str:
    return f"seed {net.seed} (replay: pytest tests/sim/test_spaces_sim.py --sim-first-seed {net.seed} --sim-seeds 1)"


def check_no_reader_edits(net: SpaceNet, rec: Record) -> None:
    """No reader's edit is in any replica but the reader's own (of that space)."""
    for edit in (e for e in rec.edits if e.reader):
        own = net.unit(edit.peer, edit.space).address
        for address, unit in net.units.items():
            assert unit.engine is not None
            for name, doc in unit.engine.documents.items():
                if address == own and not edit.raw:
                    continue
                assert not _covers(doc.state_vector(), edit.ranges) and edit.text not in doc.text, (
                    f"{_seed_msg(net)}: the reader edit {edit.text!r} of p{edit.peer} is in {address}'s {name}"
                )


def check_spaces(net: SpaceNet, rec: Record) -> None:
    for unit in net.units.values():
        net.ensure_loaded(unit)
    for k in range(len(net.spaces)):
        units = _units(net, k)
        roster = _settled(net, k)
        assert roster is not None, f"{_seed_msg(net)}: the members of space {k} hold different rosters"
        members = [u for u in units if roster.role(net.peers[u.peer].peer_id) is not None]
        assert len(members) >= 3
        for u in members:
            assert u.access is not None and u.engine is not None
            r = u.access.roster
            assert (r.heads, r.members, r.epoch) == (roster.heads, roster.members, roster.epoch)
            assert r.rotation in u.access.keys, f"{_seed_msg(net)}: {u.address} lacks the key of epoch {r.epoch}"
            assert not any(d.pending_count() for d in u.engine.documents.values())
        # The same documents, names, Trash and states (a reader's own typing aside).
        writers = [u for u in members if roster.role(net.peers[u.peer].peer_id) in ("admin", "writer")]
        ref = next(u for u in writers if not any(a == u.address for a, _ in rec.tainted))
        assert ref.engine is not None
        # The edits of a writer that lost its rights (demoted, removed) which
        # no writer had taken when the others learned of it stay with its
        # author and the readers that took them (no peer takes them from a
        # reader, nor from it any more): no writer may hold them, and they
        # are set aside like a reader's typing.
        applied = {op.hash for op, effect in roster.history() if effect}
        lost = rec.demoted | {(r.space, r.peer) for r in rec.removals if r.op in applied}
        for edit in rec.edits:
            if edit.space != k or (k, edit.peer) not in lost or edit.reader:
                continue
            held = ref.engine.documents.get(edit.name)
            if held is not None and _covers(held.state_vector(), edit.ranges):
                continue
            rec.count("stranded")
            for u in [*members, net.unit(edit.peer, k)]:
                doc = u.engine.documents.get(edit.name) if u.engine is not None else None
                if doc is None or not _covers(doc.state_vector(), edit.ranges):
                    continue
                assert u not in writers, (
                    f"{_seed_msg(net)}: {edit.text!r}, stranded with p{edit.peer}, is in {u.address}"
                )
                rec.tainted.setdefault((u.address, edit.name), []).extend(edit.ranges)
        want = {name: (d.text, d.digest(), d.state_vector()) for name, d in ref.engine.documents.items()}
        want_live = dict(ref.engine.registry.live())
        for u in members:
            assert u.engine is not None
            got = {name: (d.text, d.digest(), d.state_vector()) for name, d in u.engine.documents.items()}
            assert got.keys() == want.keys(), f"{_seed_msg(net)}: {u.address} holds {sorted(got)}, not {sorted(want)}"
            assert dict(u.engine.registry.live()) == want_live, f"{_seed_msg(net)}: {u.address}'s names differ"
            for name, (text, digest, sv) in got.items():
                taint = rec.tainted.get((u.address, name))
                if taint is None:
                    assert (text, digest) == want[name][:2], (
                        f"{_seed_msg(net)}: {u.address}'s {name} differs from {ref.address}'s"
                    )
                    continue
                capped = dict(sv)
                for client, lo, _ in taint:
                    capped[client] = min(capped.get(client, 0), lo)
                capped = {c: v for c, v in capped.items() if v}
                assert capped == want[name][2], (
                    f"{_seed_msg(net)}: {u.address}'s {name} differs beyond its reader's typing"
                )
        # Nothing of another space: every client in a replica was drawn in this one or moved in.
        legit = rec.imported.get(k, set())
        for u in units:
            assert u.engine is not None
            for name, doc in u.engine.documents.items():
                strange = [c for c in doc.state_vector() if net.clients.get(c) != k and c not in legit]
                assert not strange, f"{_seed_msg(net)}: {u.address}'s {name} holds changes of another space"
    check_no_reader_edits(net, rec)
    for removal in rec.removals:
        check_removed(net, rec, removal)
    if rec.done.get("reader-raw"):
        assert any(e.what == "edit" for _, e in net.refused), f"{_seed_msg(net)}: no reader's UPDATE was refused"


def check_removed(net: SpaceNet, rec: Record, removal: Removal) -> None:
    k, x = removal.space, removal.peer
    unit = net.unit(x, k)
    roster = _settled(net, k)
    assert roster is not None
    effects = {op.hash: effect for op, effect in roster.history()}
    if not effects.get(removal.op):
        # Its author was removed first (concurrent removals), and the op has
        # no effect, or it reached no one else before (no member takes
        # anything from a removed peer): the target is still a member.
        author = next(r.peer for r in rec.removals if r.space == k and r.peer != x)
        assert roster.role(net.peers[author].peer_id) is None, f"{_seed_msg(net)}: p{x}'s removal did nothing"
        assert roster.role(net.peers[x].peer_id) is not None, f"{_seed_msg(net)}: p{x} gone from space {k}"
        rec.count("removal-void" if removal.op in effects else "removal-lost")
        return
    assert roster is not None and roster.role(net.peers[x].peer_id) is None, (
        f"{_seed_msg(net)}: p{x} still in space {k}"
    )
    assert removal.known is not None, f"{_seed_msg(net)}: the removal of p{x} from space {k} never reached every member"
    assert unit.engine is not None
    held = set(unit.engine.documents)
    assert held <= removal.names_then, f"{_seed_msg(net)}: removed p{x} got {sorted(held - removal.names_then)}"
    later = [e for e in rec.edits if e.space == k and e.at > removal.known]
    for edit in later:
        if edit.peer == x:
            for u in _units(net, k):
                if u.peer != x and u.engine is not None:
                    assert not any(_covers(d.state_vector(), edit.ranges) for d in u.engine.documents.values()), (
                        f"{_seed_msg(net)}: {edit.text!r}, typed by removed p{x}, reached {u.address}"
                    )
            continue
        for name, doc in unit.engine.documents.items():
            assert not _covers(doc.state_vector(), edit.ranges), (
                f"{_seed_msg(net)}: removed p{x} got {edit.text!r} in {name}, made after its removal"
            )
    # It can link to no member, whoever dials.
    members = [u for u in _units(net, k) if roster.role(net.peers[u.peer].peer_id) is not None]
    for u in members:
        assert unit.address not in net.ready_links(u)
    before = len(net.closes)
    for u in members:
        net._perform(unit, unit.engine.join(u.address, net.now))
        assert u.engine is not None
        net._perform(u, u.engine.join(unit.address, net.now))
    net.run_until(net.now + 3.0)
    for u in members:
        # A member never takes the removed peer's link; the removed peer may
        # have taken the member's HELLO, until the member's close arrives.
        assert unit.address not in net.ready_links(u), f"{_seed_msg(net)}: {u.address} has a link with removed p{x}"
    for link_id, route in net.links.items():
        link = unit.engine.node.links.get(link_id)
        if route.owner == unit.address and link is not None and link.ready:
            assert route.other_link not in net.links, f"{_seed_msg(net)}: removed p{x} has a link with {route.other}"
    sent = [m for m in net.delivered_to.get(unit.address, []) if m[0] > removal.known and m[2] != "Hello"]
    assert not sent, f"{_seed_msg(net)}: members sent removed p{x} {sent[:3]} after its removal"

    refusals = [c for c in net.closes[before:] if c[3] == "removed from this space" and c[2] == unit.address]
    assert refusals, f"{_seed_msg(net)}: no member refused removed p{x} as removed"


def _seeds(config, default: int) -> list[int]:
    count = config.getoption("--sim-seeds") or default
    first = config.getoption("--sim-first-seed")
    return list(range(first, first + count))


def _run(seed: int) -> tuple[str | None, dict[str, int]]:
    net, rec = run_spaces(seed)
    try:
        check_spaces(net, rec)
    except AssertionError as exc:
        return str(exc), rec.done
    return None, rec.done


@pytest.mark.timeout(600)
def test_spaces_converge_and_keep_their_rights_after_faults(sim_options):
    seeds = _seeds(sim_options, 6)
    with ProcessPoolExecutor(min(len(seeds), os.cpu_count() or 1)) as pool:
        results = list(pool.map(_run, seeds))
    failures = [f for f, _ in results if f]
    assert not failures, f"{len(failures)} of {len(seeds)} seeds failed:\n" + "\n".join(failures[:10])
    total: dict[str, int] = {}
    for _, done in results:
        for key, value in done.items():
            total[key] = total.get(key, 0) + value
    # The runs did what they are about.
    for what in ("edit", "reader-raw", "reader-local", "remove", "move", "concurrent-role"):
        assert total.get(what, 0) >= 1, (what, total)
    assert total["remove"] >= len(seeds), total


def _small(gate: bool) -> tuple[SpaceNet, Record]:
    """A writer, an admin and two readers of one space; the readers type and
    send raw updates; everyone else edits."""
    net = SpaceNet(7, 4, Faults(drop=0.0, duplicate=0.0), gate=gate)
    rec = Record()
    net.create_space(0, "team")
    for i, role in ((1, "writer"), (2, "reader"), (3, "reader")):
        net.add_directly(0, 0, i, role)
    net.run_until(3.0)
    for i in (0, 1):
        text = f"<w{i}>"
        rec.edits.append(Edit(0, i, net.author(i, 0, "plan", text), net.now, text))
    net.run_until(6.0)
    for i in (2, 3):
        text = f"READER-local-{i}"
        ranges = net.author(i, 0, "plan", text)
        rec.edits.append(Edit(0, i, ranges, net.now, text, reader=True))
        text = f"READER-raw-{i}"
        rec.edits.append(Edit(0, i, net.inject_update(i, 0, "plan", text), net.now, text, reader=True, raw=True))
    net.run_until(20.0)
    return net, rec


def test_the_reader_check_fails_without_the_gate():
    net, rec = _small(gate=True)
    check_no_reader_edits(net, rec)
    assert all(net.engine(i, 0).documents["plan"].text.count("<w") == 2 for i in range(4))
    assert sum(e.what == "edit" for _, e in net.refused) >= 2
    net, rec = _small(gate=False)
    with pytest.raises(AssertionError, match="the reader edit"):
        check_no_reader_edits(net, rec)
