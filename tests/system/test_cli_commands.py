"""The commands that ask a running peer, as a person and a script use them:
``meshpad --version``, ``docs``, ``status``, ``export``, ``import``. Real
``meshpad serve`` processes; the commands find them through the data dir."""

from __future__ import annotations

import fcntl
import json
import os
import pty
import struct
import subprocess
import sys
import termios
import threading
from importlib.metadata import version

import pytest
from processes import Peer
from waiting import wait_for_blocking

pytestmark = pytest.mark.slow
MESHPAD = [sys.executable, "-m", "server"]
TEXTS = {
    "plain": "# Plain\n\nsome text\n",
    "unicode-text": "Zürich, 東京, emoji 🎉, right-to-left שלום\n",
    "crlf.and.dots": "windows\r\nline endings\r\n",
    "no-final-newline": "ends here",
    "empty": "",
}


def meshpad(*args: str, env: dict[str, str] | None = None, **kwargs) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("MESHPAD_")}
    clean.update(env or {})
    return subprocess.run([*MESHPAD, *args], capture_output=True, text=True, env=clean, timeout=120, **kwargs)


def ok(proc: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    assert proc.returncode == 0, (proc.returncode, proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr
    return proc


def texts(peer: Peer) -> dict[str, str]:
    return {d["name"]: peer.get(f"/api/docs/{d['name']}")["text"] for d in peer.get("/api/docs")}


def test_version_and_help():
    proc = ok(meshpad("--version"))
    assert proc.stdout.strip() == f"meshpad {version('meshpad')}"
    helped = ok(meshpad("--help")).stdout
    for command in ("serve", "invite", "docs", "status", "export", "import"):
        assert f"    {command}" in helped, helped
    for code in ("0  done", "1  failed", "2  usage", "3  no peer is running"):
        assert code in helped
    for command in ("docs", "status", "export", "import"):
        assert "--json" in ok(meshpad(command, "--help")).stdout


@pytest.mark.parametrize("command", [["docs"], ["status"], ["export", "out"], ["import", "."]])
def test_a_peer_that_is_not_running_is_named_with_exit_code_3(tmp_path, command):
    stopped = tmp_path / "stopped"
    stopped.mkdir()
    for data in (stopped, tmp_path / "missing"):
        proc = meshpad(*command, "--data-dir", str(data), cwd=tmp_path)
        assert proc.returncode == 3, (proc.returncode, proc.stderr)
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and str(data) in lines[0] and "meshpad serve" in lines[0], proc.stderr
        assert proc.stdout == ""
    assert list(stopped.iterdir()) == [] and not (tmp_path / "out").exists()
    # The data dir from the environment, as for `meshpad serve`.
    proc = meshpad(*command, env={"MESHPAD_DATA_DIR": str(stopped)}, cwd=tmp_path)
    assert proc.returncode == 3 and str(stopped) in proc.stderr


def test_export_then_import_into_a_fresh_peer_gives_the_same_documents(tmp_path):
    a = Peer(tmp_path / "a").start()
    b = Peer(tmp_path / "b").start()  # same key, never joined: a separate store
    try:
        for name, text in TEXTS.items():
            a.post("/api/docs", {"name": name, "text": text})
        listed = json.loads(ok(meshpad("docs", "--json", "--data-dir", str(a.data_dir))).stdout)
        assert listed == a.get("/api/docs")
        human = ok(meshpad("docs", "--data-dir", str(a.data_dir))).stdout
        assert all(name in human for name in TEXTS)

        out = tmp_path / "backup" / "nested"
        exported = json.loads(ok(meshpad("export", str(out), "--json", "--data-dir", str(a.data_dir))).stdout)
        assert sorted(e["name"] for e in exported["exported"]) == sorted(TEXTS)
        assert sorted(p.name for p in out.iterdir()) == sorted(f"{n}.md" for n in TEXTS)
        for name, text in TEXTS.items():
            assert (out / f"{name}.md").read_bytes() == text.encode("utf-8")  # readable without Meshpad, exactly

        # Nothing is overwritten without --force, and nothing at all is written then.
        (out / "plain.md").write_text("changed by hand")
        again = meshpad("export", str(out), "--data-dir", str(a.data_dir))
        assert again.returncode == 1 and "already holds" in again.stderr and "--force" in again.stderr
        assert (out / "plain.md").read_text() == "changed by hand"
        ok(meshpad("export", str(out), "--force", "--data-dir", str(a.data_dir)))
        assert (out / "plain.md").read_text() == TEXTS["plain"]

        imported = json.loads(ok(meshpad("import", str(out), "--json", "--data-dir", str(b.data_dir))).stdout)
        assert sorted(i["name"] for i in imported["imported"]) == sorted(TEXTS)
        assert imported["skipped"] == [] and imported["failed"] == []
        assert texts(b) == texts(a) == TEXTS

        # Again: every name exists, each is skipped with a message, nothing changes.
        (out / "plain.md").write_text("not imported over the document")
        second = ok(meshpad("import", str(out), "--json", "--data-dir", str(b.data_dir)))
        result = json.loads(second.stdout)
        assert result["imported"] == [] and len(result["skipped"]) == len(TEXTS)
        assert "skipped: a document named plain exists" in second.stderr
        assert texts(b) == TEXTS
    finally:
        a.stop()
        b.stop()


def test_import_names_files_as_the_documents_page_does_and_reports_failures(tmp_path):
    peer = Peer(tmp_path / "p").start()
    files = tmp_path / "files"
    files.mkdir()
    (files / "Café – notes (draft).md").write_text("accents in the file name\n")
    (files / "東京.txt").write_text("a name of no ASCII letter\n")
    (files / "binary.md").write_bytes(b"\xff\xfe\x00not utf-8")
    (files / "Dup name.md").write_text("first of two files named Dup-name\n")
    (files / "Dup-name.md").write_text("second of them: skipped\n")
    (files / "ignored.png").write_bytes(b"\x89PNG")  # not a text file: a directory's .png is not taken
    named = tmp_path / "Second Draft.markdown"
    named.write_text("\ufeffa BOM is dropped, as the page's import does\n")
    try:
        proc = meshpad("import", str(files), str(named), "--json", "--data-dir", str(peer.data_dir))
        assert proc.returncode == 1, proc.stderr  # one file failed; the others are in
        result = json.loads(proc.stdout)
        assert sorted(i["name"] for i in result["imported"]) == [
            "Cafe-notes-draft", "Dup-name", "Second-Draft", "imported",
        ]  # fmt: skip
        assert [(s["file"], s["name"]) for s in result["skipped"]] == [(str(files / "Dup-name.md"), "Dup-name")]
        assert peer.get("/api/docs/Dup-name")["text"] == "first of two files named Dup-name\n"
        assert f"Dup-name.md: skipped: Dup-name is the name of {files / 'Dup name.md'} too" in proc.stderr
        assert [f["file"] for f in result["failed"]] == [str(files / "binary.md")]
        assert "binary.md: not imported: not UTF-8 text" in proc.stderr
        assert peer.get("/api/docs/Second-Draft")["text"] == "a BOM is dropped, as the page's import does\n"
        assert peer.get("/api/docs/Cafe-notes-draft")["text"] == "accents in the file name\n"
        missing = meshpad("import", str(tmp_path / "nope.md"), "--data-dir", str(peer.data_dir))
        assert missing.returncode == 2 and "nope.md" in missing.stderr
    finally:
        peer.stop()


def _stderr_on_a_terminal(args: list[str]) -> tuple[int, str]:
    """Run the command with its standard error on a pseudo-terminal; return
    its exit code and what it wrote there."""
    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))  # 100 columns, as a terminal has
    chunks: list[bytes] = []

    def drain() -> None:
        while True:
            try:
                data = os.read(leader, 4096)
            except OSError:  # the terminal closed with the process
                return
            if not data:
                return
            chunks.append(data)

    reader = threading.Thread(target=drain)
    reader.start()
    env = {k: v for k, v in os.environ.items() if not k.startswith("MESHPAD_")}
    proc = subprocess.run([*MESHPAD, *args], stdout=subprocess.PIPE, stderr=follower, env=env, timeout=120)
    os.close(follower)
    reader.join(timeout=30)
    os.close(leader)
    return proc.returncode, b"".join(chunks).decode(errors="replace")


def test_many_files_show_a_progress_bar_only_on_a_terminal(tmp_path):
    peer = Peer(tmp_path / "p").start()
    many = tmp_path / "many"
    many.mkdir()
    for i in range(120):
        (many / f"note-{i:03}.md").write_text(f"note {i}\n")
    try:
        piped = ok(meshpad("import", str(many), "--data-dir", str(peer.data_dir)))
        assert "\r" not in piped.stderr and "%|" not in piped.stderr and "it/s" not in piped.stderr
        assert piped.stderr.strip().splitlines() == ["meshpad: imported 120, skipped 0 (the name exists), failed 0"]
        assert len(peer.get("/api/docs")) == 120

        code, terminal = _stderr_on_a_terminal(["export", str(tmp_path / "out"), "--data-dir", str(peer.data_dir)])
        assert code == 0, terminal
        assert "exporting" in terminal and "%|" in terminal and "/120" in terminal, terminal
        assert len(list((tmp_path / "out").iterdir())) == 120
        code, terminal = _stderr_on_a_terminal(["import", str(many), "--data-dir", str(peer.data_dir)])
        assert code == 0 and "importing" in terminal and "/120" in terminal, terminal
    finally:
        peer.stop()


def test_status_shows_peers_documents_and_sync_state(tmp_path):
    a = Peer(tmp_path / "a").start()
    for name, text in TEXTS.items():
        a.post("/api/docs", {"name": name, "text": text})
    b = Peer(tmp_path / "b", args=["--join", a.address]).start()
    try:

        def synced() -> dict | None:
            status = json.loads(ok(meshpad("status", "--json", "--data-dir", str(a.data_dir))).stdout)
            connected = [p for p in status["peers"] if p["state"] == "connected"]
            return status if connected and connected[0]["in_sync_count"] == len(TEXTS) else None

        status = wait_for_blocking(synced, 60, what="a's status to show b connected and in sync")
        assert status["health"]["status"] == "ok" and status["api"] == a.url
        assert sorted(d["name"] for d in status["documents"]) == sorted(TEXTS)
        b_id = next(p["id"] for p in status["peers"] if p["state"] == "connected")
        human = ok(meshpad("status", "--data-dir", str(a.data_dir))).stdout
        assert f"documents: {len(TEXTS)}" in human and "peers: 1 connected of 1 known" in human
        assert b_id[:12] in human and f"{len(TEXTS)} documents in sync at the last check" in human
    finally:
        b.stop()
        a.stop()
    stopped = meshpad("status", "--json", "--data-dir", str(a.data_dir))
    assert stopped.returncode == 3 and stopped.stdout == ""


def test_commands_reach_a_peer_on_a_path_with_spaces(tmp_path):
    peer = Peer(tmp_path / "a dir with spaces" / "data").start()
    try:
        peer.post("/api/docs", {"name": "x", "text": "y"})
        listed = json.loads(ok(meshpad("docs", "--json", "--data-dir", str(peer.data_dir))).stdout)
        assert [d["name"] for d in listed] == ["x"]
    finally:
        peer.stop()
