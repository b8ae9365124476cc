"""Roster rows: what signing, verifying and replaying a space's roster costs.

* build: a space of 100 members made by 100 signed ADDs, against 100 raw
  Ed25519 signatures;
* verify + replay: those 101 ops taken by a fresh roster (``receive_many``),
  against 101 raw Ed25519 verifications of the same bytes;
* per op: one op decoded and verified, against one raw Ed25519 verification
  plus one BLAKE2b of the op;
* 10,000 ops: a space at the op limit (100 members, two admins editing on
  their own copies and exchanging every 25 ops) taken by a fresh roster; its
  replay alone (the deterministic order and the state), against the same for
  100 ops; and one concurrent op arriving at it (a whole replay).

Run alone: ``python bench/roster.py [--quick]``.
"""

from __future__ import annotations

import argparse
import hashlib
import statistics
import sys
import time
from collections.abc import Callable

from common import Row, table
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from crdt import roster as rs
from crdt.roster import Roster, Signer, new_signing_key

MEMBERS = 100
T0 = 1_700_000_000.0


def signer(n: int) -> Signer:
    return Signer(new_signing_key(n.to_bytes(32, "big")), n.to_bytes(16, "big"))


def best(fn: Callable[[], object], repeat: int) -> float:
    """The fastest of *repeat* runs, in seconds (the least disturbed by the
    other programs on a shared machine)."""
    return best_of([fn], repeat)[0]


def best_of(fns: list[Callable[[], object]], repeat: int) -> list[float]:
    """The fastest run of each function, run in turn *repeat* times (a
    measurement and its reference share the machine's load)."""
    times: list[list[float]] = [[] for _ in fns]
    for _ in range(repeat):
        for fn, out in zip(fns, times, strict=True):
            start = time.perf_counter()
            fn()
            out.append(time.perf_counter() - start)
    return [min(t) for t in times]


def interleaved(fns: list[Callable[[], object]], n: int) -> list[float]:
    """The median time of each function, run in turn *n* times."""
    times: list[list[float]] = [[] for _ in fns]
    for _ in range(n):
        for fn, out in zip(fns, times, strict=True):
            start = time.perf_counter()
            fn()
            out.append(time.perf_counter() - start)
    return [statistics.median(t) for t in times]


def build_space(admin: Signer, members: list[Signer]) -> tuple[Roster, list[bytes]]:
    r, _ = Roster.create(admin, "team", "admin", T0)
    for i, m in enumerate(members):
        r.sign_add(admin, m.peer_id, m.public_key, "writer", f"member {i}", T0 + i)
    return r, r.ops()


def big_space(admin: Signer, other: Signer, members: list[Signer]) -> list[bytes]:
    """MAX_OPS - 1 ops: two admins change roles and names on their own
    copies, exchanging what the other lacks every 25 ops each (so the DAG
    has two branches between merges)."""
    a, _ = Roster.create(admin, "big", "admin", T0)
    a.sign_add(admin, other.peer_id, other.public_key, "admin", "other", T0)
    for i, m in enumerate(members[: MEMBERS - 2]):
        a.sign_add(admin, m.peer_id, m.public_key, "writer", f"member {i}", T0 + i)
    b = Roster(a.space_id)
    b.receive_many(a.ops())
    t = 0
    while len(a) < rs.MAX_OPS - 1:
        common = a.heads
        made = len(a)
        for copy, who in ((a, admin), (b, other)):
            for _ in range(25):
                if made >= rs.MAX_OPS - 1:
                    break
                made += 1
                t += 1
                target = members[t % (MEMBERS - 2)]
                if t % 3:
                    role = "reader" if copy.role(target.peer_id) == "writer" else "writer"
                    copy.sign_role(who, target.peer_id, role, T0 + 1000 + t)
                else:
                    copy.sign_name(who, f"{'ab'[t % 2]}{t}", T0 + 1000 + t)
        a_new = a.ops_since(common)
        a.receive_many(b.ops_since(common))
        b.receive_many(a_new)
        assert a.digest == b.digest
    return a.ops()


def rows(quick: bool = False) -> list[Row]:
    repeat = 3 if quick else 7
    admin = signer(1)
    members = [signer(100 + i) for i in range(MEMBERS)]
    out: list[Row] = []

    # Build: 100 signed ADDs (each signed, decoded, verified and applied).
    r, ops = build_space(admin, members)
    key = Ed25519PrivateKey.from_private_bytes(bytes(32))
    pub = key.public_key()
    payloads = [b"meshpad-roster-v1" + op[: -rs.SIGNATURE_BYTES] for op in ops]
    build, raw_sign = best_of(
        [lambda: build_space(admin, members), lambda: [key.sign(p) for p in payloads[1:]]], repeat
    )
    out.append(
        Row(
            f"roster: build a space of {MEMBERS} members ({MEMBERS} signed ADDs)",
            f"{build * 1000:.1f} ms ({build / MEMBERS * 1e6:.0f} µs an ADD: signed, verified, applied)",
            f"{MEMBERS} raw Ed25519 signatures: {raw_sign * 1000:.1f} ms",
            "≤ 100 ms",
            build <= 0.1,
        )
    )

    # Verify + replay into a fresh roster.
    def take_all() -> Roster:
        fresh = Roster(r.space_id)
        fresh.receive_many(ops)
        return fresh

    assert take_all().digest == r.digest
    signed_sigs = [(key.sign(p), p) for p in payloads]
    verify_all, raw_verify = best_of([take_all, lambda: [pub.verify(s, p) for s, p in signed_sigs]], repeat)
    out.append(
        Row(
            f"roster: verify and replay a {MEMBERS}-member space ({len(ops)} ops, receive_many)",
            f"{verify_all * 1000:.1f} ms ({verify_all / raw_verify:.2f} × the raw verifications)",
            f"{len(ops)} raw Ed25519 verifications: {raw_verify * 1000:.1f} ms",
            "≤ 1.5 × the raw verifications",
            verify_all <= 1.5 * raw_verify,
        )
    )

    # Per op: the three measured in turn, so that the machine's load falls
    # on all of them alike.
    one = ops[-1]
    n = 300 if quick else 2000
    s1, p1 = signed_sigs[-1]
    per_op, one_verify, one_hash = interleaved(
        [lambda: rs.decode_op(one), lambda: pub.verify(s1, p1), lambda: hashlib.blake2b(one, digest_size=32).digest()],
        n,
    )
    out.append(
        Row(
            f"roster: decode and verify one op ({len(one)} B ADD)",
            f"{per_op * 1e6:.0f} µs (median of {n})",
            f"raw Ed25519 verify {one_verify * 1e6:.0f} µs + BLAKE2b of the op {one_hash * 1e6:.1f} µs",
            "≤ 1.3 × raw verify + hash",
            per_op <= 1.3 * (one_verify + one_hash),
        )
    )

    # 10,000 ops.
    big = big_space(admin, signer(2), members)

    def take_big() -> Roster:
        fresh = Roster(rs.space_id_of(big[0]))
        fresh.receive_many(big)
        return fresh

    full = take_big()
    big_repeat = 1 if quick else 3
    take = best(take_big, big_repeat)
    replay_big = best(lambda: rs._replay(full._ops, False), big_repeat)
    small_ops = take_all()._ops
    replay_small = best(lambda: rs._replay(small_ops, False), repeat)
    merges = sum(1 for op in full._ops.values() if len(op.parents) > 1)
    # One op concurrent with the last 25: it names an older op, so the whole
    # order is computed anew.
    side = Roster(full.space_id)
    side.receive_many(big[:-25])
    late = side.sign_name(admin, "late", T0 + 10**6)

    def one_concurrent() -> None:
        fresh_copy = take_big()
        start = time.perf_counter()
        fresh_copy.receive(late)
        timings.append(time.perf_counter() - start)

    timings: list[float] = []
    for _ in range(big_repeat):
        one_concurrent()
    concurrent = min(timings)
    ratio = replay_big / replay_small
    growth = (len(big) / len(ops)) * (1 + (len(big).bit_length() - len(ops).bit_length()) / len(ops).bit_length())
    out.append(
        Row(
            f"roster: {len(big):,} ops (100 members, 2 admins on branches) into a fresh roster",
            f"verify + replay {take:.2f} s ({take / len(big) * 1e6:.0f} µs an op); replay alone "
            f"{replay_big * 1000:.0f} ms; one concurrent op arriving (a whole replay) {concurrent * 1000:.0f} ms",
            f"{len(big):,} × the raw verify above: {len(big) * one_verify:.2f} s; "
            f"replay of the {len(ops)}-op space {replay_small * 1000:.2f} ms: {ratio:.0f} × for "
            f"{len(big) / len(ops):.0f} × the ops (n log n: {growth:.0f} ×); {merges} merges in the DAG",
            "replay ≤ 2 × n log n growth",
            ratio <= 2 * growth,
        )
    )
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer repetitions")
    args = parser.parse_args()
    print(table(rows(args.quick)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
