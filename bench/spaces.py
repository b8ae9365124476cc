"""Spaces rows (issue 15): what being in many spaces costs a peer.

* handshake: a responder holding K space keys (K = 1, 10, 20, 50: spaces ×
  epochs) tries Noise message 1 against each (``crdt.secure``); a dialler
  holding the last one. The whole 3-message exchange in memory, against the
  single-key channel, the two run in turn so the machine's load falls on both;
* roster: a space of 100 members (100 signed ADDs) verified and replayed by a
  fresh roster, against the raw Ed25519 verifications; the HELLO admission
  check (``crdt.access.Access.admit``) for a member and for an invite's
  redeemer (which signs an ADD), against the single-key handshake that
  precedes it and one raw Ed25519 signature;
* idle: two real ``meshpad serve`` processes sharing 10 spaces of 100
  documents each (the first space, joined with ``--join``, and 9 made on A,
  each joined by B with an invite); the bytes of 60 s of idle from
  ``GET /api/spaces`` ``"wire"``, summed over the spaces, with the first
  space's ``/metrics`` as a cross-check and its messages by type; against
  the same pair sharing 1 space of 100 documents;
* keystroke: the peer-level keystroke row of ``bench/run.py`` (a client of
  A types, a client of B waits for each character), with the CPU both peers
  used per keystroke, against the same on the tree before spaces
  (``git archive`` of that commit), the two run in turn.

Run alone: ``python bench/spaces.py [--quick] [--idle-seconds N]``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
from common import ROOT, Row, exists, get_json, percentile, table, wait_sync
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from processes import Peer
from prometheus_client.parser import text_string_to_metric_families
from roster import MEMBERS, best_of, build_space, interleaved, signer
from yclient import YClient, wait_for

from crdt import peerwire as pw
from crdt import roster as rs
from crdt.access import Access, Invite, token_hash
from crdt.links import Link, Links
from crdt.roster import Roster
from crdt.secure import Identity, SecureChannel, new_private_key

KEY_COUNTS = (1, 10, 20, 50)
IDLE_TARGET = 400.0  # B/s sent per peer (issue 15)
SPACES = 10
DOCS = 100


# -- handshake ---------------------------------------------------------------------


def handshake(dialler: Identity, responder: Identity, keys: list[bytes] | None) -> Callable[[], None]:
    """One whole handshake in memory: message 1, 2 and 3 through both
    channels. *keys* None: the single-key channel (the responder's own key)."""
    expected = len(keys) - 1 if keys else 0

    def run() -> None:
        dial = SecureChannel(dialler, initiator=True)
        answer = SecureChannel(responder, initiator=False, keys=keys or ())
        (first,) = dial.start()
        second, _ = answer.receive(first)
        third, _ = dial.receive(second[0])
        answer.receive(third[0])
        assert dial.established and answer.established and answer.chosen == expected

    return run


def timed_pairs(fns: list[Callable[[], None]], n: int) -> list[list[float]]:
    """Every run's seconds, the functions run in turn *n* times."""
    times: list[list[float]] = [[] for _ in fns]
    for _ in range(n):
        for fn, out in zip(fns, times, strict=True):
            start = time.perf_counter()
            fn()
            out.append(time.perf_counter() - start)
    return times


def rows_handshake(quick: bool) -> tuple[list[Row], float]:
    """The rows, and the single-key handshake's median (seconds)."""
    n = 100 if quick else 400
    keys = [os.urandom(32) for _ in range(max(KEY_COUNTS))]
    rows: list[Row] = []
    singles: list[float] = []
    for count in KEY_COUNTS:
        space_key = keys[count - 1]  # the dialler holds the last key the responder tries
        dialler = Identity(new_private_key(), space_key)
        responder = Identity(new_private_key(), space_key)
        many, single = timed_pairs(
            [handshake(dialler, responder, keys[:count]), handshake(dialler, responder, None)], n
        )
        m50, m99 = percentile(many, 50), percentile(many, 99)
        s50, s99 = percentile(single, 50), percentile(single, 99)
        singles += single
        extra = (m50 - s50) / (count - 1) * 1e6 if count > 1 else 0.0
        rows.append(
            Row(
                f"spaces: handshake, responder holding {count} key{'s' if count > 1 else ''}, dialler the last",
                f"p50 {m50 * 1000:.2f} ms, p99 {m99 * 1000:.2f} ms ({m50 / s50:.1f} × single key"
                + (f"; {extra:.0f} µs a key tried)" if count > 1 else ")"),
                f"single-key channel p50 {s50 * 1000:.2f} ms, p99 {s99 * 1000:.2f} ms ({n} each, in turn)",
                "p50 ≤ 2 × single key",
                m50 <= 2 * s50,
            )
        )
    return rows, statistics.median(singles)


# -- roster and admission -------------------------------------------------------------


def _link(peer: bytes, outbound: bool = False) -> Link:
    return Link(id=1, outbound=outbound, address="127.0.0.1:1", opened_at=0.0, last_heard=0.0, remote_id=peer)


def hello_of(who: rs.Signer, space: bytes, token: bytes) -> pw.Hello:
    return pw.Hello(
        version=pw.VERSION,
        peer_id=who.peer_id,
        listen="",
        nonce=1,
        space=space,
        sign_key=who.public_key,
        name="member",
        token=token,
    )


def rows_roster(quick: bool, single_handshake: float) -> list[Row]:
    repeat = 3 if quick else 7
    admin = signer(1)
    members = [signer(100 + i) for i in range(MEMBERS)]
    built, ops = build_space(admin, members)

    def take_all() -> Roster:
        fresh = Roster(built.space_id)
        fresh.receive_many(ops)
        return fresh

    assert take_all().digest == built.digest
    key = Ed25519PrivateKey.from_private_bytes(bytes(32))
    pub = key.public_key()
    payloads = [b"meshpad-roster-v1" + op[: -rs.SIGNATURE_BYTES] for op in ops]
    signed = [(key.sign(p), p) for p in payloads]
    build, verify_all, raw_verify = best_of(
        [lambda: build_space(admin, members), take_all, lambda: [pub.verify(s, p) for s, p in signed]], repeat
    )
    rows = [
        Row(
            f"spaces: roster of {MEMBERS} members: build ({MEMBERS} signed ADDs), verify + replay into a fresh roster",
            f"build {build * 1000:.1f} ms; verify + replay {verify_all * 1000:.1f} ms "
            f"({verify_all / raw_verify:.2f} × the raw verifications)",
            f"{len(ops)} raw Ed25519 verifications: {raw_verify * 1000:.1f} ms",
            "verify + replay ≤ 1.5 × the raw verifications",
            verify_all <= 1.5 * raw_verify,
        )
    ]

    # HELLO admission: a member (a roster look-up), and a newcomer with an
    # invite token (this admin signs and applies its ADD).
    now = 1_800_000_000.0
    access = Access(take_all(), admin, "admin", wall=lambda: now)
    member = members[MEMBERS // 2]
    member_link = _link(member.peer_id)
    member_hello = hello_of(member, built.space_id, b"")
    assert access.admit(member_link, member_hello, 0.0) == (True, [])
    n = 2000 if quick else 20000
    admit, lookup = interleaved(
        [lambda: access.admit(member_link, member_hello, 0.0), lambda: access.roster.role(member.peer_id)], n
    )
    rows.append(
        Row(
            f"spaces: HELLO admission of a member of a {MEMBERS}-member space (Access.admit)",
            f"{admit * 1e6:.2f} µs (median of {n}; {admit / single_handshake * 100:.3f} % of the handshake before it)",
            f"roster look-up alone {lookup * 1e6:.2f} µs; single-key handshake {single_handshake * 1000:.2f} ms",
            "≤ 1 % of the handshake",
            admit <= 0.01 * single_handshake,
        )
    )

    newcomers = [signer(10_000 + i) for i in range(50 if quick else 200)]
    redeem_times: list[float] = []
    sign_times: list[float] = []
    for i, newcomer in enumerate(newcomers):
        fresh = Access(take_all(), admin, "admin", wall=lambda: now)
        fresh.bind(Links(admin.peer_id, "", random.Random(i)), random.Random(i))
        token = i.to_bytes(16, "big")
        fresh.invites[token_hash(token)] = Invite("writer", now + 3600)
        hello = hello_of(newcomer, built.space_id, token)
        start = time.perf_counter()
        kept, _ = fresh.admit(_link(newcomer.peer_id), hello, 0.0)
        redeem_times.append(time.perf_counter() - start)
        assert kept and fresh.roster.role(newcomer.peer_id) == "writer"
        start = time.perf_counter()
        key.sign(payloads[-1])
        sign_times.append(time.perf_counter() - start)
    redeem, raw_sign = statistics.median(redeem_times), statistics.median(sign_times)
    rows.append(
        Row(
            f"spaces: HELLO admission with an invite into a {MEMBERS}-member space (signs and applies the ADD)",
            f"{redeem * 1e6:.0f} µs (median of {len(newcomers)}; "
            f"{redeem / single_handshake * 100:.1f} % of the handshake)",
            f"one raw Ed25519 signature {raw_sign * 1e6:.0f} µs; single-key handshake {single_handshake * 1000:.2f} ms",
            "≤ the handshake",
            redeem <= single_handshake,
        )
    )
    return rows


# -- idle ----------------------------------------------------------------------------


def call(url: str, body: dict[str, object] | None = None, method: str | None = None) -> object:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as resp:
        return json.loads(resp.read())


def spaces_of(peer: Peer) -> list[dict[str, Any]]:
    return get_json(f"{peer.url}/api/spaces")  # type: ignore[return-value]


def wire_total(peer: Peer) -> tuple[int, int]:
    """(in, out) bytes over all of the peer's spaces."""
    rows = spaces_of(peer)
    return sum(int(s["wire"]["in"]) for s in rows), sum(int(s["wire"]["out"]) for s in rows)


def first_space_metrics(peer: Peer) -> dict[tuple[str, str, str], float]:
    """The first space's peer traffic from /metrics: (family, direction, type) -> value."""
    with urllib.request.urlopen(f"{peer.url}/metrics", timeout=10) as resp:
        text = resp.read().decode()
    out: dict[tuple[str, str, str], float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name in ("meshpad_peer_bytes_total", "meshpad_peer_messages_total"):
                out[(sample.name, sample.labels["direction"], sample.labels["type"])] = sample.value
    return out


def settle(peers: list[Peer], budget: float, window: float = 5.0, timeout: float = 90.0) -> float:
    """Wait until a *window* of seconds moves at most *budget* B/s sent per
    peer (the last anti-entropy rounds after the documents came); seconds
    waited. Measures anyway after *timeout*."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        before = [wire_total(p)[1] for p in peers]
        time.sleep(window)
        after = [wire_total(p)[1] for p in peers]
        if max(b - a for a, b in zip(before, after, strict=True)) <= budget * window:
            break
    return time.monotonic() - start


@dataclass
class Idle:
    seconds: float  # the idle window
    settled: float  # seconds waited for the settling window before it
    rates: dict[str, tuple[float, float]]  # peer -> (received, sent) B/s over all spaces
    first_wire: dict[str, float]  # peer -> sent B/s on the first space, GET /api/spaces
    first_metrics: dict[str, float]  # peer -> sent B/s on the first space, /metrics
    by_type: dict[str, dict[str, tuple[float, float]]]  # type -> peer -> (messages, bytes) sent
    links: dict[str, int]  # peer -> connected links on the first space at the end

    def worst(self) -> float:
        return max(sent for _, sent in self.rates.values())


def connected(peer: Peer) -> int:
    rows: list[dict[str, object]] = get_json(f"{peer.url}/api/peers")  # type: ignore[assignment]
    return sum(1 for r in rows if r["state"] == "connected")


def first_wire_out(peer: Peer) -> int:
    return int(spaces_of(peer)[0]["wire"]["out"])


def pair_idle(work: Path, label: str, spaces: int, docs: int, seconds: float) -> Idle:
    """Start A and B, share *spaces* spaces of *docs* documents each, wait
    until B has them all, settle, then count *seconds* of idle."""
    a = Peer(work / f"{label}-a").start()
    b = Peer(work / f"{label}-b", args=["--join", a.address]).start()
    peers = {"a": a, "b": b}
    try:
        wait_sync(lambda: connected(b) > 0, 30)
        names = [str(spaces_of(a)[0]["name"])]
        for i in range(1, spaces):
            made = call(f"{a.url}/api/spaces", {"name": f"space{i:02d}"})
            names.append(str(made["name"]))  # type: ignore[index]
            invite = call(f"{a.url}/api/spaces/{names[-1]}/invites", {"role": "writer"})
            call(f"{b.url}/api/peers", {"address": invite["invite"]})  # type: ignore[index]
        for name in names:
            for d in range(docs):
                call(f"{a.url}/api/docs", {"name": f"d{d:03d}", "space": name, "text": f"document {d} of {name}\n"})
        ids = {str(s["id"]) for s in spaces_of(a)}
        assert len(ids) == spaces

        def b_has_all() -> bool:
            held = {str(s["id"]): s["documents"] for s in spaces_of(b)}
            return all(held.get(i) == docs for i in ids)

        wait_sync(b_has_all, 300, poll=0.5)
        settled = settle([a, b], IDLE_TARGET)
        w0 = {p: wire_total(peer) for p, peer in peers.items()}
        m0 = {p: first_space_metrics(peer) for p, peer in peers.items()}
        f0 = {p: first_wire_out(peer) for p, peer in peers.items()}
        t0 = time.monotonic()
        time.sleep(seconds)
        w1 = {p: wire_total(peer) for p, peer in peers.items()}
        elapsed = time.monotonic() - t0
        m1 = {p: first_space_metrics(peer) for p, peer in peers.items()}
        f1 = {p: first_wire_out(peer) for p, peer in peers.items()}
        links = {p: connected(peer) for p, peer in peers.items()}
    finally:
        b.stop()
        a.stop()

    def sent(p: str, family: str, kind: str) -> float:
        key = (family, "out", kind)
        return m1[p].get(key, 0) - m0[p].get(key, 0)

    kinds = {k[2] for m in m1.values() for k in m if k[1] == "out"}
    by_type: dict[str, dict[str, tuple[float, float]]] = {}
    for kind in kinds:
        counts = {
            p: (sent(p, "meshpad_peer_messages_total", kind), sent(p, "meshpad_peer_bytes_total", kind)) for p in peers
        }
        if any(n for n, _ in counts.values()):
            by_type[kind] = counts
    return Idle(
        seconds=elapsed,
        settled=settled,
        rates={p: ((w1[p][0] - w0[p][0]) / elapsed, (w1[p][1] - w0[p][1]) / elapsed) for p in peers},
        first_wire={p: (f1[p] - f0[p]) / elapsed for p in peers},
        first_metrics={p: sum(sent(p, "meshpad_peer_bytes_total", k) for k in kinds) / elapsed for p in peers},
        by_type=by_type,
        links=links,
    )


def rows_idle(work: Path, seconds: float) -> tuple[list[Row], str]:
    """The idle row and a table of the first space's messages by type."""
    many = pair_idle(work, "idle10", SPACES, DOCS, seconds)
    one = pair_idle(work, "idle1", 1, DOCS, seconds)
    worst, ref = many.worst(), one.worst()
    (ai, ao), (bi, bo) = many.rates["a"], many.rates["b"]
    over = f"; {worst - IDLE_TARGET:.0f} B/s ({worst / IDLE_TARGET:.2f} ×) over" if worst > IDLE_TARGET else ""
    row = Row(
        f"spaces: idle cost, a pair sharing {SPACES} spaces of {DOCS} documents each "
        f"({many.seconds:.0f} s, GET /api/spaces wire summed over spaces)",
        f"{worst:.0f} B/s sent per peer (A sent {ao:.0f}, received {ai:.0f}; "
        f"B sent {bo:.0f}, received {bi:.0f}){over}; "
        f"first space: wire {many.first_wire['a']:.0f} / {many.first_wire['b']:.0f} B/s sent by A / B, "
        f"/metrics {many.first_metrics['a']:.0f} / {many.first_metrics['b']:.0f}",
        f"1 space of {DOCS} documents: {ref:.0f} B/s sent per peer (A {one.rates['a'][1]:.0f}, "
        f"B {one.rates['b'][1]:.0f}); {worst / ref if ref else float('inf'):.1f} × for {SPACES} × the spaces",
        f"≤ {IDLE_TARGET:.0f} B/s per peer",
        worst <= IDLE_TARGET,
    )
    span = many.seconds
    lines = [
        f"First space's messages sent during the {span:.0f} s idle ({SPACES}-space pair, /metrics):",
        "",
        "| type | A messages/s | A B/s | B messages/s | B B/s |",
        "|---|---|---|---|---|",
    ]
    for kind, c in sorted(many.by_type.items(), key=lambda kv: -sum(b for _, b in kv[1].values())):
        lines.append(
            f"| {kind} | {c['a'][0] / span:.2f} | {c['a'][1] / span:.0f} "
            f"| {c['b'][0] / span:.2f} | {c['b'][1] / span:.0f} |"
        )
    lines += [
        "",
        f"Settling before the window: {many.settled:.0f} s ({SPACES} spaces), {one.settled:.0f} s (1 space); "
        f"links on the first space at the end: A {many.links['a']}, B {many.links['b']}.",
    ]
    return [row], "\n".join(lines)


# -- keystroke -------------------------------------------------------------------------


# The last commit before spaces (issue 15): the keystroke row's reference.
BEFORE_SPACES = "cc54c31a210905dd6232530fccb3554e43c56e23"
# -P: the working directory is not put first on the path, so PYTHONPATH
# decides which tree's server a peer runs.
PYTHON = [sys.executable, "-P"]


def tree_at(commit: str, into: Path) -> Path:
    """The project's files at *commit* (``git archive``), to run its peers."""
    into.mkdir(parents=True)
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", commit], check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    found = subprocess.run(
        [*PYTHON, "-c", "import server; print(server.__file__)"],
        env=dict(os.environ, PYTHONPATH=str(into)),
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    assert Path(found).is_relative_to(into), f"the peers would run {found}, not the tree at {commit}"
    return into


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (/proc/PID/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def type_keys(a: Peer, b: Peer, count: int) -> tuple[list[float], float]:
    """bench/run.py's keystroke loop: *count* characters typed one at a time
    by a client of A, each timed until B's client has it; also the CPU both
    peers used while typing, per keystroke."""
    assert a.proc is not None and b.proc is not None
    async with aiohttp.ClientSession() as http:
        writer = await YClient.connect(http, f"{a.url}/ws/keys", 71)
        reader = await YClient.connect(http, f"{b.url}/ws/keys", 72)
        await wait_for(lambda: writer.synced and reader.synced, 10)
        samples = []
        cpu0 = cpu_seconds(a.proc.pid) + cpu_seconds(b.proc.pid)
        for i in range(count):
            before = len(reader.frames)
            start = time.perf_counter()
            await writer.insert(i, "k")
            await reader.wait_frames(before + 1)
            assert len(reader.frames) > before, "the reading client was disconnected"
            samples.append(time.perf_counter() - start)
        cpu = cpu_seconds(a.proc.pid) + cpu_seconds(b.proc.pid) - cpu0
        await writer.close()
        await reader.close()
    return samples, cpu / count


def keystroke_samples(work: Path, count: int, env: dict[str, str]) -> tuple[list[float], float]:
    a = Peer(work / "a", env=env, command=[*PYTHON, "-m", "server"]).start()
    b = Peer(work / "b", args=["--join", a.address], env=env, command=[*PYTHON, "-m", "server"]).start()
    try:
        wait_sync(lambda: connected(b) > 0, 30)
        call(f"{a.url}/api/docs", {"name": "keys"})
        wait_sync(lambda: exists(b, "keys"), 30)
        return asyncio.run(type_keys(a, b, count))
    finally:
        b.stop()
        a.stop()


def row_keystroke(work: Path, quick: bool) -> Row:
    """The peer-level keystroke row (bench/run.py's), on this tree and on
    the tree before spaces, in turn: *rounds* runs of each. Also the CPU the
    two peers used per keystroke, which the machine's load moves less than
    the wall-clock times."""
    rounds, count = (2, 300) if quick else (3, 1000)
    before = tree_at(BEFORE_SPACES, work / "before-spaces")
    times: dict[str, list[float]] = {"now": [], "then": []}
    p99s: dict[str, list[float]] = {"now": [], "then": []}
    cpus: dict[str, list[float]] = {"now": [], "then": []}
    for i in range(rounds):
        for which, tree in (("now", ROOT), ("then", before)):
            samples, cpu = keystroke_samples(work / f"keys-{which}-{i}", count, {"PYTHONPATH": str(tree)})
            times[which] += samples
            p99s[which].append(percentile(samples, 99) * 1000)
            cpus[which].append(cpu * 1000)
    p50, p99 = percentile(times["now"], 50) * 1000, percentile(times["now"], 99) * 1000
    r50, r99 = percentile(times["then"], 50) * 1000, percentile(times["then"], 99) * 1000

    def span(values: list[float]) -> str:
        return f"{min(values):.2f}–{max(values):.2f}"

    return Row(
        f"keystroke latency ({rounds} × {count:,} keys, A → B, peer level as in bench/run.py)",
        f"p50 {p50:.2f} ms, p99 {p99:.2f} ms (p99 of each run {span(p99s['now'])} ms); "
        f"CPU of both peers {statistics.median(cpus['now']):.2f} ms a keystroke",
        f"before spaces ({BEFORE_SPACES[:7]}), in turn: p50 {r50:.2f} ms, p99 {r99:.2f} ms "
        f"(p99 of each run {span(p99s['then'])} ms); CPU {statistics.median(cpus['then']):.2f} ms a keystroke",
        "p99 ≤ 5 ms",
        p99 <= 5,
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer repetitions, 20 s of idle")
    parser.add_argument("--idle-seconds", type=float, default=None, help="seconds of idle measured (default 60)")
    parser.add_argument("--only", choices=["handshake", "roster", "idle", "keystroke"], action="append")
    args = parser.parse_args()
    seconds = args.idle_seconds or (20.0 if args.quick else 60.0)
    only = set(args.only or ["handshake", "roster", "idle", "keystroke"])
    rows: list[Row] = []
    extra = ""
    load0 = os.getloadavg()[0]
    if only & {"handshake", "roster"}:
        hand_rows, single = rows_handshake(args.quick)
        if "handshake" in only:
            rows += hand_rows
        if "roster" in only:
            rows += rows_roster(args.quick, single)
    with tempfile.TemporaryDirectory(prefix="meshpad-bench-spaces-") as tmp:
        work = Path(tmp)
        if "idle" in only:
            idle_rows, extra = rows_idle(work, seconds)
            rows += idle_rows
        if "keystroke" in only:
            rows.append(row_keystroke(work, args.quick))
    print(table(rows))
    print(
        f"\nLoad average (1 min) at the start {load0:.1f}, at the end {os.getloadavg()[0]:.1f}, "
        f"on {os.cpu_count()} cores."
    )
    if extra:
        print()
        print(extra)
    return 0


if __name__ == "__main__":
    sys.exit(main())
