"""``GET /metrics``: the peer's state and counters in the Prometheus text
format, through ``prometheus-client``.

Each app has its own :class:`~prometheus_client.CollectorRegistry` (never the
library's global one), so several peers in one process (the tests) do not
mix their numbers. Almost everything is read at scrape time by one custom
collector from what the engine and the shell keep anyway (plain integers in
``crdt`` and ``server.peering``, ``server.runtime``); only the store commit
latency is a live ``Histogram``, fed by the store thread.

Label sets are bounded: states, push modes, directions, the peer protocol's
message types (``crdt.peerwire.TYPE_NAMES``), refusal reasons and outcomes
are fixed sets. No label names a document, a peer or an address.

By default the route is served on the main port behind ``server.security``'s
guard, like the API. ``--metrics-address HOST:PORT`` serves it, and only it,
on a listener of its own without the browser token (:func:`serve_separately`).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from crdt import meta
from crdt import peerwire as pw
from server import addresses
from server.peering import Peering
from server.runtime import Runtime

log = logging.getLogger(__name__)

PEER_STATES = ("connected", "suspected", "connecting", "down")  # crdt.peerrows
PUSH_MODES = ("eager", "lazy")
DIRECTIONS = ("in", "out")
MESSAGE_TYPES = ("handshake", *pw.TYPE_NAMES.values(), "unknown")
REFUSAL_REASONS = (
    "wrong_key", "not_meshpad", "version", "malformed", "timeout", "invalid_data", "banned", "too_many_links",
)  # fmt: skip
ORIGINS = ("peer", "local")
OUTCOMES = ("in_sync", "differed", "timed_out")
# A commit is one SQLite transaction and its fsync: from a fraction of a
# millisecond (an idle SSD) to seconds (a disk that stalls).
COMMIT_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class Metrics:
    """One peer's registry: a collector reading *runtime* and *peering*
    (given with :meth:`watch`) and the store commit histogram."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.commit_seconds = Histogram(
            "meshpad_store_commit_seconds",
            "Time to commit one batch of writes to the store (one transaction), on the store thread",
            buckets=COMMIT_BUCKETS,
            registry=self.registry,
        )
        self._state = _State()
        self.registry.register(self._state)

    def watch(self, runtime: Runtime, peering: Peering, spaces: Any = None) -> None:
        self._state.runtime = runtime
        self._state.peering = peering
        self._state.spaces = spaces

    def observe_commit(self, seconds: float) -> None:
        """A store commit took *seconds* (called on the store thread)."""
        self.commit_seconds.observe(seconds)

    def exposition(self) -> bytes:
        """The text format of every metric, read now (on the event loop:
        the engine's state is only consistent there)."""
        return generate_latest(self.registry)


class _State(Collector):
    def __init__(self) -> None:
        self.runtime: Runtime | None = None
        self.peering: Peering | None = None
        self.spaces: Any = None  # server.spaces.Spaces

    def collect(self) -> Iterator[Metric]:
        runtime, peering = self.runtime, self.peering
        if runtime is None or runtime.engine is None:
            return  # not started: only the histogram
        yield from _engine_metrics(runtime)
        if peering is not None:
            yield from _peering_metrics(peering)
        if self.spaces is not None:
            yield from _space_metrics(self.spaces)


def _space_metrics(spaces: Any) -> Iterator[Metric]:
    """Over every space: how many, by this peer's role, and what peers sent
    that their rights did not allow (no label names a space)."""
    roles = GaugeMetricFamily("meshpad_spaces", "Spaces this peer is in, by its role", labels=["role"])
    counts = {"admin": 0, "writer": 0, "reader": 0, "none": 0}
    refused = {"edit": 0, "answer": 0, "link": 0, "roster": 0}
    for space in spaces:
        counts[space.role if space.role in counts else "none"] += 1
        for what, n in space.access.refused.items():
            refused[what] = refused.get(what, 0) + n
    for role, n in counts.items():
        roles.add_metric([role], n)
    yield roles
    family = CounterMetricFamily(
        "meshpad_rights_refused",
        "What peers sent that their rights in a space did not allow: a reader's change (edit), a reader's answer "
        "to a sync (answer), a link of a non-member (link), a roster op that does not verify (roster)",
        labels=["what"],
    )
    for what, n in refused.items():
        family.add_metric([what], n)
    yield family


def _engine_metrics(runtime: Runtime) -> Iterator[Metric]:
    engine = runtime.core
    node = engine.node
    states = dict.fromkeys(PEER_STATES, 0)
    for row in node.peer_rows(runtime.now()):
        states[row.state] = states.get(row.state, 0) + 1
    peers = GaugeMetricFamily(
        "meshpad_peers", "Peers by state: a link (connected, suspected) or a known peer without one", labels=["state"]
    )
    for state, n in states.items():
        peers.add_metric([state], n)
    yield peers

    push = dict.fromkeys(PUSH_MODES, 0)
    for link in node.table.ready():
        push["eager" if link.eager else "lazy"] += 1
    links = GaugeMetricFamily(
        "meshpad_peer_links",
        "Open peer links by push mode (eager: changes pushed; lazy: named in IHAVE)",
        labels=["push"],
    )
    for mode, n in push.items():
        links.add_metric([mode], n)
    yield links

    applied = CounterMetricFamily(
        "meshpad_updates_applied",
        "Changes integrated into a document here and written to the store, by origin "
        "(peer: from a link; local: a browser of this peer or the peer itself)",
        labels=["origin"],
    )
    for origin in ORIGINS:
        applied.add_metric([origin], runtime.updates_applied.get(origin, 0))
    yield applied

    documents = engine.documents
    pending = sum(doc.pending_count() for doc in documents.values())
    yield GaugeMetricFamily(
        "meshpad_causal_buffer_updates",
        "Updates from peers waiting for their causes, over every loaded document",
        value=pending,
    )

    loaded = sum(1 for key in documents if key != meta.FORGOTTEN_KEY)
    docs = GaugeMetricFamily(
        "meshpad_documents",
        "Documents this peer holds: loaded in memory, or known only by a summary (unloaded)",
        labels=["state"],
    )
    docs.add_metric(["loaded"], loaded)
    docs.add_metric(["unloaded"], len(node.replicas.unloaded))
    yield docs

    stats = node.antientropy.stats
    yield CounterMetricFamily(
        "meshpad_antientropy_rounds", "Anti-entropy rounds started (a DIGEST sent on a link)", value=stats.rounds
    )
    outcomes = CounterMetricFamily(
        "meshpad_antientropy_outcomes",
        "Anti-entropy results: a DIGEST received whose root equals ours (in_sync) or differs (differed), "
        "and document asks not answered in time (timed_out)",
        labels=["outcome"],
    )
    for outcome, n in zip(OUTCOMES, (stats.in_sync, stats.differed, stats.timed_out), strict=True):
        outcomes.add_metric([outcome], n)
    yield outcomes

    yield GaugeMetricFamily(
        "meshpad_browser_connections", "Open browser WebSocket connections (editors)", value=len(runtime.connections)
    )
    frames = CounterMetricFamily(
        "meshpad_browser_frames", "Browser WebSocket frames by direction", labels=["direction"]
    )
    sizes = CounterMetricFamily(
        "meshpad_browser_bytes", "Payload bytes of browser WebSocket frames by direction", labels=["direction"]
    )
    for direction in DIRECTIONS:
        frames.add_metric([direction], runtime.browser_frames.get(direction, 0))
        sizes.add_metric([direction], runtime.browser_bytes.get(direction, 0))
    yield frames
    yield sizes
    yield CounterMetricFamily(
        "meshpad_browser_frames_refused", "Frames from browsers refused as invalid", value=engine.frames_refused
    )
    if runtime.store_thread is not None:
        yield GaugeMetricFamily(
            "meshpad_store_backlog_writes",
            "Writes queued for the store and not yet durable",
            value=runtime.store_thread.backlog(),
        )


def _peering_metrics(peering: Peering) -> Iterator[Metric]:
    traffic = peering.traffic
    messages = CounterMetricFamily(
        "meshpad_peer_messages", "Peer-protocol messages by direction and type", labels=["direction", "type"]
    )
    sizes = CounterMetricFamily(
        "meshpad_peer_bytes",
        "Bytes on peer links (encrypted, WebSocket framing included) by direction and message type",
        labels=["direction", "type"],
    )
    for direction in DIRECTIONS:
        for kind in MESSAGE_TYPES:
            messages.add_metric([direction, kind], traffic.messages.get((direction, kind), 0))
            sizes.add_metric([direction, kind], traffic.bytes.get((direction, kind), 0))
    yield messages
    yield sizes

    refused = CounterMetricFamily(
        "meshpad_peer_links_refused", "Peer links refused or closed for misbehaving, by reason", labels=["reason"]
    )
    for reason in REFUSAL_REASONS:
        refused.add_metric([reason], peering.refusals.get(reason, 0))
    yield refused
    yield CounterMetricFamily(
        "meshpad_peer_bans", "Bans started on a remote address after repeated refusals", value=peering.bans_started
    )
    now = peering.runtime.now()
    yield GaugeMetricFamily(
        "meshpad_peer_banned_addresses",
        "Remote addresses banned now",
        value=sum(1 for record in peering.bans.records.values() if record.banned_until > now),
    )


METRICS = web.AppKey("metrics", Metrics)


async def handle(request: web.Request) -> web.Response:
    """``GET /metrics``."""
    body = request.app[METRICS].exposition()
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


async def serve_separately(metrics: Metrics, host: str, port: int) -> tuple[web.AppRunner, int]:
    """Serve ``GET /metrics`` alone on *host*:*port*, without the token
    (the operator chose where it is reachable). Returns the runner and the
    port bound. Raises ValueError when it cannot listen there."""
    app = web.Application()
    app[METRICS] = metrics
    app.router.add_get("/metrics", handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    try:
        await site.start()
    except OSError as exc:
        await runner.cleanup()
        where = f"{addresses.bracket(host)}:{port}"
        raise ValueError(f"--metrics-address {where}: cannot listen there ({exc.strerror or exc})") from None
    bound = runner.addresses[0][1] if runner.addresses else port
    log.info("metrics served on %s:%s", addresses.bracket(host), bound)
    return runner, bound
