"""What a peer keeps about itself and its network in the data dir, each file
written atomically (write, fsync, rename):

* ``identity-key`` (mode 0600): the peer's static X25519 private key; its id
  is derived from the public half, so it is stable across restarts;
* ``network-key`` (mode 0600): the network's shared secret; only peers that
  hold it can complete a handshake;
* ``peers.json``: the addresses it knew, so a restart needs no ``--join``.

An *invite* carries an address and the network key: ``meshpad://HOST:PORT#KEY``.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import secrets
from pathlib import Path

from crdt.errors import StoreError
from crdt.secure import Identity, network_key_from_text, new_private_key

log = logging.getLogger(__name__)
IDENTITY_FILE = "identity-key"
NETWORK_KEY_FILE = "network-key"
PEERS_FILE = "peers.json"
INVITE_PREFIX = "meshpad://"


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


def parse_invite(text: str) -> tuple[str, str]:
    """``meshpad://HOST:PORT#KEY`` -> (address, network key). Raises ValueError."""
    if not text.startswith(INVITE_PREFIX) or "#" not in text:
        raise ValueError("an invite looks like meshpad://HOST:PORT#KEY")
    address, key = text[len(INVITE_PREFIX) :].split("#", 1)
    network_key_from_text(key)  # validates
    return address.rstrip("/"), key


def make_invite(address: str, key: str) -> str:
    return f"{INVITE_PREFIX}{address}#{key}"


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


def load_identity(data_dir: Path, explicit: str | None = None, invited: str | None = None) -> Identity:
    data_dir.mkdir(parents=True, exist_ok=True)
    key = network_key_text(data_dir, explicit, invited)
    return Identity(_private_key(data_dir), network_key_from_text(key))


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
