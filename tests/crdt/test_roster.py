"""crdt/roster.py: the op encoding, signatures, the replay rules, convergence
whatever the arrival order, ops waiting for parents, and the limits.

Ops that a ``sign_*`` helper refuses to make (a writer adding someone, a
forged author key...) are built here by :func:`forge`, which writes the
encoding of the module docstring by hand and signs it: what an honest but
out-of-date, or a hostile, member could send.
"""

from __future__ import annotations

import hashlib
import itertools
import random

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from crdt import roster as rs
from crdt.lib0 import Writer
from crdt.roster import (
    ADD,
    CLAIM,
    CREATE,
    NAME,
    REMOVE,
    RENAME,
    ROLE,
    Member,
    Roster,
    RosterError,
    Signer,
    decode_op,
    legacy_space_id,
    new_signing_key,
)

T0 = 1_700_000_000.0


def signer(n: int) -> Signer:
    return Signer(new_signing_key(bytes([n]) * 32), bytes([n]) * 16)


A, B, C, D, E = (signer(n) for n in range(1, 6))


def forge(
    who: Signer,
    kind: int,
    space_id: bytes,
    parents: list[bytes],
    body: bytes,
    *,
    ms: int = 1_700_000_000_000,
    version: int = 1,
    key: bytes | None = None,
    count: int | None = None,
) -> bytes:
    """An op encoded field by field, signed by *who* (with *key* as the
    author_key field when given: a signature by one key, claimed for another)."""
    w = Writer()
    w.write_u8(version)
    w.write_u8(kind)
    w.write_bytes(space_id)
    w.write_varuint(len(parents) if count is None else count)
    for p in parents:
        w.write_bytes(p)
    w.write_bytes(who.peer_id)
    w.write_bytes(who.public_key if key is None else key)
    w.write_varuint(ms)
    w.write_bytes(body)
    signed = w.to_bytes()
    return signed + who._key.sign(b"meshpad-roster-v1" + signed)


def s(text: str) -> bytes:
    w = Writer()
    w.write_var_string(text)
    return w.to_bytes()


def body_add(who: Signer, role: int, name: str = "x") -> bytes:
    return who.peer_id + who.public_key + bytes([role]) + s(name)


def op_hash(raw: bytes) -> bytes:
    return hashlib.blake2b(raw, digest_size=32).digest()


def snapshot(r: Roster) -> tuple[object, ...]:
    return (
        r.name,
        r.members,
        r.removed,
        r.open,
        r.epoch,
        r.rotation,
        r.heads,
        r.digest,
        len(r),
        r.pending,
        r.ops(),
        [(op.hash, effect) for op, effect in r.history()],
    )


def team() -> tuple[Roster, list[bytes]]:
    """A: admin, B: admin, C: writer, D: reader."""
    r, create = Roster.create(A, "team", "Ann", T0)
    ops = [create]
    ops.append(r.sign_add(A, B.peer_id, B.public_key, "admin", "Bob", T0 + 1))
    ops.append(r.sign_add(A, C.peer_id, C.public_key, "writer", "Cy", T0 + 2))
    ops.append(r.sign_add(A, D.peer_id, D.public_key, "reader", "Di", T0 + 3))
    return r, ops


def copy(r: Roster) -> Roster:
    other = Roster(r.space_id, legacy=r.legacy)
    other.receive_many(r.ops())
    assert snapshot(other) == snapshot(r)
    return other


def roles(r: Roster) -> dict[bytes, str]:
    return {peer: m.role for peer, m in r.members.items()}


# -- encoding ------------------------------------------------------------------------


def test_every_kind_round_trips_and_matches_the_documented_encoding():
    r, ops = team()
    ops.append(r.sign_role(A, C.peer_id, "reader", T0 + 4))
    ops.append(r.sign_name(C, "Cyrus", T0 + 5))
    ops.append(r.sign_rename(B, "team2", T0 + 6))
    ops.append(r.sign_remove(A, D.peer_id, T0 + 7.25))
    kinds = [decode_op(raw).kind for raw in ops]
    assert kinds == [CREATE, ADD, ADD, ADD, ROLE, NAME, RENAME, REMOVE]
    parents: list[bytes] = []
    expected_bodies = [
        s("team") + s("Ann"),
        body_add(B, 0, "Bob"),
        body_add(C, 1, "Cy"),
        body_add(D, 2, "Di"),
        C.peer_id + bytes([2]),
        s("Cyrus"),
        s("team2"),
        D.peer_id,
    ]
    authors = [A, A, A, A, A, C, B, A]
    times = [0, 1000, 2000, 3000, 4000, 5000, 6000, 7250]
    for raw, kind, body, who, dt in zip(ops, kinds, expected_bodies, authors, times, strict=True):
        space = bytes(16) if kind == CREATE else r.space_id
        assert raw == forge(who, kind, space, parents, body, ms=1_700_000_000_000 + dt)
        op = decode_op(raw)
        assert op.raw == raw and op.hash == op_hash(raw)
        assert op.parents == tuple(parents) and op.author == who.peer_id and op.author_key == who.public_key
        assert op.time == T0 + dt / 1000
        parents = [op.hash]
    add = decode_op(ops[1])
    assert (add.target, add.target_key, add.role, add.member_name) == (B.peer_id, B.public_key, "admin", "Bob")
    create = decode_op(ops[0])
    assert (create.name, create.member_name, create.space_id) == ("team", "Ann", bytes(16))
    assert r.space_id == hashlib.blake2b(ops[0], digest_size=16, person=b"meshpad-space").digest()
    assert decode_op(ops[6]).name == "team2"


def test_every_byte_flipped_is_refused_and_changes_nothing():
    r, ops = team()
    raw = r.sign_role(A, C.peer_id, "reader", T0 + 4)
    fresh = Roster(r.space_id)
    fresh.receive_many(ops)
    before = snapshot(fresh)
    for i in range(len(raw)):
        for bit in (0, 7):
            bad = bytearray(raw)
            bad[i] ^= 1 << bit
            with pytest.raises(RosterError):
                fresh.receive(bytes(bad))
            assert snapshot(fresh) == before
    assert fresh.receive(raw) == [op_hash(raw)]


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda sp, p: forge(A, NAME, sp, p, s("x"), version=2), "version"),
        (lambda sp, p: forge(A, 9, sp, p, s("x")), "kind"),
        (lambda sp, p: forge(A, 0, sp, p, s("x")), "kind"),
        (lambda sp, p: forge(A, NAME, sp, p, s("x") + b"\0"), "left over"),
        (lambda sp, p: forge(A, NAME, sp, p + p, s("x")), "duplicate"),
        (lambda sp, p: forge(A, CREATE, bytes(16), p, s("t") + s("A")), "CREATE"),
        (lambda sp, p: forge(A, CREATE, b"\1" * 16, [], s("t") + s("A")), "CREATE"),
        (lambda sp, p: forge(A, NAME, sp, [], s("x")), "parent"),
        (lambda sp, p: forge(A, ADD, sp, p, body_add(E, 4)), "role"),
        (lambda sp, p: forge(A, ROLE, sp, p, B.peer_id + b"\xff"), "role"),
        (lambda sp, p: forge(A, RENAME, sp, p, s(".hidden")), "space name"),
        (lambda sp, p: forge(A, RENAME, sp, p, s("x" * 65)), "space name"),
        (lambda sp, p: forge(A, RENAME, sp, p, s("")), "space name"),
        (lambda sp, p: forge(A, NAME, sp, p, s("x" * 65)), "64 bytes"),
        (lambda sp, p: forge(A, NAME, sp, p, s("a\nb")), "control"),
        (lambda sp, p: forge(A, NAME, sp, p, b"\x02\xc3\x28"), "UTF-8"),
        (lambda sp, p: forge(A, NAME, sp, p, b"\x05ab"), "malformed"),
        (lambda sp, p: forge(A, NAME, sp, p, s("x"), ms=2**53), "time"),
        (lambda sp, p: forge(A, NAME, sp, p, s("x"), count=17), "parents"),
        (lambda sp, p: forge(A, NAME, sp, p, s("x"), key=B.public_key), "signature"),
        (lambda sp, p: forge(A, NAME, b"\7" * 16, p, s("x")), "another space"),
        (lambda sp, p: forge(A, CLAIM, sp, [], s("x")), "not legacy"),
        (lambda sp, p: Roster.create(A, "other", "Ann", T0)[1], "another space"),
        (lambda sp, p: b"", "short"),
        (lambda sp, p: forge(A, NAME, sp, p, s("x")) + bytes(1024), "limit"),
    ],
)
def test_decoding_refuses(make, message):
    r, _ops = team()
    before = snapshot(r)
    with pytest.raises(RosterError, match=message):
        r.receive(make(r.space_id, r.heads))
    assert snapshot(r) == before


def test_overlong_varuint_is_refused_even_when_signed():
    r, _ = team()
    good = forge(A, NAME, r.space_id, r.heads, s("Annie"))
    assert decode_op(good).member_name == "Annie"
    # The same fields with the parent count written in two bytes (0x81 0x00).
    w = Writer()
    w.write_bytes(bytes([1, NAME]) + r.space_id + b"\x81\x00" + r.heads[0] + A.peer_id + A.public_key)
    w.write_varuint(1_700_000_000_000)
    w.write_bytes(s("Annie"))
    signed = w.to_bytes()
    with pytest.raises(RosterError, match="canonical"):
        r.receive(signed + A._key.sign(b"meshpad-roster-v1" + signed))


def test_a_legacy_space_refuses_a_create():
    legacy = Roster(legacy_space_id(b"k" * 32), legacy=True)
    _, create = Roster.create(A, "team", "Ann", T0)
    with pytest.raises(RosterError, match="legacy"):
        legacy.receive(create)
    assert len(legacy) == 0


def test_identity_helpers():
    assert legacy_space_id(b"psk") == hashlib.blake2b(b"psk", digest_size=16, person=b"meshpad-legacy").digest()
    assert new_signing_key(bytes(range(32))) == bytes(range(32))
    with pytest.raises(ValueError):
        new_signing_key(b"short")
    with pytest.raises(ValueError):
        Signer(bytes(32), b"short")
    assert len(A.public_key) == 32 and A.public_key != B.public_key


# -- the rules --------------------------------------------------------------------


def test_create_makes_the_author_admin():
    r, ops = Roster.create(A, "team", "Ann", T0)
    assert r.name == "team" and not r.legacy and not r.open
    assert r.members == {A.peer_id: Member(A.peer_id, A.public_key, "admin", "Ann", T0)}
    assert r.role(A.peer_id) == "admin" and r.role(B.peer_id) is None
    assert (r.epoch, r.rotation, r.removed, r.pending, len(r)) == (0, b"", frozenset(), 0, 1)
    assert r.heads == [op_hash(ops)] and op_hash(ops) in r
    assert r.digest == hashlib.blake2b(op_hash(ops), digest_size=16).digest()


def test_roles_names_and_removal():
    r, _ops = team()
    assert roles(r) == {A.peer_id: "admin", B.peer_id: "admin", C.peer_id: "writer", D.peer_id: "reader"}
    assert r.members[C.peer_id].since == T0 + 2 and r.members[C.peer_id].name == "Cy"
    r.sign_role(B, C.peer_id, "reader", T0 + 10)
    assert r.role(C.peer_id) == "reader" and r.members[C.peer_id].since == T0 + 2
    r.sign_name(D, "Diana", T0 + 11)  # a reader may rename itself
    assert r.members[D.peer_id].name == "Diana"
    r.sign_rename(B, "crew", T0 + 12)
    assert r.name == "crew"
    remove = r.sign_remove(A, D.peer_id, T0 + 13)
    assert D.peer_id not in r.members and r.removed == {D.peer_id}
    assert (r.epoch, r.rotation) == (1, op_hash(remove))
    r.sign_add(B, D.peer_id, E.public_key, "writer", "Di again", T0 + 14)  # added back, with a new key
    assert r.removed == frozenset() and r.members[D.peer_id].sign_pub == E.public_key
    assert r.members[D.peer_id].since == T0 + 14 and r.epoch == 1
    r.sign_remove(A, A.peer_id, T0 + 15)  # leave
    assert A.peer_id not in r.members and r.epoch == 2 and r.removed == {A.peer_id}
    assert all(effect for _, effect in r.history())


@pytest.mark.parametrize(
    "who, call, message",
    [
        (C, lambda r, w: r.sign_add(w, E.peer_id, E.public_key, "reader", "E", T0 + 9), "not an admin"),
        (D, lambda r, w: r.sign_role(w, C.peer_id, "reader", T0 + 9), "not an admin"),
        (C, lambda r, w: r.sign_remove(w, D.peer_id, T0 + 9), "not an admin"),
        (C, lambda r, w: r.sign_rename(w, "mine", T0 + 9), "not an admin"),
        (E, lambda r, w: r.sign_name(w, "E", T0 + 9), "not a member"),
        (A, lambda r, w: r.sign_role(w, E.peer_id, "reader", T0 + 9), "not a member"),
        (A, lambda r, w: r.sign_remove(w, E.peer_id, T0 + 9), "not a member"),
        (A, lambda r, w: r.sign_add(w, C.peer_id, C.public_key, "admin", "Cy", T0 + 9), "already a member"),
        (A, lambda r, w: r.sign_role(w, C.peer_id, "writer", T0 + 9), "already a writer"),
        (A, lambda r, w: r.sign_name(w, "Ann", T0 + 9), "already"),
        (A, lambda r, w: r.sign_rename(w, "team", T0 + 9), "already"),
        (A, lambda r, w: r.sign_add(w, E.peer_id, E.public_key, "relay", "E", T0 + 9), "not supported yet"),
        (A, lambda r, w: r.sign_role(w, C.peer_id, "relay", T0 + 9), "not supported yet"),
        (A, lambda r, w: r.sign_role(w, C.peer_id, "owner", T0 + 9), "unknown role"),
        (A, lambda r, w: r.sign_add(w, E.peer_id, b"short", "reader", "E", T0 + 9), "32-byte"),
        (A, lambda r, w: r.sign_rename(w, "no spaces", T0 + 9), "space name"),
        (A, lambda r, w: r.sign_name(w, "é" * 33, T0 + 9), "64 bytes"),
        (A, lambda r, w: r.sign_name(w, "x", -1.0), "time"),
        (A, lambda r, w: r.sign_name(w, "x", float("nan")), "time"),
        (A, lambda r, w: r.sign_claim(w, "x", T0 + 9), "legacy"),
        (Signer(bytes([9]) * 32, A.peer_id), lambda r, w: r.sign_name(w, "x", T0 + 9), "key"),
    ],
)
def test_sign_helpers_refuse_what_would_have_no_effect(who, call, message):
    r, _ = team()
    before = snapshot(r)
    with pytest.raises(RosterError, match=message):
        call(r, who)
    assert snapshot(r) == before


def test_the_last_admin_can_be_neither_demoted_nor_removed():
    r, _ = Roster.create(A, "solo", "Ann", T0)
    r.sign_add(A, B.peer_id, B.public_key, "writer", "Bob", T0 + 1)
    for call in (lambda: r.sign_role(A, A.peer_id, "writer", T0 + 2), lambda: r.sign_remove(A, A.peer_id, T0 + 2)):
        with pytest.raises(RosterError, match="no admin"):
            call()
    # Forged anyway: kept as history, without effect.
    for body, kind in ((A.peer_id + b"\x01", ROLE), (A.peer_id, REMOVE)):
        raw = forge(A, kind, r.space_id, r.heads, body)
        assert r.receive(raw) == [op_hash(raw)]
        assert r.role(A.peer_id) == "admin" and r.epoch == 0 and r.history()[-1][1] is False
    r.sign_role(A, B.peer_id, "admin", T0 + 3)
    r.sign_role(A, A.peer_id, "reader", T0 + 4)  # now there is another admin
    assert roles(r) == {A.peer_id: "reader", B.peer_id: "admin"}


def test_ops_that_break_the_rules_stay_as_history_without_effect():
    r, _ = team()
    sp = r.space_id
    cases = [
        forge(C, ADD, sp, r.heads, body_add(E, 1)),  # a writer adds
        forge(D, RENAME, sp, r.heads, s("readers")),  # a reader renames
        forge(E, NAME, sp, r.heads, s("stranger")),  # a stranger names itself
        forge(A, ROLE, sp, r.heads, E.peer_id + b"\x01"),  # the target is not a member
        forge(A, REMOVE, sp, r.heads, E.peer_id),
        forge(A, ADD, sp, r.heads, body_add(B, 2)),  # already a member
    ]
    # A's peer id with E's key (E signs): the roster holds A's key, so no effect.
    w = Writer()
    w.write_bytes(bytes([1, RENAME]) + sp + b"\x01" + r.heads[0] + A.peer_id + E.public_key)
    w.write_varuint(1_700_000_000_000)
    w.write_bytes(s("hijacked"))
    cases.append(w.to_bytes() + E._key.sign(b"meshpad-roster-v1" + w.to_bytes()))
    state = (r.name, r.members, r.epoch)
    for raw in cases:
        fresh = copy(r)
        assert fresh.receive(raw) == [op_hash(raw)]
        assert (fresh.name, fresh.members, fresh.epoch) == state
        assert fresh.history()[-1] == (decode_op(raw), False)
        assert fresh.heads == [op_hash(raw)] and len(fresh) == len(r) + 1


def test_legacy_space_claims_until_sealed():
    r = Roster(legacy_space_id(b"network key"), legacy=True)
    assert r.open and r.name == "" and len(r) == 0 and r.heads == []
    claim_a = r.sign_claim(A, "Ann", T0)
    assert decode_op(claim_a).parents == ()
    # B claims concurrently, on its own copy that has not seen A's claim.
    other = Roster(r.space_id, legacy=True)
    claim_b = other.sign_claim(B, "Bob", T0 + 1)
    assert r.receive(claim_b) == [op_hash(claim_b)]
    assert roles(r) == {A.peer_id: "admin", B.peer_id: "admin"}
    assert sorted(r.heads) == r.heads and len(r.heads) == 2
    with pytest.raises(RosterError, match="already a member"):
        r.sign_claim(A, "Ann", T0 + 2)
    r.sign_rename(A, "family", T0 + 2)
    assert r.name == "family"
    r.sign_remove(A, B.peer_id, T0 + 3)
    assert not r.open and r.epoch == 1
    with pytest.raises(RosterError, match="sealed"):
        r.sign_claim(C, "Cy", T0 + 4)
    late = forge(C, CLAIM, r.space_id, r.heads, s("Cy"))
    assert r.receive(late) == [op_hash(late)]
    assert C.peer_id not in r.members and r.history()[-1][1] is False
    # A claim concurrent with the removal: the removal (priority 0) is
    # replayed first, so the claim finds the space sealed, in every order.
    concurrent = forge(D, CLAIM, r.space_id, [op_hash(claim_a), op_hash(claim_b)], s("Di"))
    a = copy(r)
    a.receive(concurrent)
    assert D.peer_id not in a.members and a.history()[-1] == (decode_op(concurrent), False)
    b_ops = [*r.ops(), concurrent]
    random.Random(3).shuffle(b_ops)
    b = Roster(r.space_id, legacy=True)
    b.receive_many(b_ops)
    assert snapshot(a) == snapshot(b)


# -- concurrency --------------------------------------------------------------------


def all_orders(r: Roster, extra: list[bytes]) -> list[tuple[object, ...]]:
    ops = r.ops() + extra
    out = []
    for order in itertools.permutations(range(len(ops))):
        fresh = Roster(r.space_id)
        for i in order:
            fresh.receive(ops[i])
        out.append(snapshot(fresh))
    return out


def small_team() -> Roster:
    r, _ = Roster.create(A, "t", "Ann", T0)
    r.sign_add(A, B.peer_id, B.public_key, "admin", "Bob", T0 + 1)
    r.sign_add(A, C.peer_id, C.public_key, "writer", "Cy", T0 + 2)
    return r


def test_a_removal_and_a_concurrent_role_change_by_the_removed_resolve_the_same_everywhere():
    r = small_team()
    ra, rb = copy(r), copy(r)
    removal = ra.sign_remove(A, B.peer_id, T0 + 10)
    demotion = rb.sign_role(B, C.peer_id, "reader", T0 + 10)
    results = all_orders(r, [removal, demotion])
    assert len(results) == 120 and all(x == results[0] for x in results)
    ra.receive(demotion)
    rb.receive(removal)
    assert snapshot(ra) == snapshot(rb) == results[0]
    assert roles(ra) == {A.peer_id: "admin", C.peer_id: "writer"}
    assert [(decode_op(op.raw).kind, e) for op, e in ra.history()][-2:] == [(REMOVE, True), (ROLE, False)]
    # Whichever op hashes lower: the removal is replayed first.
    lower = set()
    for dt in range(200):
        if len(lower) == 2 and dt >= 8:
            break
        rb = copy(r)
        demotion = rb.sign_role(B, C.peer_id, "reader", T0 + 10 + dt / 1000)
        lower.add(op_hash(demotion) < op_hash(removal))
        rb.receive(removal)
        assert roles(rb) == {A.peer_id: "admin", C.peer_id: "writer"}
        assert [e for _, e in rb.history()][-2:] == [True, False]
    assert lower == {True, False}


def test_mutual_removal_of_two_admins_leaves_exactly_one():
    r = small_team()
    ra, rb = copy(r), copy(r)
    a_removes_b = ra.sign_remove(A, B.peer_id, T0 + 10)
    b_removes_a = rb.sign_remove(B, A.peer_id, T0 + 10)
    results = all_orders(r, [a_removes_b, b_removes_a])
    assert all(x == results[0] for x in results)
    ra.receive(b_removes_a)
    admins = [p for p, role in roles(ra).items() if role == "admin"]
    assert len(admins) == 1 and ra.epoch == 1
    # The one whose removal op hashes lower is replayed first and wins.
    first = min((a_removes_b, A.peer_id), (b_removes_a, B.peer_id), key=lambda t: op_hash(t[0]))
    assert admins == [first[1]] and ra.rotation == op_hash(first[0])


def test_a_removed_members_concurrent_ops_take_no_effect():
    r = small_team()
    ra, rb = copy(r), copy(r)
    removal = ra.sign_remove(A, B.peer_id, T0 + 10)
    adds = rb.sign_add(B, D.peer_id, D.public_key, "writer", "Di", T0 + 10)
    renames = rb.sign_rename(B, "bobs", T0 + 11)
    results = all_orders(r, [removal, adds, renames])
    assert all(x == results[0] for x in results)
    ra.receive_many([adds, renames])
    assert D.peer_id not in ra.members and ra.name == "t"
    assert [e for _, e in ra.history()][-3:] == [True, False, False]
    # An op that builds on the removal is replayed after it whatever its hash.
    later = ra.sign_add(A, B.peer_id, B.public_key, "reader", "Bob", T0 + 12)
    assert ra.role(B.peer_id) == "reader" and ra.history()[-1] == (decode_op(later), True)


_ACTIONS = ("role",) * 3 + ("remove",) * 2 + ("add",) * 2 + ("name", "rename", "sync")
_GRANTABLE = ("admin", "writer", "reader")


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True)
@given(st.integers(2, 4), st.integers(4, 24), st.randoms(use_true_random=False))
def test_concurrent_admins_converge_whatever_the_order(admins, steps, rng):
    """2-4 admins act on their own copies of a space (a writer and an
    outsider are there to be acted on), now and then two copies exchange
    what the other lacks; then every op made reaches fresh rosters in random
    orders, one at a time, and the copies: all end in the same state."""
    people = [signer(n) for n in range(1, admins + 3)]
    base, _ = Roster.create(people[0], "space", "p0", T0)
    for i in range(1, admins):
        base.sign_add(people[0], people[i].peer_id, people[i].public_key, "admin", f"p{i}", T0 + i)
    base.sign_add(people[0], people[admins].peer_id, people[admins].public_key, "writer", "w", T0 + 5)
    copies = [copy(base) for _ in range(admins)]
    made: list[bytes] = base.ops()
    for t in range(steps):
        who = rng.randrange(admins)
        mine, me, target = copies[who], people[who], rng.choice(people)
        action, now = rng.choice(_ACTIONS), T0 + 10 + t
        try:
            if action == "add":
                made.append(mine.sign_add(me, target.peer_id, target.public_key, rng.choice(_GRANTABLE), "n", now))
            elif action == "role":
                made.append(mine.sign_role(me, target.peer_id, rng.choice(_GRANTABLE), now))
            elif action == "remove":
                made.append(mine.sign_remove(me, target.peer_id, now))
            elif action == "name":
                made.append(mine.sign_name(me, f"n{t}", now))
            elif action == "rename":
                made.append(mine.sign_rename(me, f"s{t}", now))
            else:
                other = rng.choice(copies)
                mine.receive_many(other.ops_since(mine.heads))
                other.receive_many(mine.ops_since(other.heads))
                assert mine.digest == other.digest and mine.members == other.members
        except RosterError:
            pass  # not allowed on that copy now: what a UI would refuse
    event(f"distinct heads over the copies before the exchange: {min(len({h for c in copies for h in c.heads}), 3)}")
    results = []
    for _ in range(3):
        order = list(made)
        rng.shuffle(order)
        fresh = Roster(base.space_id)
        for raw in order:
            fresh.receive(raw)
        assert fresh.pending == 0 and len(fresh) == len(made)
        results.append(snapshot(fresh))
    for c in copies:
        c.receive_many(made)
        results.append(snapshot(c))
    assert all(x == results[0] for x in results)
    final = Roster(base.space_id)
    final.receive_many(made)
    assert snapshot(final) == results[0]
    assert any(m.role == "admin" for m in final.members.values())
    assert final.epoch == sum(1 for op, e in final.history() if e and op.kind == REMOVE)
    event(f"removals applied: {min(final.epoch, 2)}")
    event(f"ops without effect: {min(sum(1 for _, e in final.history() if not e), 2)}")


# -- gossip helpers -------------------------------------------------------------------


def test_ops_since_sends_exactly_what_the_peer_lacks():
    r, ops = team()
    behind = copy(r)
    new = [
        r.sign_role(A, C.peer_id, "reader", T0 + 5),
        r.sign_name(B, "Bobby", T0 + 6),
        r.sign_remove(B, D.peer_id, T0 + 7),
    ]
    since = r.ops_since(behind.heads)
    assert since == new
    assert r.ops_since(r.heads) == []
    assert r.ops_since([]) == r.ops() == ops + new
    assert r.ops_since([b"\x99" * 32]) == r.ops()  # unknown heads are ignored
    assert r.ops_since([b"\x99" * 32, *behind.heads]) == new
    assert r.ops_since([op_hash(ops[1])]) == ops[2:] + new
    assert behind.receive_many(since) == [op_hash(x) for x in new]
    assert behind.digest == r.digest and snapshot(behind) == snapshot(r)
    # Two branches: a peer reports its heads, of which this side knows the
    # ones before the fork (the other branch's are unknown to it, so ignored).
    x, y = copy(r), copy(r)
    ox = x.sign_rename(A, "x-side", T0 + 8)
    oy = y.sign_name(C, "Cee", T0 + 8)
    assert x.ops_since(y.heads) == x.ops()
    assert x.ops_since([*y.heads, *r.heads]) == [ox] and y.ops_since([*x.heads, *r.heads]) == [oy]
    x.receive(oy)
    y.receive(ox)
    assert x.digest == y.digest and x.ops_since(y.heads) == []


def test_ops_wait_for_their_parents_and_are_released():
    r, ops = team()
    extra = [r.sign_name(A, f"Ann{i}", T0 + 10 + i) for i in range(3)]
    everything = ops + extra
    fresh = Roster(r.space_id)
    assert fresh.receive(everything[-1]) == []
    assert fresh.receive(everything[-2]) == []
    assert fresh.receive(everything[-1]) == []  # known (waiting): nothing new
    assert (fresh.pending, len(fresh), fresh.heads, fresh.members) == (2, 0, [], {})
    assert op_hash(everything[-1]) not in fresh
    assert fresh.receive_many(everything[1:5]) == []
    assert fresh.pending == 6
    assert fresh.receive(everything[0]) == [op_hash(x) for x in everything]
    assert fresh.pending == 0 and snapshot(fresh) == snapshot(r)
    assert fresh.receive(everything[2]) == []  # known


def test_receive_many_keeps_the_ops_before_a_bad_one():
    r, ops = team()
    fresh = Roster(r.space_id)
    bad = bytearray(ops[2])
    bad[-1] ^= 1
    with pytest.raises(RosterError):
        fresh.receive_many([ops[0], ops[1], bytes(bad), ops[3]])
    assert len(fresh) == 2 and roles(fresh) == {A.peer_id: "admin", B.peer_id: "admin"}
    assert fresh.heads == [op_hash(ops[1])]


# -- limits --------------------------------------------------------------------------


def test_max_parents_in_signing_when_there_are_more_heads():
    r, _ = team()
    base_heads = r.heads
    branches = []
    for i in range(rs.MAX_PARENTS + 2):
        raw = forge(A, NAME, r.space_id, base_heads, s(f"Ann{i}"), ms=1_700_000_100_000 + i)
        branches.append(raw)
    r.receive_many(branches)
    assert len(r.heads) == rs.MAX_PARENTS + 2
    merged = r.sign_add(A, E.peer_id, E.public_key, "writer", "Eve", T0 + 200)
    assert len(decode_op(merged).parents) == rs.MAX_PARENTS
    assert r.role(E.peer_id) == "writer" and len(r.heads) == 3
    fresh = Roster(r.space_id)
    fresh.receive_many(list(reversed(r.ops())))
    assert snapshot(fresh) == snapshot(r)
    too_many = forge(A, NAME, r.space_id, sorted(op_hash(b) for b in branches)[:17], s("x"))
    with pytest.raises(RosterError, match="parents"):
        r.receive(too_many)


def test_max_op_bytes():
    r, _ = team()
    raw = forge(A, NAME, r.space_id, r.heads, s("x"))
    with pytest.raises(RosterError, match="limit of 1024"):
        r.receive(raw + bytes(rs.MAX_OP_BYTES + 1 - len(raw)))
    # The largest op the encoding allows is under the limit.
    big = forge(A, ADD, r.space_id, [bytes([i]) * 32 for i in range(16)], body_add(E, 1, "é" * 32))
    assert len(big) <= rs.MAX_OP_BYTES and decode_op(big).member_name == "é" * 32


def test_max_pending():
    r, _ = team()
    fresh = Roster(r.space_id)
    orphans = [forge(A, NAME, r.space_id, [bytes([i % 256, i // 256]) * 16], s("x")) for i in range(rs.MAX_PENDING + 1)]
    fresh.receive_many(orphans[:-1])
    assert fresh.pending == rs.MAX_PENDING
    with pytest.raises(RosterError, match="wait"):
        fresh.receive(orphans[-1])
    assert fresh.pending == rs.MAX_PENDING
    assert fresh.receive(orphans[0]) == []  # a known one is still fine


def test_max_ops():
    r, _create = Roster.create(A, "big", "Ann", T0)
    for i in range(rs.MAX_OPS - 1):
        r.sign_name(A, "ab"[i % 2], T0 + i)
    assert len(r) == rs.MAX_OPS
    before = (r.heads, len(r), r.members)
    with pytest.raises(RosterError, match="limit"):
        r.sign_name(A, "c", T0 + rs.MAX_OPS)
    with pytest.raises(RosterError, match="limit"):
        r.receive(forge(A, NAME, r.space_id, r.heads, s("d")))
    assert (r.heads, len(r), r.members) == before
    fresh = Roster(r.space_id)
    fresh.receive_many(r.ops())
    assert fresh.digest == r.digest and fresh.members == r.members


def test_seal_closes_a_legacy_space_to_claims() -> None:
    psk = bytes(range(32))
    roster = Roster(legacy_space_id(psk), legacy=True)
    roster.sign_claim(A, "a", 1.0)
    assert roster.open
    roster.sign_seal(A, 2.0)
    assert not roster.open
    with pytest.raises(RosterError, match="sealed"):
        roster.sign_claim(B, "b", 3.0)
    other = Roster(roster.space_id, legacy=True)
    other.receive_many(roster.ops())
    assert not other.open and set(other.members) == {A.peer_id}
    with pytest.raises(RosterError, match="not open"):
        other.sign_seal(A, 4.0)


def test_a_claim_that_did_not_know_of_the_seal_has_no_effect() -> None:
    """A key holder's CLAIM made as a root after the seal sorts before it in
    the replay (it has no parents), and still counts for nothing."""
    psk = bytes(range(32))
    roster = Roster(legacy_space_id(psk), legacy=True)
    roster.sign_claim(A, "a", 1.0)
    roster.sign_seal(A, 2.0)
    stale = Roster(roster.space_id, legacy=True)  # B never heard of anything
    late = stale.sign_claim(B, "b", 3.0)
    for order in ([late, *roster.ops()], [*roster.ops(), late]):
        fresh = Roster(roster.space_id, legacy=True)
        fresh.receive_many(order)
        assert set(fresh.members) == {A.peer_id}
        assert not fresh.open


def test_a_claim_the_seal_knew_of_still_counts() -> None:
    psk = bytes(range(32))
    roster = Roster(legacy_space_id(psk), legacy=True)
    roster.sign_claim(A, "a", 1.0)
    roster.sign_claim(B, "b", 1.5)
    roster.sign_seal(A, 2.0)
    fresh = Roster(roster.space_id, legacy=True)
    fresh.receive_many(list(reversed(roster.ops())))
    assert set(fresh.members) == {A.peer_id, B.peer_id}
