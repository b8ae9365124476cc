"""docs/operations.md and the systemd units it ships (docs/meshpad.service,
docs/meshpad-backup.service, docs/meshpad-backup.timer): each unit is in the
document as it is in its file, has the keys a service needs, runs commands
that `meshpad` accepts, and passes `systemd-analyze verify` where that tool
exists (with the unit's program pointed at the installed `meshpad`)."""

from __future__ import annotations

import configparser
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from server.cli import _parser

DOCS = Path(__file__).resolve().parents[2] / "docs"
UNITS = ("meshpad.service", "meshpad-backup.service", "meshpad-backup.timer")
PROGRAM = "/opt/meshpad/bin/meshpad"  # where the units expect the installed command


def unit(name: str) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None, comment_prefixes=("#", ";"))
    parser.optionxform = str  # type: ignore[assignment,method-assign]  # systemd keys are case-sensitive
    parser.read_string((DOCS / name).read_text(), source=name)
    return parser


def meshpad_args(command_line: str) -> list[str]:
    """The arguments after the program in an ExecStart (also inside ``sh -c '...'``)."""
    words = shlex.split(command_line)
    if words[0] == "/bin/sh":
        words = shlex.split(words[2].removeprefix("exec "))
    assert words[0] == PROGRAM, words
    return [w.replace("$(date +%%F)", "2026-01-01") for w in words[1:]]


@pytest.mark.parametrize("name", UNITS)
def test_every_unit_is_in_the_document_as_in_its_file(name):
    text = (DOCS / name).read_text().rstrip()
    assert f"```ini\n{text}\n```" in (DOCS / "operations.md").read_text()


def test_the_service_runs_meshpad_serve_unprivileged_restarted_and_confined():
    service = unit("meshpad.service")
    s = service["Service"]
    assert s["User"] and s["User"] != "root"
    assert s["Restart"] == "on-failure"
    assert s["NoNewPrivileges"] == "yes" and s["ProtectSystem"] == "strict"
    assert s["RestartPreventExitStatus"] == "2"  # a mistake in the settings is not retried
    args = _parser().parse_args(meshpad_args(s["ExecStart"]))
    assert args.command == "serve" and args.host == "0.0.0.0"
    assert str(args.data_dir) in s["ReadWritePaths"].split()
    assert str(args.data_dir) == f"/var/lib/{s['StateDirectory']}"
    assert service["Install"]["WantedBy"] == "multi-user.target"
    assert "network-online.target" in service["Unit"]["After"]


def test_the_backup_exports_the_services_data_dir_where_it_may_write():
    service = unit("meshpad.service")["Service"]
    backup = unit("meshpad-backup.service")["Service"]
    args = _parser().parse_args(meshpad_args(backup["ExecStart"]))
    data_dir = _parser().parse_args(meshpad_args(service["ExecStart"])).data_dir
    assert args.command == "export" and args.data_dir == data_dir and not args.force
    assert str(args.directory).startswith(backup["ReadWritePaths"] + "/")
    assert backup["User"] == service["User"] and backup["Type"] == "oneshot"
    timer = unit("meshpad-backup.timer")
    assert timer["Timer"]["OnCalendar"] and timer["Install"]["WantedBy"] == "timers.target"


def test_the_units_pass_systemd_analyze_verify(tmp_path):
    """Needs systemd-analyze (systemd's package); the content checks above run everywhere."""
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed: the units' content is checked by the other tests")
    program = shutil.which("meshpad") or str(Path(sys.executable).with_name("meshpad"))
    assert Path(program).exists(), program
    paths = []
    for name in UNITS:
        path = tmp_path / name
        path.write_text((DOCS / name).read_text().replace(PROGRAM, program))
        paths.append(str(path))
    proc = subprocess.run([analyze, "verify", *paths], capture_output=True, text=True, timeout=60)
    complaints = [line for line in (proc.stdout + proc.stderr).splitlines() if any(n in line for n in UNITS)]
    assert proc.returncode == 0 and not complaints, proc.stdout + proc.stderr


def test_verify_would_catch_a_bad_unit(tmp_path):
    """The check above can fail: a wrong value is reported."""
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed")
    program = shutil.which("meshpad") or str(Path(sys.executable).with_name("meshpad"))
    bad = tmp_path / "meshpad.service"
    text = (DOCS / "meshpad.service").read_text().replace(PROGRAM, program)
    bad.write_text(text.replace("Restart=on-failure", "Restart=sometimes"))
    proc = subprocess.run([analyze, "verify", str(bad)], capture_output=True, text=True, timeout=60)
    assert "meshpad.service" in proc.stdout + proc.stderr
