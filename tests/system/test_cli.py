"""The ``meshpad`` command as a person types it: every mistake gets one clear
line on stderr and exit code 2, and creates nothing on disk; ``meshpad
invite`` prints what another machine can dial; keys can stay out of ``ps``."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from processes import Peer, free_port
from waiting import wait_for_blocking

from server import addresses

pytestmark = pytest.mark.slow
MESHPAD = [sys.executable, "-m", "server"]


def meshpad(
    *args: str, env: dict[str, str] | None = None, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("MESHPAD_")}
    clean.update(env or {})
    return subprocess.run(
        [*MESHPAD, *args], capture_output=True, text=True, env=clean, input=stdin, timeout=60
    )  # fmt: skip


def refused(proc: subprocess.CompletedProcess[str], *words: str) -> str:
    """Exit code 2, one line on stderr (no traceback) that says *words*."""
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    assert len(lines) == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    for word in words:
        assert word in lines[0], lines[0]
    return lines[0]


@pytest.fixture
def taken_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        yield s.getsockname()[1]


def test_a_taken_port_creates_nothing(tmp_path, taken_port):
    fresh = tmp_path / "fresh"
    refused(meshpad("serve", "--port", str(taken_port), "--data-dir", str(fresh)), "in use", str(taken_port))
    assert not fresh.exists()
    empty = tmp_path / "empty"
    empty.mkdir()
    refused(meshpad("serve", "--port", str(taken_port), "--data-dir", str(empty)), "in use")
    assert list(empty.iterdir()) == []


@pytest.mark.parametrize("port", ["99999", "65536", "-1", "abc", "7400.5", ""])
def test_a_bad_port_is_refused(tmp_path, port):
    data = tmp_path / "data"
    refused(meshpad("serve", "--port", port, "--data-dir", str(data)), "--port", "1 to 65535")
    assert not data.exists()


def test_port_zero_takes_a_free_port_and_the_invite_names_it(tmp_path):
    data = tmp_path / "a"
    proc = subprocess.Popen(
        [*MESHPAD, "serve", "--port", "0", "--data-dir", str(data)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env={k: v for k, v in os.environ.items() if not k.startswith("MESHPAD_")},
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        assert first.startswith("Meshpad peer: open http://127.0.0.1:"), first
        port = int(first.split("127.0.0.1:", 1)[1].split("/", 1)[0])
        assert port > 0
        address, _ = addresses.parse_invite(invite(data).stdout.strip())
        assert address == f"127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def test_a_bad_environment_variable_is_named_and_does_not_block_help(tmp_path):
    data = tmp_path / "data"
    env = {"MESHPAD_PORT": "abc", "MESHPAD_DATA_DIR": str(data)}
    for args in (["--help"], ["serve", "--help"], ["invite", "--help"]):
        proc = meshpad(*args, env=env)
        assert proc.returncode == 0 and "usage" in proc.stdout, proc.stderr
    refused(meshpad("serve", env=env), "MESHPAD_PORT", "'abc'")
    refused(meshpad("serve", env={"MESHPAD_JOIN": "ok.example:7400,hello world", "MESHPAD_DATA_DIR": str(data)}),
            "MESHPAD_JOIN", "hello world")  # fmt: skip
    refused(meshpad("serve", env={"MESHPAD_HOST": "not a host", "MESHPAD_DATA_DIR": str(data)}), "MESHPAD_HOST")
    assert not data.exists()


@pytest.mark.parametrize(
    "join", ["hello world", "meshpad://1.2.3.4:7400", "meshpad://nowhere#short", "1.2.3.4:99999", "http://", ":7400"]
)
def test_a_bad_join_is_refused(tmp_path, join):
    data = tmp_path / "data"
    refused(meshpad("serve", "--join", join, "--data-dir", str(data)), "--join")
    assert not data.exists()


def test_invite_with_a_missing_data_dir_creates_nothing(tmp_path):
    missing = tmp_path / "missing"
    refused(meshpad("invite", "--data-dir", str(missing)), str(missing))
    assert not missing.exists()


@pytest.mark.parametrize("address", ["garbage", "1.2.3.4", "host:0", "a b:7400", "[::1:7400", "::1:7400"])
def test_invite_refuses_a_bad_address(tmp_path, address):
    data = tmp_path / "data"
    data.mkdir()
    refused(meshpad("invite", "--data-dir", str(data), "--address", address), "--address")
    assert list(data.iterdir()) == []


def test_unreadable_key_files_are_refused(tmp_path):
    data = tmp_path / "data"
    refused(meshpad("serve", "--network-key-file", str(tmp_path / "nope"), "--data-dir", str(data)),
            "--network-key-file")  # fmt: skip
    short = tmp_path / "short"
    short.write_text("tiny\n")
    refused(meshpad("serve", "--network-key-file", str(short), "--data-dir", str(data)), "16 characters")
    refused(meshpad("serve", "--join-file", "-", "--data-dir", str(data), stdin="not an invite\n"), "--join-file")
    assert not data.exists()


def test_one_peer_per_data_dir(tmp_path):
    a = Peer(tmp_path / "a").start()
    try:
        before = sorted(p.name for p in a.data_dir.iterdir())
        refused(meshpad("serve", "--port", str(free_port()), "--data-dir", str(a.data_dir)), "another peer")
        assert sorted(p.name for p in a.data_dir.iterdir()) == before
    finally:
        a.stop()


# -- invite ----------------------------------------------------------------------


def invite(data_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    proc = meshpad("invite", "--data-dir", str(data_dir), *args)
    assert proc.returncode == 0, proc.stderr
    return proc


def test_invite_names_the_running_peers_port_and_warns_about_loopback(tmp_path):
    port = free_port()
    a = Peer(tmp_path / "a", port=port, env={"MESHPAD_NETWORK_KEY": ""}).start()
    try:
        proc = invite(a.data_dir)
        address, key = addresses.parse_invite(proc.stdout.strip())
        assert address == f"127.0.0.1:{port}"
        assert key == (a.data_dir / "network-key").read_text().strip()
        assert "nobody else can join" in proc.stderr and "--host 0.0.0.0" in proc.stderr
        # The start-up output says the same.
        assert "Only this machine can reach this peer" in a.log()
        given = invite(a.data_dir, "--address", "192.0.2.9:7400")
        assert given.stdout.strip() == f"meshpad://192.0.2.9:7400#{key}"
        assert given.stderr == ""
    finally:
        a.stop()
    refused(meshpad("invite", "--data-dir", str(a.data_dir)), "no peer is running")


def test_invite_of_a_peer_on_every_interface_names_a_real_address(tmp_path):
    port = free_port()
    a = Peer(tmp_path / "a", port=port, bind="0.0.0.0", env={"MESHPAD_NETWORK_KEY": ""}).start()
    try:
        proc = invite(a.data_dir)
        address, _ = addresses.parse_invite(proc.stdout.strip())
        host = addresses.host_of(address)
        assert address.endswith(f":{port}")
        assert host not in ("0.0.0.0", "::") and not addresses.is_loopback_host(host)
        assert host in addresses.machine_addresses()
    finally:
        a.stop()


def test_keys_from_files_stay_out_of_the_process_list(tmp_path):
    a = Peer(tmp_path / "a", env={"MESHPAD_NETWORK_KEY": ""}).start()
    try:
        invite_text = invite(a.data_dir).stdout.strip()
        key = invite_text.split("#", 1)[1]
        join_file = tmp_path / "invite.txt"
        join_file.write_text(invite_text + "\n")
        b = Peer(tmp_path / "b", env={"MESHPAD_NETWORK_KEY": ""}, args=["--join-file", str(join_file)]).start()
        try:
            assert b.proc is not None
            cmdline = Path(f"/proc/{b.proc.pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
            assert key not in cmdline and "--join-file" in cmdline
            assert (b.data_dir / "network-key").read_text().strip() == key
            a.post("/api/docs", {"name": "via-file", "text": "joined from a file"})
            wait_for_blocking(
                lambda: any(d["name"] == "via-file" for d in b.get("/api/docs")), what="b to receive a's document"
            )
        finally:
            b.stop()
        key_file = tmp_path / "key.txt"
        key_file.write_text(key + "\n")
        c = Peer(tmp_path / "c", env={"MESHPAD_NETWORK_KEY": ""}, args=["--network-key-file", str(key_file)]).start()
        try:
            assert (c.data_dir / "network-key").read_text().strip() == key
        finally:
            c.stop()
    finally:
        a.stop()
