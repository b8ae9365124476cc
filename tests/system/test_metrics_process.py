"""``meshpad serve --metrics-address``: real processes. Two linked peers
scraped on their separate metrics listeners while an edit crosses; the main
port still guards its own /metrics; an address that cannot be bound is
refused with one line."""

from __future__ import annotations

import socket
import subprocess
import sys
import urllib.request

import pytest
from processes import Peer, free_port, stop_process
from prometheus_client.parser import text_string_to_metric_families
from waiting import wait_for_blocking

pytestmark = pytest.mark.slow


def scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def total(samples: dict, name: str, **labels: str) -> float:
    return sum(v for (n, ls), v in samples.items() if n == name and set(labels.items()) <= set(ls))


def test_two_peers_scraped_on_their_metrics_addresses(tmp_path):
    ports = free_port(), free_port()
    a = Peer(tmp_path / "a", args=["--metrics-address", f"127.0.0.1:{ports[0]}"]).start()
    try:
        b = Peer(
            tmp_path / "b", args=["--metrics-address", f"127.0.0.1:{ports[1]}", "--join", f"127.0.0.1:{a.port}"]
        ).start()
        try:
            assert f"Metrics: http://127.0.0.1:{ports[0]}/metrics" in a.log()
            for port in ports:
                wait_for_blocking(
                    lambda p=port: total(scrape(p), "meshpad_peers", state="connected") == 1, what="the link"
                )
            before = scrape(ports[1])
            assert a.post("/api/docs", {"name": "crossing", "text": "over the link"}) == 201
            wait_for_blocking(
                lambda: total(scrape(ports[1]), "meshpad_updates_applied_total", origin="peer") >= 1,
                what="B applying A's change",
            )
            after = scrape(ports[1])
            assert total(after, "meshpad_peer_bytes_total", direction="in") > total(
                before, "meshpad_peer_bytes_total", direction="in"
            )
            # A relayed change commits late (within 0.5 s, docs/durability.md): wait for B's commit.
            wait_for_blocking(
                lambda: total(scrape(ports[1]), "meshpad_store_commit_seconds_count") >= 1, what="B's store commit"
            )
            assert total(scrape(ports[0]), "meshpad_updates_applied_total", origin="local") >= 1
            # The main port serves it too (from this machine, no token needed there).
            with urllib.request.urlopen(f"{a.url}/metrics", timeout=5) as resp:
                assert resp.status == 200
        finally:
            stop_process(b.proc)
    finally:
        stop_process(a.proc)


def test_a_metrics_address_in_use_is_refused(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = subprocess.run(
            [sys.executable, "-m", "server", "serve", "--port", "0", "--data-dir", str(tmp_path / "d"),
             "--metrics-address", f"127.0.0.1:{port}"],
            capture_output=True, text=True, timeout=60,
            env={"MESHPAD_DISCOVERY": "0", "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
        )  # fmt: skip
    assert proc.returncode == 1, proc.stderr
    assert f"--metrics-address 127.0.0.1:{port}: cannot listen there" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_bad_metrics_address_is_a_setting_error(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "server", "serve", "--data-dir", str(tmp_path / "d"), "--metrics-address", "nowhere"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    assert "--metrics-address" in proc.stderr and "HOST:PORT" in proc.stderr
