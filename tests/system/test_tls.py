"""HTTPS with --tls-cert / --tls-key, with real ``meshpad serve`` processes
and a self-signed certificate made here: pages, API and WebSockets over TLS,
HSTS, the Secure cookie (from another address, in a network namespace this
test makes), plain HTTP refused, peers of both kinds replicating, the
command's checks of the files, and the start-up warning of plain HTTP on a
network address."""

from __future__ import annotations

import asyncio
import datetime
import http.client
import ipaddress
import json
import os
import subprocess
import sys
from pathlib import Path

import aiohttp
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from processes import UNVERIFIED, Peer, free_port, stop_process
from waiting import wait_for_blocking

from server import addresses

pytestmark = pytest.mark.slow
MESHPAD = [sys.executable, "-m", "server"]
ROOT = Path(__file__).resolve().parents[2]
QUIET = {"MESHPAD_DISCOVERY": "off"}  # no mDNS from the test machine's interfaces


def make_certificate(
    directory: Path, name: str = "cert", ips: tuple[str, ...] = ("127.0.0.1",), days: float = 90
) -> tuple[Path, Path]:
    """A self-signed certificate for *ips* and localhost, valid for *days*
    more days (negative: expired), and its key."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "meshpad test")])
    now = datetime.datetime.now(datetime.UTC)
    names = [x509.DNSName("localhost"), *(x509.IPAddress(ipaddress.ip_address(ip)) for ip in ips)]
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=max(1, -days + 1)))
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / f"{name}.pem", directory / f"{name}-key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    key_path.chmod(0o600)
    return cert_path, key_path


def meshpad(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("MESHPAD_")}
    clean.update(env or {})
    return subprocess.run([*MESHPAD, *args], capture_output=True, text=True, env=clean, timeout=60)


def refused(proc: subprocess.CompletedProcess[str], *words: str) -> None:
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    for word in words:
        assert word in lines[0], lines[0]


def https_get(port: int, path: str, host: str = "127.0.0.1") -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPSConnection("127.0.0.1", port, timeout=10, context=UNVERIFIED)
    try:
        conn.request("GET", path, headers={"Host": f"{host}:{port}"})
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


def text_of(peer: Peer, name: str) -> str | None:
    if not any(d["name"] == name for d in peer.get("/api/docs")):
        return None
    return peer.get(f"/api/docs/{name}")["text"]


async def first_ws_frame(url: str) -> bytes:
    async with aiohttp.ClientSession() as session, session.ws_connect(url, ssl=UNVERIFIED) as ws:
        msg = await ws.receive(timeout=10)
        assert msg.type == aiohttp.WSMsgType.BINARY, msg
        return bytes(msg.data)


@pytest.fixture
def certificate(tmp_path) -> tuple[Path, Path]:
    return make_certificate(tmp_path)


def test_bad_certificate_files_are_refused_before_anything_is_made(tmp_path, certificate):
    cert, key = certificate
    other_cert, other_key = make_certificate(tmp_path, "other")
    data = tmp_path / "data"
    serve = ["serve", "--port", str(free_port()), "--data-dir", str(data)]
    refused(meshpad(*serve, "--tls-cert", str(cert)), "--tls-cert needs --tls-key")
    refused(meshpad(*serve, "--tls-key", str(key)), "--tls-key needs --tls-cert")
    refused(meshpad(*serve, "--tls-cert", str(tmp_path / "nope.pem"), "--tls-key", str(key)), "nope.pem", "cannot read")
    refused(meshpad(*serve, "--tls-cert", str(cert), "--tls-key", str(other_key)), "do not match")
    refused(meshpad(*serve, "--tls-cert", str(other_cert), "--tls-key", str(key)), "do not match")
    refused(meshpad(*serve, "--tls-cert", str(key), "--tls-key", str(key)), "not a PEM certificate")
    refused(meshpad(*serve, "--tls-cert", str(cert), "--tls-key", str(cert)), "not an unencrypted PEM private key")
    refused(meshpad(*serve, env={"MESHPAD_TLS_CERT": str(cert), "MESHPAD_TLS_KEY": str(tmp_path / "gone")}), "gone")
    locked = tmp_path / "locked-key.pem"
    key_object = serialization.load_pem_private_key(key.read_bytes(), password=None)
    locked.write_bytes(
        key_object.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"secret passphrase"),
        )
    )
    refused(meshpad(*serve, "--tls-cert", str(cert), "--tls-key", str(locked)), "passphrase")
    assert not data.exists()


def test_a_certificate_that_expires_soon_or_has_expired_is_named_at_start(tmp_path):
    for days, words in ((3, "expires on"), (-1, "expired on")):
        cert, key = make_certificate(tmp_path, f"cert{days}", days=days)
        peer = Peer(tmp_path / f"p{days}", args=["--tls-cert", str(cert), "--tls-key", str(key)], env=QUIET).start()
        try:
            assert f"warning: the certificate {cert} {words}" in peer.log() and "renew it" in peer.log()
        finally:
            peer.stop()
    cert, key = make_certificate(tmp_path, "fresh", days=60)
    peer = Peer(tmp_path / "fresh", args=["--tls-cert", str(cert), "--tls-key", str(key)], env=QUIET).start()
    try:
        assert "warning: the certificate" not in peer.log()
    finally:
        peer.stop()


def test_https_peer_serves_everything_and_replicates_with_plain_and_tls_peers(tmp_path, certificate):
    cert, key = certificate
    tls_args = ["--tls-cert", str(cert), "--tls-key", str(key)]
    a = Peer(tmp_path / "a", args=tls_args, env=QUIET).start()
    b: Peer | None = None
    c: Peer | None = None
    try:
        assert f"open https://127.0.0.1:{a.port}/" in a.log()
        a.post("/api/docs", {"name": "over-tls", "text": "served over HTTPS: é ✓"})
        status, headers, body = https_get(a.port, "/")
        assert status == 200 and b"over-tls" in body
        assert headers["strict-transport-security"].startswith("max-age=")
        assert "content-security-policy" in headers
        status, headers, body = https_get(a.port, "/doc/over-tls")
        assert status == 200 and "strict-transport-security" in headers
        # HSTS holds for every port of a host name: not sent for localhost (browsers ignore it for an IP).
        status, headers, _ = https_get(a.port, "/", host="localhost")
        assert status == 200 and "strict-transport-security" not in headers

        # The editor's WebSocket is wss:// (its first frame: the y-websocket sync step 1).
        first = asyncio.run(first_ws_frame(f"wss://127.0.0.1:{a.port}/ws/over-tls"))
        assert first[:2] == b"\x00\x00", first

        # Plain HTTP to the same port gets nothing.
        with pytest.raises((OSError, http.client.HTTPException)):
            conn = http.client.HTTPConnection("127.0.0.1", a.port, timeout=10)
            conn.request("GET", "/api/docs")
            conn.getresponse().read()

        # The local commands reach it (pinning its certificate), and its invite works as it is.
        env = {"MESHPAD_DATA_DIR": str(a.data_dir)}
        listed = meshpad("docs", "--json", env=env)
        assert listed.returncode == 0, listed.stderr
        assert [d["name"] for d in json.loads(listed.stdout)] == ["over-tls"]
        invite = meshpad("invite", env=env)
        assert invite.returncode == 0, invite.stderr
        assert addresses.parse_invite(invite.stdout.strip())[0] == a.address
        join_file = tmp_path / "invite.txt"
        join_file.write_text(invite.stdout)

        # A plain peer joins it with the invite: it learns to dial a over TLS.
        b = Peer(tmp_path / "b", args=["--join-file", str(join_file)], env=QUIET).start()
        wait_for_blocking(lambda: text_of(b, "over-tls") == "served over HTTPS: é ✓", 60,
                          what=lambda: f"b to get a's document:\n{b.log()}")  # fmt: skip
        b.post("/api/docs", {"name": "from-plain", "text": "made on the plain peer"})
        wait_for_blocking(lambda: any(d["name"] == "from-plain" for d in a.get("/api/docs")), 60,
                          what=lambda: f"a to get b's document:\n{a.log()}")  # fmt: skip

        # A second TLS peer joins through the plain one, and reaches a by gossip.
        c = Peer(tmp_path / "c", args=[*tls_args, "--join", b.address], env=QUIET).start()
        wait_for_blocking(lambda: {d["name"] for d in c.get("/api/docs")} == {"over-tls", "from-plain"}, 60,
                          what=lambda: f"c to get both documents:\n{c.log()}")  # fmt: skip
        wait_for_blocking(
            lambda: sum(p["state"] == "connected" for p in c.get("/api/peers")) == 2, 60,
            what=lambda: f"c to be linked with a (TLS to TLS) and b: {c.get('/api/peers')}\n{c.log()}",
        )  # fmt: skip
        assert "Traceback" not in a.log() + b.log() + c.log()
    finally:
        for peer in (c, b, a):
            if peer is not None:
                peer.stop()


def test_plain_http_on_a_network_address_says_the_traffic_is_unencrypted(tmp_path, certificate):
    cert, key = certificate
    plain = Peer(tmp_path / "plain", bind="0.0.0.0", env=QUIET).start()
    try:
        out = plain.log()
        assert "WARNING: plain HTTP on a network address" in out
        assert "UNENCRYPTED" in out and "--tls-cert" in out and "ssh -L 7400:127.0.0.1:7400" in out
    finally:
        plain.stop()
    secure = Peer(tmp_path / "secure", bind="0.0.0.0", args=["--tls-cert", str(cert), "--tls-key", str(key)],
                  env=QUIET).start()  # fmt: skip
    try:
        out = secure.log()
        assert "UNENCRYPTED" not in out and "opens https://" in out
    finally:
        secure.stop()
    local = Peer(tmp_path / "local", env=QUIET).start()
    try:
        assert "UNENCRYPTED" not in local.log()
    finally:
        local.stop()


# -- from another address: the cookie -------------------------------------------------

NS = f"mptls{os.getpid() % 10000}"
NS_IP = "10.78.0.1"


def _ip(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30, check=True)


COOKIE_CLIENT = f"""
import http.client, ssl, sys
scheme, port, token = sys.argv[1:4]
if scheme == "https":
    conn = http.client.HTTPSConnection("{NS_IP}", int(port), timeout=10, context=ssl._create_unverified_context())
else:
    conn = http.client.HTTPConnection("{NS_IP}", int(port), timeout=10)
conn.request("GET", "/?token=" + token)
resp = conn.getresponse()
print(resp.status, resp.getheader("Set-Cookie"), resp.getheader("Strict-Transport-Security"), sep="\\n")
"""


@pytest.mark.netns
def test_the_token_cookie_is_secure_over_https(tmp_path):
    """A namespace of this test's own with one address besides loopback (on
    a veth pair inside it): a request to that address comes from a
    non-loopback address, so the peer asks for the token and sets its cookie."""
    cert, key = make_certificate(tmp_path, ips=(NS_IP,))
    _ip("netns", "add", NS)
    procs: list[subprocess.Popen[bytes]] = []
    try:
        _ip("-n", NS, "link", "set", "lo", "up")
        _ip("-n", NS, "link", "add", "v0", "type", "veth", "peer", "name", "v1")
        _ip("-n", NS, "addr", "add", f"{NS_IP}/24", "dev", "v0")
        for link in ("v0", "v1"):
            _ip("-n", NS, "link", "set", link, "up")
        env = {k: v for k, v in os.environ.items() if not k.startswith("MESHPAD_")}
        env.update(QUIET, MESHPAD_NETWORK_KEY="meshpad-test-network-key", PYTHONUNBUFFERED="1")
        results = {}
        for scheme, port, extra in (("https", 7443, ["--tls-cert", str(cert), "--tls-key", str(key)]),
                                    ("http", 7480, [])):  # fmt: skip
            data = tmp_path / scheme
            log = open(tmp_path / f"{scheme}.log", "wb")  # noqa: SIM115 - the child keeps it
            procs.append(subprocess.Popen(
                ["ip", "netns", "exec", NS, *MESHPAD, "serve", "--host", "0.0.0.0", "--port", str(port),
                 "--data-dir", str(data), *extra], stdout=log, stderr=subprocess.STDOUT, env=env, cwd=ROOT,
            ))  # fmt: skip
            log.close()
            wait_for_blocking(lambda data=data: (data / "serving.json").exists(), 30, what=f"the {scheme} peer")
            token = (data / "browser-token").read_text().strip()

            def ask(scheme=scheme, port=port, token=token) -> list[str] | None:
                proc = subprocess.run(
                    ["ip", "netns", "exec", NS, sys.executable, "-c", COOKIE_CLIENT, scheme, str(port), token],
                    capture_output=True, text=True, timeout=30,
                )  # fmt: skip
                return proc.stdout.splitlines() if proc.returncode == 0 else None

            results[scheme] = wait_for_blocking(ask, 30, what=f"the {scheme} peer to answer at {NS_IP}")
        status, cookie, hsts = results["https"]
        assert status == "303", results
        attributes = [part.strip().lower() for part in cookie.split(";")]
        assert "secure" in attributes and "httponly" in attributes and "samesite=strict" in attributes, cookie
        assert hsts.startswith("max-age="), hsts
        status, cookie, hsts = results["http"]
        assert status == "303" and "secure" not in [p.strip().lower() for p in cookie.split(";")], cookie
        assert hsts == "None"
    finally:
        for proc in procs:
            stop_process(proc)
        subprocess.run(["ip", "netns", "del", NS], capture_output=True, timeout=30)
    assert NS not in subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
