"""The package as a user gets it: a wheel installed (not editable) into a
fresh virtual environment serves the editor page and its bundle."""

from __future__ import annotations

import re
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
from processes import Peer

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]


def run(*cmd: str | Path, cwd: Path | None = None) -> str:
    proc = subprocess.run([str(c) for c in cmd], cwd=cwd, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, f"{cmd} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc.stdout


def test_wheel_in_fresh_venv_serves_editor(tmp_path):
    wheels = tmp_path / "wheels"
    run(sys.executable, "-m", "pip", "wheel", "--no-deps", "-w", wheels, ROOT)
    (wheel,) = wheels.glob("meshpad-*.whl")
    venv = tmp_path / "venv"
    run(sys.executable, "-m", "venv", venv)
    run(venv / "bin" / "pip", "install", "--quiet", wheel)
    # Run from an unrelated directory so nothing can come from the checkout.
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    where = run(venv / "bin" / "python", "-c", "import server; print(server.__file__)", cwd=elsewhere)
    assert str(venv) in where
    peer = Peer(tmp_path / "data", command=[str(venv / "bin" / "meshpad")]).start()
    try:
        req = urllib.request.Request(
            peer.url + "/api/docs", data=b'{"name": "installed"}', headers={"Content-Type": "application/json"}
        )
        urllib.request.urlopen(req).close()
        page = urllib.request.urlopen(peer.url + "/doc/installed").read().decode()
        assert 'id="editor"' in page
        assets = re.findall(r"(/static/[0-9a-f]{16}/[\w./-]+)", page)
        assert any("meshpad-vendor-1.3.0.js" in a for a in assets)
        assert any("meshpad-extras-1.3.0.js" in a for a in assets)
        for asset in assets:
            body = urllib.request.urlopen(peer.url + asset).read()
            assert len(body) > 1000
            assert body == (ROOT / "static" / asset.split("/", 3)[3]).read_bytes()
    finally:
        peer.stop()
