"""Fuzz target: ``crdt.roster.Roster.receive``, the door for roster ops from
other members.

Invariants:

* Random bytes, and valid ops mutated (bit flips, byte sets, inserts,
  deletes, truncation, duplication, lies in varuint fields, splices of two
  ops) are refused with ``RosterError`` and leave the roster exactly as it
  was; the unmodified op is accepted, and no other bytes are taken than a
  genuine op (a splice may give one back whole). Nothing but
  ``RosterError`` escapes.
* Mutated ops *signed again* by their author (what a member with a key can
  send: any bytes it likes, with a valid signature) are refused the same
  way, or taken; a roster that takes one decodes it back to the same bytes
  and holds the state a fresh replay of its ops gives.
"""

from __future__ import annotations

import functools

import meshfuzz as mf
from hypothesis import HealthCheck, event, given, note, settings
from hypothesis import strategies as st

from crdt import roster as rs
from crdt.roster import Roster, RosterError, Signer, legacy_space_id, new_signing_key

FUZZ = settings(
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
T0 = 1_700_000_000.0


def signer(n: int) -> Signer:
    return Signer(new_signing_key(bytes([n]) * 32), bytes([n]) * 16)


SIGNERS = {s.peer_id: s for s in (signer(n) for n in range(1, 6))}
A, B, C, D, E = SIGNERS.values()


@functools.cache
def histories() -> tuple[tuple[bytes, bool, tuple[bytes, ...]], ...]:
    """(space id, legacy, ops in order) of a space with every kind of op, a
    merge of two branches among them, and of a legacy space."""
    r, create = Roster.create(A, "team", "Ann", T0)
    ops = [create]
    ops.append(r.sign_add(A, B.peer_id, B.public_key, "admin", "Bob", T0 + 1))
    ops.append(r.sign_add(A, C.peer_id, C.public_key, "writer", "Cy 😀", T0 + 2))
    ops.append(r.sign_add(A, D.peer_id, D.public_key, "reader", "", T0 + 3))
    side = Roster(r.space_id)
    side.receive_many(r.ops())
    ops.append(r.sign_role(A, C.peer_id, "reader", T0 + 4))
    ops.append(side.sign_name(D, "Di", T0 + 4))
    r.receive(ops[-1])
    ops.append(r.sign_rename(B, "team2", T0 + 5))  # two parents
    ops.append(r.sign_remove(B, D.peer_id, T0 + 6))
    legacy = Roster(legacy_space_id(b"fuzz network"), legacy=True)
    lops = [legacy.sign_claim(A, "Ann", T0)]
    lops.append(Roster(legacy.space_id, legacy=True).sign_claim(B, "Bob", T0 + 1))
    legacy.receive(lops[-1])
    lops.append(legacy.sign_remove(A, B.peer_id, T0 + 2))
    lops.append(legacy.sign_rename(A, "old", T0 + 3))
    return ((r.space_id, False, tuple(ops)), (legacy.space_id, True, tuple(lops)))


def every_op() -> list[tuple[int, int]]:
    return [(h, i) for h, (_, _, ops) in enumerate(histories()) for i in range(len(ops))]


def known_ops() -> frozenset[bytes]:
    return frozenset(op for _, _, ops in histories() for op in ops)


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
        r.history(),
    )


def roster_before(history: int, index: int, with_next: bool = False) -> Roster:
    """A roster that holds the ops before *index* (and, waiting for its
    parent, the op after it: a waiting op must not be released by a forgery)."""
    space_id, legacy, ops = histories()[history]
    r = Roster(space_id, legacy=legacy)
    r.receive_many(list(ops[:index]))
    if with_next and index + 2 < len(ops):
        r.receive(ops[index + 2])
    return r


def check(r: Roster, raw: bytes, original: bytes | None) -> None:
    """Feed *raw* to *r*: the invariant of the module docstring."""
    note(f"raw = bytes.fromhex({raw.hex()!r})")
    before = snapshot(r)
    try:
        accepted = r.receive(raw)
    except RosterError:
        assert snapshot(r) == before, "a refused op changed the roster"
        return
    if raw == original:
        assert accepted and accepted[0] == rs.decode_op(raw).hash
    else:  # only a genuine op (a splice can give one back whole)
        assert raw in known_ops(), "a mutated op was taken"


def offsets(raw: bytes) -> tuple[int, ...]:
    return mf.varuint_offsets(rs, rs.decode_op, raw)


# 1,000 + 1,500 + 500 + 1,000 + 400 cases


@settings(FUZZ, max_examples=1000)
@given(st.integers(0, 1), st.binary(max_size=400), st.booleans())
def test_random_bytes_are_refused(history, data, with_header):
    space_id, _, ops = histories()[history]
    r = roster_before(history, len(ops))
    if with_header:  # past the version and kind checks, into the fields
        data = bytes([1, data[0] % 8 if data else 6]) + space_id + data[1:]
    check(r, data, None)


@settings(FUZZ, max_examples=1500)
@given(st.sampled_from(every_op()), mf.ops(), st.booleans())
def test_mutated_ops_are_refused(which, mutations, with_next):
    history, index = which
    original = histories()[history][2][index]
    note(f"mutations = {mutations!r}")
    mutated = mf.mutate(original, mutations, offsets(original))
    check(roster_before(history, index, with_next), mutated, original)


@settings(FUZZ, max_examples=500)
@given(st.sampled_from(every_op()), st.sampled_from(every_op()), st.integers(0, 1100), st.integers(0, 1100))
def test_spliced_ops_are_refused(first, second, cut_a, cut_b):
    """The head of one op and the tail of another (or of itself, shifted)."""
    a = histories()[first[0]][2][first[1]]
    b = histories()[second[0]][2][second[1]]
    spliced = a[: cut_a % (len(a) + 1)] + b[cut_b % (len(b) + 1) :]
    check(roster_before(first[0], first[1]), spliced, a)


@settings(FUZZ, max_examples=1000)
@given(st.sampled_from(every_op()), mf.ops(), st.booleans())
def test_mutated_ops_signed_again(which, mutations, with_next):
    """A member signs whatever bytes it likes: refused, or taken and then
    consistent."""
    history, index = which
    original = histories()[history][2][index]
    signed = original[: -rs.SIGNATURE_BYTES]
    body = mf.mutate(signed, mutations, mf.varuint_offsets(rs, rs._decode_fields, signed))
    # The author field may have been mutated too: sign with the key the op
    # now claims to be by when it is one of ours, else with the original's.
    author = body[19 + 32 * (body[18] if len(body) > 18 and body[18] <= 16 else 0) :][:16]
    who = SIGNERS.get(author, SIGNERS[original[19 + 32 * original[18] :][:16]])
    raw = body + who.sign(rs.SIGNING_CONTEXT + body)
    note(f"mutations = {mutations!r}\nraw = bytes.fromhex({raw.hex()!r})")
    r = roster_before(history, index, with_next)
    before = snapshot(r)
    try:
        r.receive(raw)
    except RosterError as exc:
        event(f"refused: {str(exc).split(':')[0][:40]}")
        assert snapshot(r) == before
        return
    event("taken")
    op = rs.decode_op(raw)
    assert op.raw == raw and rs._encode_unsigned(op, round(op.time * 1000)) == body
    assert len(raw) <= rs.MAX_OP_BYTES and len(op.parents) <= rs.MAX_PARENTS
    fresh = Roster(r.space_id, legacy=r.legacy)
    fresh.receive_many(r.ops())
    assert snapshot(fresh)[:9] == snapshot(r)[:9]
    assert fresh.history() == r.history()


@settings(FUZZ, max_examples=400)
@given(st.sampled_from(every_op()), st.lists(st.integers(0, 7), min_size=1, max_size=12), st.integers(0, 10))
def test_a_bad_op_in_a_batch_keeps_what_came_before(which, positions, bad_at):
    """receive_many: the ops before a refused one are taken, the roster is
    then what those ops alone give, and the rest is not read."""
    history, index = which
    space_id, legacy, ops = histories()[history]
    batch = [ops[p % len(ops)] for p in positions]
    bad_at %= len(batch) + 1
    bad = bytearray(ops[index])
    bad[len(bad) // 2] ^= 0x10
    batch.insert(bad_at, bytes(bad))
    r = Roster(space_id, legacy=legacy)
    try:
        r.receive_many(batch)
    except RosterError:
        pass
    else:  # pragma: no cover - the flipped op must be refused
        raise AssertionError("a flipped op was taken")
    expected = Roster(space_id, legacy=legacy)
    for raw in batch[:bad_at]:
        expected.receive(raw)
    assert snapshot(r) == snapshot(expected)
