"""What a peer keeps about itself and its network in the data dir, each file
written atomically (write, fsync, rename):

* ``identity-key`` (mode 0600): the peer's static X25519 private key; its id
  is derived from the public half, so it is stable across restarts;
* ``network-key`` (mode 0600): the network's shared secret; only peers that
  hold it can complete a handshake;
* ``peers.json``: the addresses it knew, so a restart needs no ``--join``;
* ``lock``: held (``flock``) by the peer that runs on this data dir, so that
  a second one refuses to start and ``meshpad invite`` knows one is running;
* ``serving.json``: where that running peer's API answers, for the commands
  that talk to it.

The data dir itself is created with mode 0700.
"""

from __future__ import annotations

import base64
import fcntl
import json
import logging
import os
import secrets
from pathlib import Path
from typing import Any

from crdt.errors import StoreError
from crdt.secure import Identity, network_key_from_text, new_private_key

log = logging.getLogger(__name__)
IDENTITY_FILE = "identity-key"
NETWORK_KEY_FILE = "network-key"
PEERS_FILE = "peers.json"
LOCK_FILE = "lock"
SERVING_FILE = "serving.json"


def write_atomically(path: Path, data: bytes, mode: int = 0o644) -> None:
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.chmod(tmp, mode)
    os.replace(tmp, path)


def make_data_dir(data_dir: Path) -> None:
    """Create the data dir (private to this user) if it does not exist."""
    data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)


def _private_key(data_dir: Path) -> bytes:
    path = data_dir / IDENTITY_FILE
    try:
        raw = base64.b64decode(path.read_text().strip(), validate=True)
    except FileNotFoundError:
        key = new_private_key()
        write_atomically(path, base64.b64encode(key) + b"\n", 0o600)
        return key
    except ValueError as exc:
        raise StoreError(f"{path}: not an identity key: {exc}") from exc
    if len(raw) != 32:
        raise StoreError(f"{path}: not an identity key (32 bytes expected)")
    return raw


def network_key_text(data_dir: Path, explicit: str | None = None, invited: str | None = None) -> str:
    """The network key this peer uses, creating the network on first start.

    *explicit* (``--network-key``) wins; an invite's key is adopted by a
    peer that has none yet and refused by one that belongs to another network.
    """
    make_data_dir(data_dir)
    path = data_dir / NETWORK_KEY_FILE
    try:
        stored: str | None = path.read_text().strip()
    except FileNotFoundError:
        stored = None
    chosen = explicit or stored or invited or base64.urlsafe_b64encode(secrets.token_bytes(32)).decode().rstrip("=")
    network_key_from_text(chosen)
    if invited and not explicit and stored and stored != invited:
        raise StoreError(f"{path}: this peer belongs to another network; use a new --data-dir to join with this invite")
    if stored is None:
        write_atomically(path, chosen.encode() + b"\n", 0o600)
    return chosen


def load_identity(data_dir: Path, network_key: str) -> Identity:
    """This peer's identity (created on first start) in the network of *network_key*."""
    make_data_dir(data_dir)
    return Identity(_private_key(data_dir), network_key_from_text(network_key))


def load_peers(data_dir: Path) -> list[tuple[str, str]]:
    path = data_dir / PEERS_FILE
    try:
        raw = json.loads(path.read_text())
        return [(str(p.get("id") or ""), str(p["address"])) for p in raw["peers"]]
    except FileNotFoundError:
        return []
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        log.warning("%s is unreadable (%s); starting with no remembered peers", path, exc)
        return []


def save_peers(data_dir: Path, peers: list[tuple[str, str]]) -> None:
    body = {"peers": [{"id": peer_id or None, "address": address} for peer_id, address in peers]}
    write_atomically(data_dir / PEERS_FILE, json.dumps(body, indent=1).encode())


def stored_network_key(data_dir: Path) -> str | None:
    """The network key kept in the data dir, without creating anything."""
    try:
        return (data_dir / NETWORK_KEY_FILE).read_text().strip() or None
    except FileNotFoundError:
        return None


class DataDirLock:
    """One running peer per data dir: held from start to exit (the kernel
    releases it when the process dies, even by kill -9)."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self._fd: int | None = None

    def acquire(self) -> None:
        """Raises StoreError if another peer holds the data dir."""
        make_data_dir(self.data_dir)
        fd = os.open(self.data_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 32).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise StoreError(f"another peer (pid {holder}) is running with the data dir {self.data_dir}") from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd

    def announce(self, serving: dict[str, Any]) -> None:
        """Say where this peer's API answers (read by :func:`running_peer`)."""
        write_atomically(self.data_dir / SERVING_FILE, json.dumps(serving).encode(), 0o600)

    def release(self) -> None:
        if self._fd is None:
            return
        (self.data_dir / SERVING_FILE).unlink(missing_ok=True)
        os.close(self._fd)
        self._fd = None


def running_peer(data_dir: Path) -> dict[str, Any] | None:
    """What the peer running on *data_dir* announced, or None when no peer
    runs there. Creates nothing."""
    try:
        fd = os.open(data_dir / LOCK_FILE, os.O_RDONLY)
    except FileNotFoundError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        pass  # held: a peer runs here
    else:
        return None
    finally:
        os.close(fd)
    try:
        serving = json.loads((data_dir / SERVING_FILE).read_text())
    except (OSError, ValueError):
        return None  # starting up, not announced yet
    return serving if isinstance(serving, dict) else None
