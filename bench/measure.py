"""What the rows over real peers measure with: when each keystroke reached a
replica (:class:`Arrivals`, read from the state vectors pycrdt hands an
observer), the CPU time processes used (``/proc``), and how busy the whole
machine was meanwhile. Times are ``time.monotonic()`` seconds: one clock for
every process of the machine, so times taken in different processes compare.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import common  # noqa: F401 - puts tests/ on sys.path, for yclient
import pycrdt
from yclient import read_varuint


def decode_state_vector(sv: bytes) -> dict[int, int]:
    """A Yjs v1 state vector as {client: clock}."""
    count, pos = read_varuint(sv, 0)
    out = {}
    for _ in range(count):
        client, pos = read_varuint(sv, pos)
        clock, pos = read_varuint(sv, pos)
        out[client] = clock
    return out


class Arrivals:
    """When each item of each Yjs client first reached one replica:
    ``times[client][clock]`` in ``time.monotonic()`` seconds (one clock for
    every process of the machine). Also the time of the last change of any
    kind (insert or delete): pycrdt calls the observer only for updates that
    change the document."""

    def __init__(self, doc: pycrdt.Doc) -> None:
        self.times: dict[int, list[float]] = {}
        self.last_change = 0.0
        self.hooks: list[Callable[[], None]] = []
        self._sub = doc.observe(self._on_change)

    def _on_change(self, event: Any) -> None:
        now = time.monotonic()
        self.last_change = now
        for client, clock in decode_state_vector(event.after_state).items():
            seen = self.times.setdefault(client, [])
            if clock > len(seen):
                seen.extend([now] * (clock - len(seen)))
        for hook in self.hooks:
            hook()

    def count(self, client: int) -> int:
        return len(self.times.get(client, ()))


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f}"


def cpu_seconds(pids: list[int]) -> float:
    """User and system CPU time the processes have used so far."""
    ticks = 0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        ticks += int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


class MachineLoad:
    """How busy all the machine's cores were between start and stop (other
    programs included), and how much CPU some processes used meanwhile."""

    def __init__(self, pids: list[int]) -> None:
        self.pids = pids
        self.busy = self.used = self.seconds = 0.0

    @staticmethod
    def _stat() -> tuple[float, float]:
        ticks = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        idle = ticks[3] + ticks[4]
        return sum(ticks) - idle, float(sum(ticks))

    def __enter__(self) -> MachineLoad:
        self._t0, self._cpu0, self._stat0 = time.monotonic(), cpu_seconds(self.pids), self._stat()
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.monotonic() - self._t0
        self.used = cpu_seconds(self.pids) - self._cpu0
        busy, total = self._stat()
        self.busy = (busy - self._stat0[0]) / max(1.0, total - self._stat0[1])

    def describe(self, who: str) -> str:
        return (
            f"{who} used {self.used / self.seconds:.0%} of a core; the machine's {os.cpu_count()} cores were "
            f"{self.busy:.0%} busy (other programs included)"
        )
