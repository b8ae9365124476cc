"""Linux network namespaces for tests and benchmarks: hosts on a switch, and
``meshpad serve`` run inside a host.

A :class:`Network` owns every namespace it makes and deletes them in
:meth:`Network.remove`, which its user calls whatever happened, a failure
half-way through building included. Nothing is made outside those
namespaces: the switch namespace holds the bridges and the switch's ends of
the veth links, each host namespace its own end (``eth0``) and its address
inside the network's /24. Needs root and iproute2.
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from processes import TEST_NETWORK_KEY, stop_process

ROOT = Path(__file__).resolve().parents[1]
PORT = 7400  # every peer in a namespace serves on this port: each host has an address of its own
HOST_LINK = "eth0"  # a host's end of its veth link to the switch


class NetnsError(RuntimeError):
    """An ``ip`` command failed: the machine refused to build or change the network."""


def run(*args: str, check: bool = True, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run *args*; return what it printed. Raises NetnsError when it fails and *check*."""
    proc = subprocess.run(list(args), capture_output=True, text=True, timeout=60, env=env)
    if check and proc.returncode != 0:
        raise NetnsError(f"{' '.join(args)} failed: {proc.stderr.strip()}")
    return proc


def inside(ns: str) -> list[str]:
    """The command prefix that runs a program inside namespace *ns*."""
    return ["ip", "netns", "exec", ns]


def listed() -> str:
    """``ip netns list``, as printed: for checking that nothing was left behind."""
    return run("ip", "netns", "list").stdout


@dataclass
class Network:
    """Namespaces named after *prefix*: ``{prefix}sw`` for the switch and
    ``{prefix}h{i}`` for host *i*, at address ``{subnet}.{i}``."""

    prefix: str
    subnet: str
    made: list[str] = field(default_factory=list)

    @property
    def switch(self) -> str:
        return f"{self.prefix}sw"

    def host(self, i: int) -> str:
        return f"{self.prefix}h{i}"

    def address(self, i: int) -> str:
        return f"{self.subnet}.{i}"

    def _add_namespace(self, ns: str) -> None:
        run("ip", "netns", "add", ns)
        self.made.append(ns)  # recorded at once, so that a later failure still removes it

    def add_bridge(self, bridge: str) -> None:
        """A bridge on the switch (the switch namespace is made with the first)."""
        if self.switch not in self.made:
            self._add_namespace(self.switch)
        run("ip", "-n", self.switch, "link", "add", bridge, "type", "bridge")
        self.set_link(self.switch, bridge, up=True)

    def add_cable(self, a: str, b: str) -> None:
        """Bridges *a* and *b* joined by a veth pair whose ends are named
        ``{a}-{b}`` and ``{b}-{a}``: set the first down to pull the cable."""
        ends = [(f"{a}-{b}", a), (f"{b}-{a}", b)]
        run("ip", "-n", self.switch, "link", "add", ends[0][0], "type", "veth", "peer", "name", ends[1][0])
        for end, bridge in ends:
            run("ip", "-n", self.switch, "link", "set", end, "master", bridge)
            self.set_link(self.switch, end, up=True)

    def add_host(self, i: int, bridge: str) -> str:
        """Host *i*'s namespace, its ``eth0`` plugged into *bridge* (port ``s{i}``
        on the switch) and holding its address; returns the namespace."""
        ns = self.host(i)
        self._add_namespace(ns)
        port = f"s{i}"
        run("ip", "-n", self.switch, "link", "add", port, "type", "veth", "peer", "name", HOST_LINK, "netns", ns)
        run("ip", "-n", self.switch, "link", "set", port, "master", bridge)
        self.set_link(self.switch, port, up=True)
        run("ip", "-n", ns, "addr", "add", f"{self.address(i)}/24", "dev", HOST_LINK)
        self.set_link(ns, HOST_LINK, up=True)
        self.set_link(ns, "lo", up=True)
        return ns

    def set_link(self, ns: str, link: str, up: bool) -> None:
        """Set *link* in namespace *ns* up or down (down: its packets are dropped)."""
        run("ip", "-n", ns, "link", "set", link, "up" if up else "down")

    def remove(self) -> list[str]:
        """Delete every namespace made (their links go with them); return the
        names that would not go."""
        left = [ns for ns in reversed(self.made) if run("ip", "netns", "del", ns, check=False).returncode != 0]
        self.made = left
        return left


class NsPeer:
    """``meshpad serve`` inside namespace *ns*, reached at *ip* on :data:`PORT`;
    its output goes to *log*. :meth:`start` does not wait for it to answer."""

    def __init__(self, ns: str, ip: str, data: Path, log: Path) -> None:
        self.ns = ns
        self.ip = ip
        self.data = data
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        return f"{self.ip}:{PORT}"

    @property
    def url(self) -> str:
        return f"http://{self.address}"

    @property
    def token_file(self) -> Path:
        """The browser token the peer writes: its API refuses non-loopback callers without it."""
        return self.data / "browser-token"

    def start(
        self, *join: str, host: str | None = None, key: str | None = TEST_NETWORK_KEY, args: tuple[str, ...] = ()
    ) -> None:
        """Serve on *host* (default: this peer's address), joining through
        each of *join*, with the network *key* (None: the data dir's own, or
        the invite's) and the further serve *args*."""
        self.data.mkdir(parents=True, exist_ok=True)
        cmd = [*inside(self.ns), sys.executable, "-m", "server", "serve"]
        cmd += ["--host", host or self.ip, "--port", str(PORT), "--data-dir", str(self.data), *args]
        for address in join:
            cmd += ["--join", address]
        env = {k: v for k, v in os.environ.items() if k != "MESHPAD_NETWORK_KEY"}
        env["PYTHONUNBUFFERED"] = "1"
        if key is not None:
            env["MESHPAD_NETWORK_KEY"] = key
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT, env=env)

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc)
