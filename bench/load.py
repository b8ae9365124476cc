"""The load row: 50 clients on one of 5 peers each type 10 keystrokes a
second (bench/typist.py); one client on each other peer observes, in an
agent process of its own (bench/agent.py) so that the observers' clock is
not held up by the typists. Latency from a keystroke's send to its arrival
at the observers, the sending peer's CPU, and no keystroke lost.

    python bench/load.py               # 8 seconds of typing, as a table
"""

from __future__ import annotations

import asyncio
import random
import tempfile
import time
from pathlib import Path

from agent import AgentProcess
from common import Row, percentile, table
from measure import MachineLoad, ms
from peers import mesh_ready, start_peers, stop_peers
from processes import Peer
from typist import TYPIST_CHARS, Typist


async def _type_on_schedule(a_url: str, name: str, seconds: float, rate: float) -> tuple[list[Typist], list[float]]:
    """50 typists on A; keystroke k of typist i is due at t0 + k / rate +
    i / (rate × 50): they take turns evenly. Due times are absolute, so a late
    send does not delay the ones after it. Returns the typists (with their
    send times) and each send's lag behind its due time."""
    host, port = a_url.removeprefix("http://").rsplit(":", 1)
    typists = [await Typist.connect(host, int(port), f"/ws/{name}", 1000 + i, ch) for i, ch in enumerate(TYPIST_CHARS)]
    n = len(typists)
    t0 = time.monotonic() + 0.5
    lag = []
    for k in range(round(seconds * rate)):
        for i, typist in enumerate(typists):
            due = t0 + k / rate + i / (rate * n)
            delay = due - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            typist.key()
            lag.append(typist.sent[-1] - due)
    return typists, lag


async def _load_run(
    peers: list[Peer], observer: AgentProcess, seconds: float, rate: float
) -> tuple[list[Typist], list[float], list[dict[str, list[float]]], list[str], MachineLoad]:
    """Type on A; then, with the typists still connected (and drained),
    collect the observers' arrival times and every peer's text."""
    assert peers[0].proc is not None
    with MachineLoad([peers[0].proc.pid]) as load:
        typists, lag = await _type_on_schedule(peers[0].url, "load", seconds, rate)
    expect = {str(t.client_id): len(t.sent) for t in typists}
    loop = asyncio.get_running_loop()
    times = await loop.run_in_executor(None, lambda: observer.call("arrivals", expect=expect, timeout=30)["times"])
    texts = await loop.run_in_executor(None, lambda: [p.get("/api/docs/load")["text"] for p in peers])
    await asyncio.gather(*(t.close() for t in typists))
    return typists, lag, times, texts, load


def row_load(work: Path, seconds: float, reference: str) -> Row:
    """5 peers; 50 clients on peer A each type 10 keystrokes a second; one
    client on each other peer observes (in a process of its own). Latency
    from a keystroke's send to its arrival at the other peers' clients, and
    no keystroke lost."""
    name = f"load (50 clients × 10 keys/s on A for {seconds:g} s, 5 peers)"
    target = "p99 ≤ 50 ms, none lost"
    peers: list[Peer] = []
    observer: AgentProcess | None = None
    try:
        peers = start_peers(work, "load", 5, random.Random(5))
        mesh_ready(peers, "load", 120)
        observer = AgentProcess(work / "load-observer.log")
        observer.call("attach", urls=[p.url for p in peers[1:]], token_files=[None] * 4, name="load")
        observer.call("connect", first_id=900)
        typists, lag, times, texts, load = asyncio.run(_load_run(peers, observer, seconds, 10.0))
        per_typist = len(typists[0].sent)
    except (TimeoutError, AssertionError, OSError) as exc:
        return Row(name, f"failed: {exc}", reference, target, False)
    finally:
        if observer is not None:
            observer.stop()
        stop_peers(peers)
    every: list[float] = []
    last: list[float] = []
    missing = 0
    for t in typists:
        for k, sent in enumerate(t.sent):
            arrived = [w[str(t.client_id)][k] for w in times if len(w[str(t.client_id)]) > k]
            missing += len(times) - len(arrived)
            every += [x - sent for x in arrived]
            if len(arrived) == len(times):
                last.append(max(arrived) - sent)
    # Every peer's text holds every typed character, once.
    sent_total = per_typist * len(typists)
    short = [
        f"{p.address} holds {len(text)} of {sent_total} characters"
        for p, text in zip(peers, texts, strict=True)
        if len(text) != sent_total or any(text.count(ch) != per_typist for ch in TYPIST_CHARS)
    ]
    lost = missing > 0 or bool(short)
    p99_last = percentile(last, 99) if last else float("inf")
    span = max(t.sent[-1] for t in typists) - min(t.sent[0] for t in typists)
    measured = (
        f"until every other peer's client has it: p50 {ms(percentile(last, 50))} ms, p99 {ms(p99_last)} ms; "
        f"per arrival p99 {ms(percentile(every, 99))} ms; {sent_total:,} keystrokes at {sent_total / span:.0f}/s "
        f"(send lag behind schedule p99 {ms(percentile(lag, 99))} ms); while typing, {load.describe('peer A')}; "
        + (f"LOST: {missing} arrivals missing at observers; {'; '.join(short)}" if lost else "none lost")
    )
    return Row(name, measured, reference, target, p99_last <= 0.050 and not lost)


if __name__ == "__main__":
    with tempfile.TemporaryDirectory(prefix="meshpad-bench-") as tmp:
        print(table([row_load(Path(tmp), 8, "keystroke latency row: not measured here (bench/run.py)")]))
