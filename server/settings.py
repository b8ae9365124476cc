"""Settings of a peer. One table drives the command line, the environment
variables and the README: each setting has a flag, a variable and a default."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path


def default_data_dir() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "meshpad"


@dataclass(frozen=True, slots=True)
class Option:
    name: str
    flag: str
    env: str
    help: str


OPTIONS: tuple[Option, ...] = (
    Option("host", "--host", "MESHPAD_HOST", "address to bind (default 127.0.0.1: only this machine can connect)"),
    Option("port", "--port", "MESHPAD_PORT", "TCP port for the editor, the API and the WebSockets (default 7400)"),
    Option(
        "data_dir", "--data-dir", "MESHPAD_DATA_DIR", "directory of the SQLite store (default $XDG_DATA_HOME/meshpad)"
    ),
    Option(
        "join",
        "--join",
        "MESHPAD_JOIN",
        "an invite (meshpad://HOST:PORT#KEY) or the HOST:PORT of a peer of this network; repeat for several "
        "(env: comma-separated)",
    ),
    Option(
        "network_key",
        "--network-key",
        "MESHPAD_NETWORK_KEY",
        "the network's shared key (default: the one in the data dir, created on first start)",
    ),
    Option(
        "advertise",
        "--advertise",
        "MESHPAD_ADVERTISE",
        "HOST:PORT other peers should dial to reach this one (default: --host:--port); "
        "'none' for a peer that only dials out",
    ),
)


@dataclass(frozen=True, slots=True)
class Settings:
    host: str = "127.0.0.1"
    port: int = 7400
    data_dir: Path = field(default_factory=default_data_dir)
    join: tuple[str, ...] = ()
    advertise: str | None = None
    network_key: str | None = None

    def listen_address(self) -> str:
        """What this peer tells others to dial ("" when it accepts no links)."""
        if self.advertise is not None:
            return "" if self.advertise.lower() == "none" else self.advertise
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ
        base = cls()
        return cls(
            host=env.get("MESHPAD_HOST", base.host),
            port=int(env.get("MESHPAD_PORT", base.port)),
            data_dir=Path(env["MESHPAD_DATA_DIR"]) if env.get("MESHPAD_DATA_DIR") else base.data_dir,
            join=tuple(a.strip() for a in env.get("MESHPAD_JOIN", "").split(",") if a.strip()),
            advertise=env.get("MESHPAD_ADVERTISE") or None,
            network_key=env.get("MESHPAD_NETWORK_KEY") or None,
        )
