"""The Noise channel under every peer link, sans-IO: right key connects; wrong
key, no key, a replayed handshake, a tampered or replayed frame are refused."""

from __future__ import annotations

import pytest

from crdt.errors import RemoteProtocolError
from crdt.secure import (
    CHUNK,
    Identity,
    SecureChannel,
    network_key_from_text,
    new_private_key,
    peer_id_of,
    public_key_of,
)

KEY = network_key_from_text("the right network key")


def pair(key_a: bytes = KEY, key_b: bytes = KEY) -> tuple[SecureChannel, SecureChannel]:
    return (
        SecureChannel(Identity(new_private_key(), key_a), initiator=True),
        SecureChannel(Identity(new_private_key(), key_b), initiator=False),
    )


def handshake(a: SecureChannel, b: SecureChannel) -> list[bytes]:
    """Run the handshake; return every frame that crossed (for replay tests)."""
    wire: list[bytes] = []
    (m1,) = a.start()
    wire.append(m1)
    (m2,), _ = b.receive(m1)
    wire.append(m2)
    (m3,), _ = a.receive(m2)
    wire.append(m3)
    out, _ = b.receive(m3)
    assert out == []
    return wire


def test_right_key_connects_and_authenticates_ids():
    a, b = pair()
    handshake(a, b)
    assert a.established and b.established
    assert a.remote_id == peer_id_of(public_key_of(b_private(b)))
    assert b.remote_id == peer_id_of(public_key_of(b_private(a)))
    for size in (0, 1, 40, CHUNK - 1, CHUNK, CHUNK + 1, 3 * CHUNK + 5):
        message = bytes(i % 251 for i in range(size))
        assert b.receive(a.encrypt(message))[1] == message
        assert a.receive(b.encrypt(message))[1] == message


def b_private(channel: SecureChannel) -> bytes:
    return channel._noise.noise_protocol.keypairs["s"].private.private_bytes_raw()


def test_wrong_key_is_refused_at_the_first_message():
    a, b = pair(network_key_from_text("some other network key"), KEY)
    (m1,) = a.start()
    with pytest.raises(RemoteProtocolError, match="handshake failed"):
        b.receive(m1)
    assert not b.established and b.remote_id is None


def test_responder_with_wrong_key_is_refused_by_the_initiator():
    a, b = pair(KEY, network_key_from_text("some other network key"))
    (m1,) = a.start()
    with pytest.raises(RemoteProtocolError):
        b.receive(m1)


def test_no_key_no_noise_is_refused():
    for junk in (
        b"",
        b"MSHP",
        b"MSHP\x01",
        b"MSHP\x01" + bytes(48),
        b"GET / HTTP/1.1\r\n\r\n",
        b"MSHP\x02" + bytes(48),
    ):
        with pytest.raises(RemoteProtocolError):
            SecureChannel(Identity(new_private_key(), KEY), initiator=False).receive(junk)


def test_replayed_handshake_is_refused():
    """A recorded first message, replayed to the responder, gets a second
    message nobody can answer: the recorded third message does not fit it."""
    a, b = pair()
    wire = handshake(a, b)
    b2 = SecureChannel(Identity(b_private(b), KEY), initiator=False)
    b2.receive(wire[0])  # the replayed first message is answered...
    with pytest.raises(RemoteProtocolError):
        b2.receive(wire[2])  # ...but the recorded third message fails
    assert not b2.established


@pytest.mark.parametrize("where", [0, 5, -1, -17])
def test_tampered_frame_is_refused(where):
    a, b = pair()
    handshake(a, b)
    frame = bytearray(a.encrypt(b"update: hello"))
    frame[where] ^= 0x01
    with pytest.raises(RemoteProtocolError):
        b.receive(bytes(frame))


def test_replayed_and_reordered_frames_are_refused():
    a, b = pair()
    handshake(a, b)
    first, second = a.encrypt(b"one"), a.encrypt(b"two")
    with pytest.raises(RemoteProtocolError):
        b.receive(second)  # out of order
    a, b = pair()
    handshake(a, b)
    first = a.encrypt(b"one")
    assert b.receive(first)[1] == b"one"
    with pytest.raises(RemoteProtocolError):
        b.receive(first)  # replayed


def test_truncated_multi_chunk_frame_is_refused():
    a, b = pair()
    handshake(a, b)
    frame = a.encrypt(bytes(2 * CHUNK + 10))
    with pytest.raises(RemoteProtocolError):
        b.receive(frame[:65535])  # the first chunk alone is not the message
