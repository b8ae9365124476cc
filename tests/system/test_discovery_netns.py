"""Finding peers on the local network, with real ``meshpad serve`` processes
in three Linux network namespaces joined by a bridge (tests/netns.py; the
addresses exist only inside the namespaces this test makes, and go with
them). Multicast is on on every link and routed out of it, as on a LAN.

* Two peers of network X, started with no ``--join`` and empty data dirs,
  find each other through mDNS, connect, and mark each other as found on the
  LAN; a peer of network Y hears both announcements and ignores them (it
  never dials), and they ignore its own.
* An outsider replays a member's announcement pointing at another address
  (where a peer of Y listens) and announces garbage: the member's real
  address is still dialled, the replayed one fails the Noise handshake, the
  garbage is counted as malformed.
* A peer with discovery turned off opens no mDNS socket and is never heard.

Needs root and iproute2, which CI has (it runs as root)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from netns import HOST_LINK, Network, NsPeer, inside, listed, run
from waiting import wait_for_blocking

pytestmark = [pytest.mark.slow, pytest.mark.netns]
PREFIX = f"md{os.getpid() % 10000}"
SUBNET = "10.78.0"
KEY_X = "discovery-test-network-x"
KEY_Y = "discovery-test-network-y"

GET = """
import json, sys, urllib.request
req = urllib.request.Request(sys.argv[1], headers={"Authorization": "Bearer " + sys.argv[2]})
with urllib.request.urlopen(req, timeout=5) as resp:
    print(resp.read().decode())
"""


class Host(NsPeer):
    def __init__(self, net: Network, index: int, tmp: Path) -> None:
        super().__init__(net.host(index), net.address(index), tmp / f"host{index}", tmp / f"host{index}.log")
        self.index = index

    def get(self, path: str) -> object:
        """GET *path* of this peer's API from inside its namespace, or None if it does not answer."""
        try:
            token = self.token_file.read_text().strip()
        except FileNotFoundError:
            return None
        proc = run(*inside(self.ns), sys.executable, "-c", GET, self.url + path, token, check=False)
        return json.loads(proc.stdout) if proc.returncode == 0 else None

    def start_and_wait(self, key: str, *args: str) -> None:
        self.start(key=key, args=args)
        wait_for_blocking(lambda: self.get("/api/discovery"), what=f"host {self.index} to answer")

    @property
    def discovery(self) -> dict:
        found = self.get("/api/discovery")
        assert isinstance(found, dict), found
        return found

    @property
    def peers(self) -> list[dict]:
        found = self.get("/api/peers")
        assert isinstance(found, list), found
        return found

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")


@pytest.fixture
def lan(tmp_path):
    assert os.geteuid() == 0, "network namespaces need root (CI runs as root)"
    net = Network(PREFIX, SUBNET)
    hosts = [Host(net, i, tmp_path) for i in (1, 2, 3)]
    try:
        net.add_bridge("br0")
        run("ip", "-n", net.switch, "link", "set", "br0", "multicast", "on")
        for h in hosts:
            net.add_host(h.index, "br0")
            run("ip", "-n", h.ns, "link", "set", HOST_LINK, "multicast", "on")
            run("ip", "-n", h.ns, "route", "add", "224.0.0.0/4", "dev", HOST_LINK)
            assert "MULTICAST" in run("ip", "-n", h.ns, "link", "show", HOST_LINK).stdout
        yield hosts
    finally:
        for h in hosts:
            h.stop()
        net.remove()
        leftover = listed()
        assert PREFIX not in leftover, f"namespaces left behind: {leftover}"


def connected_ids(host: Host, found: str | None = "lan") -> set[str]:
    return {r["id"] for r in host.peers if r["state"] == "connected" and (found is None or r.get("found") == found)}


def test_members_find_each_other_and_another_network_ignores_them(lan):
    x1, x2, y = lan
    x1.start_and_wait(KEY_X)
    y.start_and_wait(KEY_Y)
    x2.start_and_wait(KEY_X)
    ids = {h.index: h.discovery["peer_id"] for h in lan}
    for h in lan:
        assert h.discovery["state"] == "on" and h.discovery["interfaces"] == [h.ip], h.discovery
        assert f"find this one through mDNS ({h.ip}); --no-discovery turns it off" in h.log_text()

    def both_found() -> bool:
        return ids[2] in connected_ids(x1) and ids[1] in connected_ids(x2)

    wait_for_blocking(both_found, timeout=40, what=lambda: f"X's peers to find each other: {x1.peers} {x2.peers}")
    rows = {r["id"]: r for r in x2.peers}
    assert rows[ids[1]]["address"] == x1.address and rows[ids[1]]["found"] == "lan"

    # Y hears both of X's announcements and ignores them: it dials nobody.
    def y_ignored_both() -> dict:
        d = y.discovery
        return d if d["ignored"].get("not of this network", 0) >= 2 else {}

    seen = wait_for_blocking(y_ignored_both, timeout=40, what=lambda: f"Y to hear X's announcements: {y.discovery}")
    assert seen["dialled"] == 0 and seen["others_heard"] == 2, seen
    assert "ignored a LAN announcement from" in y.log_text() and "not of this network" in y.log_text()
    # X heard Y's and ignored it too.
    for x in (x1, x2):
        wait_for_blocking(
            lambda x=x: x.discovery["ignored"].get("not of this network", 0) >= 1,
            what=lambda x=x: f"host {x.index} to hear Y's announcement: {x.discovery}",
        )
    # Nobody of one network knows anything of the other: no row, no dial, no refusal.
    assert y.peers == []
    for x in (x1, x2):
        assert ids[3] not in {r["id"] for r in x.peers}
        assert y.address not in {r["address"] for r in x.peers}
    assert "handshake" not in y.log_text()
    # The Peers page marks the peer found on the LAN.
    html = run(*inside(x1.ns), sys.executable, "-c", GET, x1.url + "/peers/table", x1.token_file.read_text().strip())
    assert 'class="state found-lan"' in html.stdout and "Finding peers on the local network: on" in html.stdout


def test_a_peer_with_discovery_off_announces_nothing(lan):
    x1, x2, y = lan
    x1.start_and_wait(KEY_X, "--no-discovery")
    assert x1.discovery["state"] == "off" and "--no-discovery" in x1.discovery["reason"]
    assert "Finding peers on the local network: off (--no-discovery" in x1.log_text()
    y.start_and_wait(KEY_Y)
    x2.start_and_wait(KEY_X)
    # mDNS works on this LAN: x2 hears Y's announcement (started after x1's would have been).
    wait_for_blocking(
        lambda: x2.discovery["ignored"].get("not of this network", 0) >= 1,
        timeout=40,
        what=lambda: f"x2 to hear Y's announcement: {x2.discovery}",
    )
    wait_for_blocking(
        lambda: y.discovery["ignored"].get("not of this network", 0) >= 1,
        timeout=40,
        what=lambda: f"Y to hear x2's announcement: {y.discovery}",
    )
    # ...but never x1's: it opened no mDNS socket, and nobody dialled it or was dialled by it.
    sockets = run(*inside(x1.ns), "ss", "-uan").stdout
    assert ":5353" not in sockets, sockets
    assert x2.discovery["others_heard"] == 1 and y.discovery["others_heard"] == 1
    assert x2.discovery["dialled"] == 0 and y.discovery["dialled"] == 0
    assert x2.peers == [] and x1.peers == []


# Run in the outsider's namespace: find the announcement of the peer id
# argv[2], announce it again from this host (argv[1]) under another name, and
# announce garbage; print "ready", then hold them until stdin closes.
OUTSIDER = """
import sys, time
from zeroconf import ServiceBrowser, ServiceInfo, Zeroconf
ip, wanted = sys.argv[1], sys.argv[2]
kind = "_meshpad._tcp.local."
zc = Zeroconf(interfaces=[ip])
names = set()
ServiceBrowser(zc, kind, handlers=[lambda zeroconf, service_type, name, state_change: names.add(name)])
deadline, seen = time.monotonic() + 30, None
while seen is None and time.monotonic() < deadline:
    for name in list(names):
        info = zc.get_service_info(kind, name, timeout=1000)
        if info is not None and info.properties.get(b"id") == wanted.encode():
            seen = info
    time.sleep(0.1)
assert seen is not None, "no announcement of " + wanted
zc.register_service(ServiceInfo(kind, "replay." + kind, port=seen.port, properties=seen.properties,
                                server="replay.local.", parsed_addresses=[ip]))
junk = {f"k{i}": "x" * 60 for i in range(12)}
zc.register_service(ServiceInfo(kind, "junk." + kind, port=7400, properties=junk, server="junk.local.",
                                parsed_addresses=[ip]))
print("ready", flush=True)
sys.stdin.read()
zc.close()
"""


def test_a_replayed_announcement_only_leads_to_a_refused_handshake(lan):
    x1, x2, y = lan
    x1.start_and_wait(KEY_X)
    y.start_and_wait(KEY_Y)
    x1_id = x1.discovery["peer_id"]
    outsider = subprocess.Popen(
        [*inside(y.ns), sys.executable, "-c", OUTSIDER, y.ip, x1_id],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert outsider.stdout is not None and outsider.stdout.readline().strip() == "ready"
        x2.start_and_wait(KEY_X)
        wait_for_blocking(lambda: x1_id in connected_ids(x2), timeout=40, what=lambda: f"x2 to find x1: {x2.peers}")

        def refused() -> dict:
            rows = [r for r in x2.peers if r["address"] == y.address]
            return rows[0] if rows and "wrong network key" in (rows[0]["error"] or "") else {}

        row = wait_for_blocking(refused, timeout=40, what=lambda: f"x2's dial of the replay refused: {x2.peers}")
        assert row["state"] != "connected" and row["id"] is None
        wait_for_blocking(
            lambda: x2.discovery["ignored"].get("malformed", 0) >= 1,
            what=lambda: f"x2 to refuse the junk announcement: {x2.discovery}",
        )
        assert y.peers == []  # the replay's target learnt nothing of X and holds no link
        assert "handshake refused" in y.log_text()
    finally:
        try:
            outsider.communicate(input="", timeout=15)
        except subprocess.TimeoutExpired:
            outsider.kill()
            outsider.wait()
