"""What the Peers page shows, read from the node's parts: a row per ready
link, then a row per known peer with no link."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

from crdt.links import Links
from crdt.liveness import Liveness
from crdt.membership import KnownPeers


@dataclass(frozen=True, slots=True)
class PeerRow:
    """One row of the Peers page: a link, or a known peer with no link."""

    id: str | None
    address: str
    state: str  # connected, suspected, connecting, down
    push: str | None  # eager, lazy (links only)
    direction: str | None  # inbound, outbound (links only)
    last_heard: float | None
    rtt_ms: float | None
    bytes_in: int
    bytes_out: int
    in_sync: list[str]
    last_sync_check: float | None
    failures: int
    error: str | None


def peer_rows(
    table: Links, liveness: Liveness, known: KnownPeers, documents: Collection[str], now: float
) -> list[PeerRow]:
    rows: list[PeerRow] = []
    seen: set[bytes] = set()
    for link in sorted(table.ready(), key=lambda k: k.peer_id or b""):
        assert link.peer_id is not None
        seen.add(link.peer_id)
        rows.append(
            PeerRow(
                link.peer_id.hex(),
                link.listen or link.address,
                "suspected" if liveness.suspected(link, now) else "connected",
                "eager" if link.eager else "lazy",
                "outbound" if link.outbound else "inbound",
                link.last_heard,
                None if link.rtt is None else round(link.rtt * 1000, 2),
                link.bytes_in,
                link.bytes_out,
                sorted(documents) if link.all_in_sync else sorted(link.in_sync),
                link.last_sync_check,
                0,
                None,
            )
        )
    for entry in sorted(known.by_address.values(), key=lambda k: k.address):
        if entry.peer_id is not None and entry.peer_id in seen:
            continue
        if entry.peer_id is not None:
            seen.add(entry.peer_id)
        rows.append(
            PeerRow(
                entry.peer_id.hex() if entry.peer_id else None,
                entry.address,
                "connecting" if entry.dialing else "down",
                None,
                None,
                entry.last_heard,
                None,
                0,
                0,
                [],
                None,
                entry.failures,
                entry.last_error,
            )
        )
    return rows
