"""Peers on separate hosts: Linux network namespaces joined through a bridge
by veth links (tests/netns.py; addresses exist only inside the namespaces
this test makes, and are removed with them). One host's link is cut with ``ip link set ...
down`` while both sides edit, then restored: every replica converges with
every insert and every delete.

Needs root and iproute2, which CI has (it runs as root)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from netns import HOST_LINK, Network, NsPeer, inside, listed, run
from processes import TEST_NETWORK_KEY

pytestmark = [pytest.mark.slow, pytest.mark.netns]
HERE = Path(__file__).resolve().parent.parent
PREFIX = f"mp{os.getpid() % 10000}"
SUBNET = "10.77.0"


class Host(NsPeer):
    def __init__(self, net: Network, index: int, tmp: Path) -> None:
        super().__init__(net.host(index), net.address(index), tmp / f"host{index}", tmp / f"host{index}.log")
        self.index = index
        self.veth = HOST_LINK

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return run(*inside(self.ns), *args, check=check, env=self.env())

    def env(self) -> dict[str, str]:
        """The browser token: the API refuses non-loopback callers without it."""
        try:
            token = self.token_file.read_text().strip()
        except FileNotFoundError:
            token = ""
        return dict(os.environ, MESHPAD_TOKEN=token)

    def start(
        self, *join: str, host: str | None = None, key: str | None = TEST_NETWORK_KEY, args: tuple[str, ...] = ()
    ) -> None:
        """Serve (see NsPeer.start), then wait until the peer answers."""
        super().start(*join, host=host, key=key, args=args)
        wait(lambda: self.client("peers", check=False).returncode == 0, f"host {self.index} ready")

    def client(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return self.run(sys.executable, str(HERE / "nsclient.py"), args[0], self.url, *args[1:], check=check)

    def text(self, name: str) -> str | None:
        proc = self.client("text", name, check=False)
        return proc.stdout if proc.returncode == 0 else None


def wait(predicate, what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


@pytest.fixture
def hosts(tmp_path):
    assert os.geteuid() == 0, "network namespaces need root (CI runs as root)"
    net = Network(PREFIX, SUBNET)
    made = [Host(net, i, tmp_path) for i in (1, 2, 3)]
    try:
        net.add_bridge("br0")
        for h in made:
            net.add_host(h.index, "br0")
        yield made
    finally:
        for h in made:
            h.stop()
        net.remove()
        leftover = listed()
        assert PREFIX not in leftover, f"namespaces left behind: {leftover}"


def converged(hosts: list[Host], name: str) -> str:
    texts: list[str | None] = []

    def same() -> bool:
        texts[:] = [h.text(name) for h in hosts]
        return None not in texts and len(set(texts)) == 1

    wait(same, f"{name} identical on every host", timeout=40)
    assert texts[0] is not None
    return texts[0]


def test_cut_link_edits_on_both_sides_converge(hosts):
    h1, h2, h3 = hosts
    h1.start()
    h2.start(f"{h1.ip}:7400")
    h3.start(f"{h1.ip}:7400")
    base = " ".join(f"w{i:02d}" for i in range(20))
    h1.client("create", "shared", base)
    assert converged(hosts, "shared") == base

    h3.run("ip", "link", "set", h3.veth, "down")
    h1.client("edit", "shared", "901", "insert", " <one-1>", "delete", "w03", "insert", " <one-2>", "delete", "w11")
    h3.client("edit", "shared", "903", "insert", " <three-1>", "delete", "w07", "delete", "w15", "insert", " <three-2>")
    assert h1.text("shared") != h3.text("shared")
    assert h2.text("shared") == h1.text("shared")

    h3.run("ip", "link", "set", h3.veth, "up")
    merged = converged(hosts, "shared")
    for token in ("<one-1>", "<one-2>", "<three-1>", "<three-2>", "w00", "w19"):
        assert token in merged
    for token in ("w03", "w11", "w07", "w15"):
        assert token not in merged


STATUS = """
import sys, urllib.request, urllib.error
class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *a, **k):
        return None
opener = urllib.request.build_opener(NoRedirect)
req = urllib.request.Request(sys.argv[1], headers=dict(h.split(": ", 1) for h in sys.argv[2:]))
try:
    resp = opener.open(req, timeout=5)
    print(resp.status, resp.headers.get("Set-Cookie", ""))
except urllib.error.HTTPError as err:
    print(err.code, err.headers.get("Set-Cookie", ""))
"""


def status(host: Host, url: str, *headers: str) -> tuple[int, str]:
    out = host.run(sys.executable, "-c", STATUS, url, *headers).stdout.split(" ", 1)
    return int(out[0]), out[1].strip() if len(out) > 1 else ""


def test_other_machines_need_the_browser_token(hosts):
    h1, h2, _ = hosts
    h1.start()
    # h1 serves on every interface of its host, as a peer others reach would.
    h1.stop()
    h1.start(host="0.0.0.0", args=("--advertise", f"{h1.ip}:7400"))
    token = h1.token_file.read_text().strip()
    url = h1.url
    # From another machine: refused without the token, on every browser route.
    for path in ("/", "/api/docs", "/doc/x", "/peers", "/healthz"):
        assert status(h2, url + path)[0] == 403, path
    assert status(h2, url + "/?token=wrong")[0] == 403
    # The printed URL sets the cookie, which then opens everything.
    code, cookie = status(h2, f"{url}/?token={token}")
    assert code == 303 and "meshpad_token=" in cookie and "HttpOnly" in cookie and "SameSite=Strict" in cookie
    assert status(h2, url + "/api/docs", f"Cookie: meshpad_token={token}")[0] == 200
    assert status(h2, url + "/api/docs", f"Authorization: Bearer {token}")[0] == 200
    # From the machine itself no token is needed.
    assert status(h1, "http://127.0.0.1:7400/api/docs")[0] == 200
    # The peer endpoint stays open to peers: h2's peer joins and replicates.
    h2.start(f"{h1.ip}:7400")
    h1.client("create", "pub", "ok")
    wait(lambda: h2.text("pub") == "ok", "h2 receives h1's document")


def test_two_machines_join_with_the_invite_as_printed(hosts):
    """The README's join section, on two hosts: the first peer listens on
    every interface, `meshpad invite` on it prints the invite, and the
    second joins with exactly that (on the command line, or from a file)."""
    h1, h2, h3 = hosts
    h1.start(host="0.0.0.0", key=None)
    printed = h1.run(sys.executable, "-m", "server", "invite", "--data-dir", str(h1.data))
    invite = printed.stdout.strip()
    key = (h1.data / "network-key").read_text().strip()
    assert invite == f"meshpad://{h1.ip}:7400#{key}", printed
    assert printed.stderr == ""  # reachable: nothing to warn about
    h1.client("create", "welcome", "joined by invite")
    h2.start(invite, host="0.0.0.0", key=None)
    invite_file = h3.data.parent / "invite.txt"
    invite_file.write_text(printed.stdout)
    h3.start(host="0.0.0.0", key=None, args=("--join-file", str(invite_file)))
    wait(lambda: h2.text("welcome") == "joined by invite", "h2 receives h1's document")
    wait(lambda: h3.text("welcome") == "joined by invite", "h3 receives h1's document")
    assert (h2.data / "network-key").read_text().strip() == key
    assert (h3.data / "network-key").read_text().strip() == key
    # h1 listens on every interface; its peers show it at the address they dial.
    rows = json.loads(h2.client("peers").stdout)
    assert f"{h1.ip}:7400" in {r["address"] for r in rows if r["state"] == "connected"}, rows
    assert not [r for r in rows if r["address"].startswith("0.0.0.0")], rows
    # h2's own invite names h2.
    h2_invite = h2.run(sys.executable, "-m", "server", "invite", "--data-dir", str(h2.data)).stdout.strip()
    assert h2_invite == f"meshpad://{h2.ip}:7400#{key}"
