"""What a peer keeps about itself and its network in the data dir:
``peer-id`` (a stable random id, 16 bytes in hex) and ``peers.json`` (the
addresses it knew, so a restart needs no ``--join``). Files are replaced
atomically (write, fsync, rename)."""

from __future__ import annotations

import json
import logging
import os
import secrets
from pathlib import Path

from crdt.errors import StoreError

log = logging.getLogger(__name__)
PEER_ID_FILE = "peer-id"
PEERS_FILE = "peers.json"


def write_atomically(path: Path, data: bytes, mode: int = 0o644) -> None:
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def load_peer_id(data_dir: Path) -> bytes:
    path = data_dir / PEER_ID_FILE
    try:
        text = path.read_text().strip()
    except FileNotFoundError:
        data_dir.mkdir(parents=True, exist_ok=True)
        peer_id = secrets.token_bytes(16)
        write_atomically(path, peer_id.hex().encode() + b"\n")
        return peer_id
    try:
        peer_id = bytes.fromhex(text)
    except ValueError:
        peer_id = b""
    if len(peer_id) != 16:
        raise StoreError(f"{path}: not a peer id (32 hex digits expected)")
    return peer_id


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
