"""The hint a peer announces on the local network (mDNS/DNS-SD), sans-IO.

A peer announces the service :data:`SERVICE_TYPE` with its port and a TXT
record that only members of its network can use:

* ``v``: :data:`VERSION`;
* ``id``: the peer id (hex);
* ``n``: a fresh random nonce (hex), new at every announcement;
* ``mac``: HMAC-SHA256, keyed with :func:`discovery_key` (HKDF of the network
  key with a label of its own: never the key itself), over
  ``LABEL ‖ version ‖ nonce ‖ peer id ‖ port``, every field of fixed length.

No network key, no document names. A listener recomputes the MAC with its own
network key: an announcement of another network (or a forged one) fails and
is ignored, so a peer of another network never even dials. An outsider can
only replay an announcement it saw (the port and id as they were) from an
address of its choice; a member then dials that address once per nonce, and
the Noise handshake there refuses anyone without the key. Announcements are
tracked by peer id and address, so a replay from elsewhere does not stop the
member's real address from being dialled.

:class:`Finder` decides what to do with each announcement heard: ignore it
(and why), or dial an address. Everything that comes from the network is
bounded here: TXT sizes, how many announcements are tracked, how often one
peer is dialled, how many dials per minute. Time and the nonce are passed in.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
from collections import OrderedDict, deque
from collections.abc import Collection, Mapping
from dataclasses import dataclass

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from crdt.errors import RemoteProtocolError

SERVICE_TYPE = "_meshpad._tcp.local."
VERSION = 1
HKDF_INFO = b"meshpad lan discovery v1"
LABEL = b"meshpad-lan-hint"
NONCE_BYTES = 16
PEER_ID_BYTES = 16
MAC_BYTES = 32
# A TXT record of a real announcement is about 160 bytes; anything much larger is not one.
MAX_TXT_BYTES = 512
MAX_TXT_KEYS = 8
MAX_ADDRESSES = 8  # addresses of one announcement considered

# What a Finder tracks and how often it acts on it.
MAX_TRACKED = 256  # announcers (peer id and address) remembered; the oldest goes first
REDIAL_AFTER = 30.0  # seconds before the same peer at the same address is dialled again from an announcement
DIALS_PER_MINUTE = 20  # dials started from announcements, all peers together


class HintError(RemoteProtocolError):
    """An announcement that is not a valid hint of this network."""


def discovery_key(network_key: bytes) -> bytes:
    """The MAC key of announcements, derived from the 32-byte network key."""
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=HKDF_INFO).derive(network_key)


def _mac(key: bytes, nonce: bytes, peer_id: bytes, port: int) -> bytes:
    message = LABEL + bytes([VERSION]) + nonce + peer_id + port.to_bytes(2, "big")
    return hmac.new(key, message, hashlib.sha256).digest()


def announcement(key: bytes, peer_id: bytes, port: int, nonce: bytes) -> dict[str, str]:
    """The TXT properties announcing *peer_id* on *port*, with *nonce*
    (:data:`NONCE_BYTES` random bytes). *key* is :func:`discovery_key`'s."""
    if len(nonce) != NONCE_BYTES or len(peer_id) != PEER_ID_BYTES or not 0 < port < 65536:
        raise ValueError("a nonce of 16 bytes, a peer id of 16 bytes and a port from 1 to 65535")
    return {"v": str(VERSION), "id": peer_id.hex(), "n": nonce.hex(), "mac": _mac(key, nonce, peer_id, port).hex()}


@dataclass(frozen=True, slots=True)
class Hint:
    peer_id: bytes
    nonce: bytes
    port: int


def _field(properties: Mapping[bytes, bytes | None], name: bytes, size: int) -> bytes:
    raw = properties.get(name)
    if raw is None or len(raw) != 2 * size:
        raise HintError(f"TXT {name.decode()!r} missing or not {2 * size} hex digits")
    try:
        return bytes.fromhex(raw.decode("ascii"))
    except (UnicodeDecodeError, ValueError):
        raise HintError(f"TXT {name.decode()!r} is not hex") from None


def verify(key: bytes, properties: Mapping[bytes, bytes | None], port: int, txt_bytes: int) -> Hint:
    """The hint in an announcement's TXT *properties* (*txt_bytes* long on
    the wire) for a service on *port*. Raises HintError: malformed, too
    large, another version, or a MAC that this network's key does not give
    (another network, or forged)."""
    if txt_bytes > MAX_TXT_BYTES or len(properties) > MAX_TXT_KEYS:
        raise HintError(f"TXT record too large ({txt_bytes} bytes, {len(properties)} keys)")
    if properties.get(b"v") != str(VERSION).encode():
        raise HintError(f"not version {VERSION} of the hint")
    if not 0 < port < 65536:
        raise HintError(f"port {port} out of range")
    peer_id = _field(properties, b"id", PEER_ID_BYTES)
    nonce = _field(properties, b"n", NONCE_BYTES)
    mac = _field(properties, b"mac", MAC_BYTES)
    if not hmac.compare_digest(mac, _mac(key, nonce, peer_id, port)):
        raise HintError("the MAC does not match this network's key (another network, or forged)")
    return Hint(peer_id, nonce, port)


def dial_address(addresses: Collection[str], port: int) -> str | None:
    """The ``HOST:PORT`` to dial for an announcement resolving to
    *addresses*: the first IPv4 address a LAN peer may have (not loopback,
    multicast, unspecified or reserved), else such a global or unique-local
    IPv6 address; None if there is none."""
    fallback: str | None = None
    for raw in list(addresses)[:MAX_ADDRESSES]:
        try:
            addr = ipaddress.ip_address(raw)
        except ValueError:
            continue
        if addr.is_loopback or addr.is_multicast or addr.is_unspecified or addr.is_reserved or addr.is_link_local:
            continue
        if addr.version == 4:
            return f"{addr}:{port}"
        if fallback is None:
            fallback = f"[{addr}]:{port}"
    return fallback


# Why an announcement was not dialled (the keys of Finder.ignored).
OWN = "own announcement"
OTHER_NETWORK = "not of this network"
MALFORMED = "malformed"
CONNECTED = "already connected"
REPLAYED = "nonce seen before"
RECENT = "dialled recently"
RATE = "too many dials"
NO_ADDRESS = "no usable address"


@dataclass(frozen=True, slots=True)
class Found:
    """A member of this network announced itself: dial *address*."""

    peer_id: bytes
    address: str


@dataclass(slots=True)
class _Tracked:
    nonces: deque[bytes]
    dialled_at: float | None = None


class Finder:
    """What a listener does with announcements: :meth:`heard` answers a
    :class:`Found` to dial, or the reason it ignores one (counted in
    :attr:`ignored`)."""

    def __init__(self, key: bytes, own_id: bytes) -> None:
        self._key = key
        self._own_id = own_id
        self._tracked: OrderedDict[tuple[bytes, str], _Tracked] = OrderedDict()
        self._dials: deque[float] = deque()
        self.ignored: dict[str, int] = {}
        self.found = 0
        self.last: Hint | None = None  # the last valid hint of another peer

    def _ignore(self, reason: str) -> str:
        self.ignored[reason] = self.ignored.get(reason, 0) + 1
        return reason

    def heard(
        self,
        properties: Mapping[bytes, bytes | None],
        txt_bytes: int,
        port: int,
        addresses: Collection[str],
        connected: Collection[bytes],
        now: float,
    ) -> Found | str:
        """One announcement heard (or heard again). *connected* are the
        peer ids this peer has links with."""
        try:
            hint = verify(self._key, properties, port, txt_bytes)
        except HintError as exc:
            return self._ignore(OTHER_NETWORK if "MAC" in str(exc) else MALFORMED)
        if hint.peer_id == self._own_id:
            return self._ignore(OWN)
        self.last = hint
        address = dial_address(addresses, hint.port)
        if address is None:
            return self._ignore(NO_ADDRESS)
        # Tracked by peer id *and* address: an outsider replaying a member's
        # announcement from its own address cannot keep the member's real
        # address from being dialled.
        where = (hint.peer_id, address)
        tracked = self._tracked.get(where)
        if tracked is None:
            tracked = self._tracked[where] = _Tracked(deque(maxlen=4))
            while len(self._tracked) > MAX_TRACKED:
                self._tracked.popitem(last=False)
        self._tracked.move_to_end(where)
        if hint.nonce in tracked.nonces:
            return self._ignore(REPLAYED)
        tracked.nonces.append(hint.nonce)
        if hint.peer_id in connected:
            return self._ignore(CONNECTED)
        if tracked.dialled_at is not None and now - tracked.dialled_at < REDIAL_AFTER:
            return self._ignore(RECENT)
        while self._dials and now - self._dials[0] >= 60.0:
            self._dials.popleft()
        if len(self._dials) >= DIALS_PER_MINUTE:
            return self._ignore(RATE)
        self._dials.append(now)
        tracked.dialled_at = now
        self.found += 1
        return Found(hint.peer_id, address)
