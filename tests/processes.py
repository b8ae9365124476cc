"""Real ``meshpad serve`` processes for tests: start, wait for /healthz,
stop (gracefully or with SIGKILL)."""

from __future__ import annotations

import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import urllib.request
from pathlib import Path

from waiting import wait_for_blocking

# Peers started by the tests share this network key unless a test says otherwise.
TEST_NETWORK_KEY = "meshpad-test-network-key"
# For a peer serving HTTPS (--tls-cert): its certificate is the test's own, not checked.
UNVERIFIED = ssl._create_unverified_context()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def stop_process(proc: subprocess.Popen[bytes], timeout: float = 15.0) -> None:
    """SIGTERM, then SIGKILL if it has not exited within *timeout*."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


class Peer:
    def __init__(
        self,
        data_dir: Path,
        port: int | None = None,
        command: list[str] | None = None,
        args: list[str] | None = None,
        host: str = "127.0.0.1",
        env: dict[str, str] | None = None,
        bind: str | None = None,
    ) -> None:
        """*host* is where the test reaches the peer; *bind* (default: *host*)
        is its ``--host``."""
        self.env = dict(env or {})
        self.data_dir = data_dir
        self.args = list(args or [])
        self.host = host
        self.bind = bind or host
        self.port = port or free_port()
        self.command = command or [sys.executable, "-m", "server"]
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = data_dir.parent / f"peer-{self.port}.log"

    @property
    def scheme(self) -> str:
        return "https" if "--tls-cert" in self.args else "http"

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.host}:{self.port}"

    def _open(self, request: str | urllib.request.Request, timeout: float):
        return urllib.request.urlopen(request, timeout=timeout, context=UNVERIFIED if self.scheme == "https" else None)

    def start(self, timeout: float = 20.0) -> Peer:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab")  # noqa: SIM115 - the child keeps it
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        env.setdefault("MESHPAD_NETWORK_KEY", TEST_NETWORK_KEY)
        # A peer bound to 0.0.0.0 on this machine must not announce itself on
        # its real network, nor find the other tests' peers (LAN discovery is
        # tested inside network namespaces, tests/system/test_discovery_netns.py).
        env.setdefault("MESHPAD_DISCOVERY", "0")
        env.update(self.env)
        self.proc = subprocess.Popen(
            [
                *self.command,
                "serve",
                *("--host", self.bind, "--port", str(self.port), "--data-dir", str(self.data_dir)),
                *self.args,
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
        )
        log.close()
        wait_for_blocking(self._ready, timeout, what=lambda: f"the peer to answer /healthz:\n{self.log()}")
        return self

    def _ready(self) -> bool:
        """Whether /healthz answers; raises if the process has exited."""
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise AssertionError(f"peer exited with {self.proc.returncode}:\n{self.log()}")
        try:
            with self._open(self.url + "/healthz", timeout=1) as resp:
                return resp.status == 200
        except OSError:
            return False

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-4000:]
        except OSError:
            return ""

    def kill(self) -> None:
        """kill -9: no chance to flush anything."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)

    def interrupt(self) -> int:
        """Ctrl-C."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGINT)
        return self.proc.wait(timeout=20)

    def get(self, path: str):
        """GET a JSON answer from this peer's API."""
        with self._open(self.url + path, timeout=5) as resp:
            return json.loads(resp.read())

    def post(self, path: str, body: dict) -> int:
        """POST a JSON body to this peer's API; return the status."""
        req = urllib.request.Request(
            self.url + path, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
        )
        with self._open(req, timeout=5) as resp:
            return int(resp.status)

    def wait_durable(self, timeout: float = 10.0) -> None:
        """Until every write the peer has queued is committed (a change it
        only relayed may wait up to ``RELAYED_COMMIT_DELAY`` for that)."""
        wait_for_blocking(
            lambda: not self.get("/healthz")["store_backlog"], timeout, what="the store backlog committed"
        )

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def pause(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGCONT)

    def stop(self) -> None:
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.send_signal(signal.SIGCONT)  # a paused peer cannot handle SIGTERM
            stop_process(self.proc, timeout=10)
