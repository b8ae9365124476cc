"""Fuzz target 3: ``crdt.secure.SecureChannel``, mid-handshake and established.

Invariants:

* Handshake: a frame other than the genuine next handshake message is
  refused with ``RemoteProtocolError`` (the responder's first message is the
  one exception: any genuine message 1 of the network, replayed or with a
  non-canonically encoded version, may start a handshake; then it must be a
  genuine one). Nothing but ``RemoteProtocolError`` escapes.
* Transport: the receiver outputs exactly the sent messages, in order, and
  only for the exact bytes the sender produced at that position; any flip,
  truncation, extension, replay, reordering, drop, splice or chunk-flag
  tampering raises ``RemoteProtocolError`` and the receiver yields nothing
  more. Plaintext that differs from what was sent is never returned.
"""

from __future__ import annotations

import functools

import meshfuzz as mf
from hypothesis import HealthCheck, given, note, settings
from hypothesis import strategies as st

from crdt.errors import RemoteProtocolError
from crdt.lib0 import Reader, encode_varuint
from crdt.secure import CHUNK, MAGIC, VERSION, Identity, SecureChannel, network_key_from_text

FUZZ = settings(
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

NETWORK = network_key_from_text("fuzzing network key, not a secret")
OTHER_NETWORK = network_key_from_text("another network entirely, 1234")


@functools.cache
def identities() -> tuple[Identity, Identity, Identity]:
    """Fixed keys (the handshake is what is fuzzed, not key generation)."""
    return (
        Identity(bytes(range(1, 33)), NETWORK),
        Identity(bytes(range(33, 65)), NETWORK),
        Identity(bytes(range(65, 97)), OTHER_NETWORK),
    )


def handshake() -> tuple[SecureChannel, SecureChannel, list[bytes]]:
    """A full handshake: (initiator, responder, [msg1, msg2, msg3])."""
    a_id, b_id, _ = identities()
    a = SecureChannel(a_id, initiator=True)
    b = SecureChannel(b_id, initiator=False)
    (m1,) = a.start()
    (m2,) = b.receive(m1)[0]
    (m3,) = a.receive(m2)[0]
    assert b.receive(m3) == ([], None)
    assert a.established and b.established
    assert a.remote_id == b_id.peer_id and b.remote_id == a_id.peer_id
    return a, b, [m1, m2, m3]


@functools.cache
def old_session() -> tuple[bytes, ...]:
    """Handshake and transport frames of an earlier session (for replays)."""
    a, b, msgs = handshake()
    return (*msgs, a.encrypt(b"old message"), b.encrypt(b"old reply"))


def refused(channel: SecureChannel, frame: bytes) -> bool:
    try:
        channel.receive(frame)
    except RemoteProtocolError:
        return True
    return False


def is_genuine_first(frame: bytes, genuine: bytes) -> bool:
    """A message 1 of this network: magic, version 1 (however encoded), then
    the Noise bytes of some genuine message 1."""
    r = Reader(frame)
    try:
        if r.read_bytes(len(MAGIC)) != MAGIC or r.read_varuint() != VERSION:
            return False
    except RemoteProtocolError:
        return False
    noise = frame[r.pos :]
    return noise in (genuine[len(MAGIC) + 1 :], old_session()[0][len(MAGIC) + 1 :])


def handshake_frame(rng: mf.ByteRandom, stage: int, msgs: list[bytes]) -> bytes:
    """Something other than (usually) the genuine message of *stage*."""
    genuine = msgs[stage]
    r = rng.random()
    if r < 0.15:
        return rng.randbytes(rng.randrange(120))
    if r < 0.25:  # the right prefix, then garbage
        return MAGIC + encode_varuint(rng.choice([0, 1, 2, 255, 2**32])) + rng.randbytes(rng.randrange(100))
    if r < 0.4:  # replays and reorderings: another stage's message, an old session's
        return rng.choice([*msgs, *old_session()])
    if r < 0.45:
        return genuine
    offsets = (len(MAGIC),) if stage == 0 else ()
    return mf.mutate(genuine, mf.random_ops(rng, allow_type=False), offsets)


# -- handshake -------------------------------------------------------------------------


@settings(FUZZ, max_examples=700)
@given(st.binary(min_size=4, max_size=200))
def test_handshake_messages(entropy):
    rng = mf.ByteRandom(entropy)
    stage = rng.randrange(4)
    a_id, b_id, stranger = identities()
    if stage == 3:
        # A channel from another network: the genuine messages of this one fail.
        s = SecureChannel(stranger, initiator=False)
        _, _, msgs = handshake()
        frame = msgs[0] if rng.random() < 0.5 else handshake_frame(rng, 0, msgs)
        note(f"stranger frame = {frame.hex()}")
        assert refused(s, frame)
        return
    a = SecureChannel(a_id, initiator=True)
    b = SecureChannel(b_id, initiator=False)
    (m1,) = a.start()
    msgs = [m1]
    if stage >= 1:
        (m2,) = b.receive(m1)[0]
        msgs.append(m2)
    if stage >= 2:
        (m3,) = a.receive(m2)[0]
        msgs.append(m3)
    frame = handshake_frame(rng, stage, msgs)
    note(f"stage={stage} frame = {frame.hex()}\ngenuine = {msgs[stage].hex()}")
    receiver = a if stage == 1 else b
    if refused(receiver, frame):
        assert not receiver.established
        return
    if stage == 0:
        assert is_genuine_first(frame, m1), "the responder accepted a first message no initiator made"
    else:
        assert frame == msgs[stage], "a handshake message that is not the genuine one was accepted"
        assert receiver.established


@settings(FUZZ, max_examples=300)
@given(st.binary(min_size=2, max_size=64))
def test_frames_before_the_handshake_starts(entropy):
    """An initiator that has not started, and a responder that gets transport
    frames or message 3 first, refuse them."""
    rng = mf.ByteRandom(entropy)
    a_id, b_id, _ = identities()
    frame = rng.choice(old_session()) if rng.random() < 0.6 else rng.randbytes(rng.randrange(80))
    note(f"frame = {frame.hex()}")
    assert refused(SecureChannel(a_id, initiator=True), frame)
    b = SecureChannel(b_id, initiator=False)
    if frame[: len(MAGIC)] != MAGIC:
        assert refused(b, frame)


# -- transport -------------------------------------------------------------------------

SIZES = (0, 1, 2, 17, 100, CHUNK - 1, CHUNK, CHUNK + 1, 2 * CHUNK + 3)


def plaintexts(rng: mf.ByteRandom) -> list[bytes]:
    out = []
    for i in range(1 + rng.randrange(4)):
        size = rng.choice(SIZES) if rng.random() < 0.3 else rng.randrange(64)
        out.append(bytes([i + 1]) * size)
    return out


@settings(FUZZ, max_examples=900)
@given(st.binary(min_size=4, max_size=300))
def test_transport_tampering(entropy):
    rng = mf.ByteRandom(entropy)
    a, b, _ = handshake()
    sender, receiver = (a, b) if rng.random() < 0.5 else (b, a)
    messages = plaintexts(rng)
    frames = [sender.encrypt(m) for m in messages]
    # What the network (or an attacker on it) delivers.
    delivered: list[bytes] = []
    for _ in range(1 + rng.randrange(6)):
        r = rng.random()
        i = rng.randrange(len(frames))
        if r < 0.35:
            delivered.append(frames[i])  # in order, out of order, or replayed
        elif r < 0.7:
            delivered.append(mf.mutate(frames[i], mf.random_ops(rng, allow_type=False)))
        elif r < 0.8:
            delivered.append(frames[i] + frames[rng.randrange(len(frames))])  # two frames as one
        elif r < 0.9:
            delivered.append(frames[i][: rng.randrange(len(frames[i]) + 1)])
        else:
            delivered.append(rng.choice(old_session()) if rng.random() < 0.5 else rng.randbytes(rng.randrange(80)))
    note(f"messages sizes={[len(m) for m in messages]}\ndelivered sizes={[len(d) for d in delivered]}")
    for expected, frame in enumerate(delivered):
        try:
            replies, plain = receiver.receive(frame)
        except RemoteProtocolError:
            break  # the link closes: nothing after this is read
        assert replies == []
        assert expected < len(frames) and frame == frames[expected], (
            f"accepted a frame that is not the next one sent (expected #{expected})"
        )
        assert plain == messages[expected], "decrypted to something else than was sent"


def chunked(sender: SecureChannel, chunks: list[tuple[int, bytes]]) -> bytes:
    """A frame built by a peer that holds the keys but not the rules: each
    chunk is (flag byte, payload) encrypted as one Noise message."""
    noise = sender._noise
    return b"".join(bytes(noise.encrypt(bytes([flag]) + payload if flag >= 0 else b"")) for flag, payload in chunks)


@settings(FUZZ, max_examples=500)
@given(st.binary(min_size=4, max_size=100))
def test_chunk_flag_tampering_by_an_authenticated_peer(entropy):
    """Chunk flags other than 0/1, empty chunks (no flag byte), a last chunk
    followed by more, a short non-last chunk, a frame ending on a non-last
    chunk: refused. A well-formed chunk sequence (full non-last chunks with
    flag 0, then one with flag 1) decrypts to exactly its payloads."""
    rng = mf.ByteRandom(entropy)
    a, b, _ = handshake()
    chunks: list[tuple[int, bytes]] = []
    for i in range(1 + rng.randrange(3)):
        flag = rng.choice([1, 0, 2, 255, -1])  # -1: no flag byte at all
        size = rng.choice([0, 1, 50, CHUNK]) if flag >= 0 else 0
        chunks.append((flag, bytes([i + 65]) * size))
    frame = chunked(a, chunks)
    well_formed = (
        all(flag == 0 and len(p) == CHUNK for flag, p in chunks[:-1]) and chunks[-1][0] == 1 and len(frame) > 0
    )
    note(f"chunks={[(f, len(p)) for f, p in chunks]} well_formed={well_formed}")
    try:
        _, plain = b.receive(frame)
    except RemoteProtocolError:
        assert not well_formed, "a well-formed chunked frame was refused"
        return
    assert well_formed, "a malformed chunk sequence was accepted"
    assert plain == b"".join(p for _, p in chunks)


def test_established_channel_round_trips_large_messages():
    a, b, _ = handshake()
    for size in SIZES:
        message = bytes(range(256)) * (size // 256) + bytes(size % 256)
        assert b.receive(a.encrypt(message)) == ([], message)
        assert a.receive(b.encrypt(message)) == ([], message)
