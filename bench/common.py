"""What the benchmark programs share: the table row, JSON helpers, waiting,
made-up text."""

from __future__ import annotations

import gzip
import json
import os
import random
import string
import struct
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT))

from processes import Peer  # noqa: E402
from yclient import varuint  # noqa: E402

NODE_DIR = ROOT / "bench" / "node"
# The editing traces (CC BY 4.0) live next to the repository, in shared/traces;
# MESHPAD_TRACES points elsewhere.
TRACES = Path(os.environ.get("MESHPAD_TRACES") or ROOT.parent / "shared" / "traces")
TRACE = TRACES / "automerge-paper.json.gz"


@dataclass
class Row:
    name: str
    measured: str
    reference: str
    target: str
    met: bool | None  # None: not measured in this run

    def cells(self) -> list[str]:
        verdict = "—" if self.met is None else ("yes" if self.met else "**no**")
        return [self.name, self.measured, self.reference, self.target, verdict]


def table(rows: list[Row]) -> str:
    head = ["row", "measured", "reference (same run)", "target", "met"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(r.cells()) + " |" for r in rows]
    return "\n".join(lines)


def npm_install() -> None:
    if not (NODE_DIR / "node_modules" / "y-websocket").exists():
        subprocess.run(["npm", "ci", "--no-audit", "--no-fund"], cwd=NODE_DIR, check=True, capture_output=True)


def encode_trace(edits: int | None, workdir: Path) -> tuple[list[bytes], str]:
    """The automerge-paper trace as Yjs updates, one per edit."""
    if not TRACE.is_file():
        raise SystemExit(f"bench: no editing trace at {TRACE} (set MESHPAD_TRACES to the folder that holds it)")
    out = workdir / "trace.bin"
    args = ["node", "encode.mjs", str(TRACE), str(out)]
    if edits:
        args.append(str(edits))
    result = json.loads(subprocess.run(args, cwd=NODE_DIR, check=True, capture_output=True).stdout)
    raw = out.read_bytes()
    updates, pos = [], 0
    while pos < len(raw):
        (n,) = struct.unpack_from("<I", raw, pos)
        updates.append(raw[pos + 4 : pos + 4 + n])
        pos += 4 + n
    if not edits:
        with gzip.open(TRACE) as f:
            expected = json.loads(f.read())["endContent"]
        assert result["text"] == expected, "trace encoding does not reproduce the final text"
    return updates, result["text"]


def frame_update(update: bytes) -> bytes:
    return b"\x00\x02" + varuint(len(update)) + update


def get_json(url: str) -> object:
    with urllib.request.urlopen(url, timeout=10) as resp:
        return json.loads(resp.read())


def post_json(url: str, body: dict[str, object]) -> None:
    req = urllib.request.Request(url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    urllib.request.urlopen(req, timeout=10).close()


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def exists(peer: Peer, name: str) -> bool:
    try:
        get_json(f"{peer.url}/api/docs/{name}")
        return True
    except OSError:
        return False


def wait_sync(predicate: Callable[[], bool], timeout: float, poll: float = 0.05) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not reached")
        time.sleep(poll)


def not_measured(name: str, target: str, why: str) -> Row:
    return Row(name, f"not measured: {why}", "—", target, None)


def prose(rng: random.Random, size: int) -> str:
    """*size* characters of lines of made-up words, drawn from *rng*."""
    words = ["".join(rng.choices(string.ascii_lowercase, k=rng.randint(2, 9))) for _ in range(500)]
    out: list[str] = []
    length = 0
    while length < size:
        line = " ".join(rng.choices(words, k=rng.randint(6, 14))) + "\n"
        out.append(line)
        length += len(line)
    return "".join(out)[:size]
