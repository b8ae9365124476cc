"""The authenticated, encrypted channel under every peer link, sans-IO.

Noise ``XXpsk0_25519_ChaChaPoly_BLAKE2s`` (the ``noiseprotocol`` library on
``cryptography``): both sides prove a static X25519 key, and the network key
is mixed in as a pre-shared key *before the first message*, so a party
without it cannot complete, or read anything from, a handshake; a peer's id
is the BLAKE2b-128 hash of its static public key, so it cannot be claimed by
another key. After the three handshake messages every frame is encrypted and
authenticated with a per-direction counter nonce: a frame that is altered,
dropped, reordered or replayed fails to decrypt, and the link is closed.

Frames on the wire:

* first frame (initiator): ``"MSHP"``, varuint version, Noise message 1;
* second (responder), third (initiator): Noise messages 2 and 3;
* then transport frames: one or more Noise messages of at most 65,535 bytes
  (Noise's limit), each the encryption of a 1-byte flag (1 on the last chunk)
  followed by up to 65,518 bytes of the peer-protocol message, so a
  truncated frame is detected, not delivered shorter.

Keys are the one place where ``crdt`` does not take its randomness from the
caller: static and ephemeral keys come from the operating system's CSPRNG
(through ``cryptography``), as keys must. The simulator runs the replication
node without this layer, so its runs stay replayable from their seed.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence
from dataclasses import dataclass

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from noise.connection import Keypair, NoiseConnection  # type: ignore[import-untyped]

from crdt.errors import LocalProtocolError, RemoteProtocolError
from crdt.lib0 import Reader, encode_varuint

PROTOCOL = b"Noise_XXpsk0_25519_ChaChaPoly_BLAKE2s"
MAGIC = b"MSHP"
VERSION = 1
PROLOGUE = MAGIC + bytes([VERSION])
NOISE_MAX = 65535
TAG = 16
CHUNK = NOISE_MAX - TAG - 1  # plaintext bytes per Noise message
KEY_BYTES = 32


EPHEMERAL = 32  # the dialler's ephemeral public key, first in Noise message 1
MESSAGE_1 = EPHEMERAL + TAG  # Noise message 1 with an empty payload
HINT = 8  # bytes of the key hint after message 1


def key_hint(psk: bytes, ephemeral: bytes) -> bytes:
    """Which key a dialler holds, for a responder that holds it too: a MAC of
    the link's fresh ephemeral key under the pre-shared key (random to
    anyone without the key). It spares a responder of many spaces a Noise
    trial per key; the handshake authenticates the key all the same."""
    return hashlib.blake2s(ephemeral, key=psk, digest_size=HINT, person=b"mshphint").digest()


def peer_id_of(public_key: bytes) -> bytes:
    """A peer's id: BLAKE2b-128 of its static public key."""
    return hashlib.blake2b(public_key, digest_size=16, person=b"meshpad-peer-id").digest()


def network_key_from_text(text: str) -> bytes:
    """The 32-byte pre-shared key for a network key as people type it."""
    cleaned = text.strip()
    if len(cleaned) < 16:
        raise ValueError("a network key has at least 16 characters")
    return hashlib.blake2b(cleaned.encode(), digest_size=KEY_BYTES, person=b"meshpad-network").digest()


def public_key_of(private_key: bytes) -> bytes:
    key = X25519PrivateKey.from_private_bytes(private_key)
    return key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def new_private_key() -> bytes:
    return X25519PrivateKey.generate().private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )


class HandshakeRefused(RemoteProtocolError):
    """A handshake refused for a reason the shell counts: *kind* is one of
    ``wrong_key``, ``not_meshpad``, ``version`` (a bounded label set)."""

    def __init__(self, message: str, kind: str) -> None:
        super().__init__(message)
        self.kind = kind


@dataclass(frozen=True, slots=True)
class Identity:
    private_key: bytes
    network_key: bytes

    @property
    def public_key(self) -> bytes:
        return public_key_of(self.private_key)

    @property
    def peer_id(self) -> bytes:
        return peer_id_of(self.public_key)


class SecureChannel:
    """One side of one link. Feed it every frame with :meth:`receive`; send
    what it returns. :attr:`remote_id` is set once :attr:`established`."""

    def __init__(self, identity: Identity, initiator: bool, keys: Sequence[bytes] = ()) -> None:
        """A responder given *keys* accepts a dialler that holds any one of
        them (the spaces' keys): the first frame is tried with each, and
        :attr:`chosen` says which authenticated it. Nothing of the others is
        sent or learnt."""
        self.initiator = initiator
        self.established = False
        self.remote_id: bytes | None = None
        self._identity = identity
        self._keys = list(keys) if keys and not initiator else [identity.network_key]
        self.chosen: int | None = None if len(self._keys) > 1 else 0
        # A responder of several keys builds its connection once it knows the key.
        self._noise: NoiseConnection = self._connection(self._keys[0]) if len(self._keys) == 1 else None
        self._step = 0  # handshake messages seen or sent

    def _connection(self, psk: bytes) -> NoiseConnection:
        noise = NoiseConnection.from_name(PROTOCOL)
        noise.set_psks(psk)
        noise.set_prologue(PROLOGUE)
        noise.set_keypair_from_private_bytes(Keypair.STATIC, self._identity.private_key)
        if self.initiator:
            noise.set_as_initiator()
        else:
            noise.set_as_responder()
        noise.start_handshake()
        return noise

    def start(self) -> list[bytes]:
        """The initiator's first frame (nothing for the responder)."""
        if not self.initiator:
            return []
        self._step = 1
        message = bytes(self._noise.write_message(b""))
        hint = key_hint(self._keys[0], message[:EPHEMERAL])
        return [PROLOGUE[:4] + encode_varuint(VERSION) + message + hint]

    def receive(self, frame: bytes) -> tuple[list[bytes], bytes | None]:
        """Returns (frames to send, decrypted peer-protocol message or None).
        Raises RemoteProtocolError for anything that does not authenticate."""
        if self.established:
            return [], self.decrypt(frame)
        try:
            return self._handshake(frame), None
        except RemoteProtocolError:
            raise
        except Exception as exc:  # noiseprotocol raises its own and cryptography's errors
            raise HandshakeRefused(f"handshake failed: {type(exc).__name__} (wrong network key?)", "wrong_key") from exc

    def _handshake(self, frame: bytes) -> list[bytes]:
        noise = self._noise
        if not self.initiator and self._step == 0:
            r = Reader(frame)
            if r.read_bytes(len(MAGIC)) != MAGIC:
                raise HandshakeRefused("not a Meshpad peer", "not_meshpad")
            version = r.read_varuint()
            if version != VERSION:
                message = f"unsupported protocol version {version} (this peer speaks {VERSION})"
                raise HandshakeRefused(message, "version")
            body = frame[r.pos :]
            if len(body) == MESSAGE_1 + HINT:
                body, hint = body[:MESSAGE_1], body[MESSAGE_1:]
                keys = [i for i, k in enumerate(self._keys) if hmac.compare_digest(key_hint(k, body[:EPHEMERAL]), hint)]
            else:
                keys = list(range(len(self._keys)))  # no hint: every key is tried
            if len(self._keys) == 1 and keys == [0]:
                noise.read_message(body)
            else:
                noise = self._noise = self._first_that_reads(body, keys)
            self._step = 2
            return [bytes(noise.write_message(b""))]
        if self.initiator and self._step == 1:
            state = noise.noise_protocol.handshake_state
            noise.read_message(frame)
            remote = state.rs.public_bytes
            out = bytes(noise.write_message(b""))
            self._established(remote)
            return [out]
        if not self.initiator and self._step == 2:
            state = noise.noise_protocol.handshake_state
            noise.read_message(frame)
            self._established(state.rs.public_bytes)
            return []
        raise RemoteProtocolError("unexpected handshake message")

    def _first_that_reads(self, body: bytes, indexes: list[int]) -> NoiseConnection:
        """The connection whose key authenticates message 1 (psk0 binds the
        key into it, so only the right one does), of the keys *indexes*
        names (those the hint matches)."""
        failure: Exception = ValueError("no key of this peer matches")
        for index in indexes:
            psk = self._keys[index]
            noise = self._connection(psk)
            try:
                noise.read_message(body)
            except Exception as exc:  # noiseprotocol raises its own and cryptography's errors
                failure = exc
                continue
            self.chosen = index
            return noise
        raise failure

    def _established(self, remote_public: bytes) -> None:
        if not self._noise.handshake_finished:
            raise RemoteProtocolError("handshake did not finish")
        self.remote_id = peer_id_of(bytes(remote_public))
        self.established = True

    def encrypt(self, message: bytes) -> bytes:
        if not self.established:
            raise LocalProtocolError("channel not established")
        out = bytearray()
        for start in range(0, max(len(message), 1), CHUNK):
            last = start + CHUNK >= len(message)
            out += self._noise.encrypt(bytes([1 if last else 0]) + message[start : start + CHUNK])
        return bytes(out)

    def decrypt(self, frame: bytes) -> bytes:
        out = bytearray()
        pos = 0
        while True:
            chunk = frame[pos : pos + NOISE_MAX]
            if len(chunk) <= TAG:
                raise RemoteProtocolError("truncated frame")
            pos += len(chunk)
            try:
                plain = bytes(self._noise.decrypt(chunk))
            except Exception as exc:
                raise RemoteProtocolError("frame does not authenticate (altered, replayed or out of order)") from exc
            if not plain or plain[0] > 1:
                raise RemoteProtocolError("bad chunk flag")
            out += plain[1:]
            if plain[0] == 1:
                if pos != len(frame):
                    raise RemoteProtocolError("bytes after the last chunk")
                return bytes(out)
            if pos >= len(frame):
                raise RemoteProtocolError("frame ends before its last chunk")
