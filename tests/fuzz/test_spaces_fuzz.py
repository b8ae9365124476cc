"""Fuzz targets of spaces: the multi-key handshake, the protocol-4 messages,
a node that checks a space's rights, and invites.

The invariant everywhere: random or mutated input (bit flips, byte sets,
inserts, deletes, truncations, lies in length and count fields, splices of
valid inputs) gets a clear refusal, and nothing changes.

* ``crdt.secure.SecureChannel(..., keys=[k1, k2, k3])``: a genuine message 1
  made with one of the keys is taken, and ``chosen`` names that key; a
  dialler holding another key is refused with ``HandshakeRefused``; any
  other first frame, and any later frame but the genuine message 3, is
  refused with ``RemoteProtocolError``, and the channel stays unestablished.
* ``crdt.peerwire``: HELLO (protocol 4), ROSTER, ROSTER_HEADS and KEYS round
  trip; mutated frames decode to a message within every limit, or raise
  ``RemoteProtocolError``.
* ``crdt.node.Node`` with ``crdt.access.Access``: on a link from an admin, a
  writer or a reader (after its HELLO), random and mutated ROSTER,
  ROSTER_HEADS, KEYS and UPDATE frames leave the roster as it was unless
  they carry a genuine signed op (and its members as they were unless that
  op is an admin's), never replace a key nor take one for an epoch the
  roster lacks, and change a document only on a writer's or an admin's
  link; every frame the node sends decodes. A stranger's link is closed at
  its HELLO. Nothing but ``RemoteProtocolError`` escapes.
* ``server.spaces.parse_space_invite`` and ``server.addresses.parse_join``:
  a result, ``None`` (not a space invite) or ``ValueError`` with a message.
"""

from __future__ import annotations

import functools
import random
import string

import meshfuzz as mf
from hypothesis import HealthCheck, currently_in_test_context, event, given, note, settings
from hypothesis import strategies as st
from nodenet import NodeNetwork

from crdt import peerwire as pw
from crdt import roster as rs
from crdt.access import Access, Invite, SpaceKey, token_hash
from crdt.effects import CloseLink, Effect, InviteUsed, Refused, RosterChanged, SendPeer
from crdt.errors import RemoteProtocolError
from crdt.lib0 import Reader, encode_varuint
from crdt.node import Node
from crdt.secure import MAGIC, VERSION, HandshakeRefused, Identity, SecureChannel, network_key_from_text
from server import addresses
from server.spaces import SpaceInvite, parse_space_invite

FUZZ = settings(
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
T0 = 1_700_000_000.0
# Every choice of a generator below is drawn by hypothesis (and shrunk by it).
RANDOMS = st.randoms(use_true_random=False)

# -- 1. the multi-key handshake ------------------------------------------------------

KEYS = tuple(network_key_from_text(f"space key number {i} of the fuzzer") for i in range(3))
OUTSIDE_KEY = network_key_from_text("a key that is in no list at all")
ALL_KEYS = (*KEYS, OUTSIDE_KEY)  # index 3: a dialler the responder does not know


def dialler(key_index: int) -> Identity:
    return Identity(bytes(range(1, 33)), ALL_KEYS[key_index])


def responder_identity() -> Identity:
    return Identity(bytes(range(33, 65)), KEYS[0])


def responder() -> SecureChannel:
    return SecureChannel(responder_identity(), initiator=False, keys=list(KEYS))


@functools.cache
def old_first_messages() -> tuple[tuple[int, bytes], ...]:
    """(key index, message 1) of earlier handshakes, one per key (replays)."""
    return tuple((i, SecureChannel(dialler(i), initiator=True).start()[0]) for i in range(len(ALL_KEYS)))


@functools.cache
def old_third_messages() -> tuple[bytes, ...]:
    out = []
    for i in range(len(KEYS)):
        a = SecureChannel(dialler(i), initiator=True)
        b = responder()
        (m2,) = b.receive(a.start()[0])[0]
        out.append(a.receive(m2)[0][0])
    return tuple(out)


def noise_body(frame: bytes) -> bytes | None:
    """The Noise part of a first frame with the magic and version 1 (however
    the varuint is encoded), else None."""
    r = Reader(frame)
    try:
        if r.read_bytes(len(MAGIC)) != MAGIC or r.read_varuint() != VERSION:
            return None
    except RemoteProtocolError:
        return None
    return frame[r.pos :]


def first_frame(rng: random.Random, genuine: bytes) -> bytes:
    r = rng.random()
    if r < 0.1:
        return rng.randbytes(rng.randrange(120))
    if r < 0.2:  # the right prefix, then garbage
        return MAGIC + encode_varuint(rng.choice([0, 1, 2, 255, 2**32])) + rng.randbytes(rng.randrange(100))
    if r < 0.3:  # a replay of another handshake's message 1 (of any key)
        return rng.choice(old_first_messages())[1]
    if r < 0.4:  # a splice of two message 1s
        other = rng.choice(old_first_messages())[1]
        cut = rng.randrange(len(genuine) + 1)
        return genuine[:cut] + other[cut:]
    if r < 0.5:
        return genuine
    return mf.mutate(genuine, mf.random_ops(rng, allow_type=False), (len(MAGIC),))


@settings(FUZZ, max_examples=500)
@given(RANDOMS)
def test_multi_key_responder_first_frame(rng):
    index = rng.randrange(len(ALL_KEYS))
    a = SecureChannel(dialler(index), initiator=True)
    (genuine,) = a.start()
    frame = first_frame(rng, genuine)
    note(f"key={index} frame = {frame.hex()}\ngenuine = {genuine.hex()}")
    b = responder()
    known = {noise_body(genuine): index, **{noise_body(m): i for i, m in old_first_messages()}}
    try:
        replies, plain = b.receive(frame)
    except RemoteProtocolError as exc:
        assert str(exc), "a refusal without a reason"
        assert not b.established and b.chosen is None and b.remote_id is None
        if noise_body(frame) is not None:
            assert isinstance(exc, HandshakeRefused) and exc.kind == "wrong_key", repr(exc)
        body = noise_body(frame)
        assert known.get(body, 3) == 3, "a genuine message 1 made with one of the keys was refused"
        event("refused")
        return
    event(f"taken with key {b.chosen}")
    body = noise_body(frame)
    assert body in known, "the responder took a first message no initiator made"
    assert known[body] != 3, "a dialler holding a key not in the list was taken"
    assert b.chosen == known[body], f"chose key {b.chosen} for a message made with key {known[body]}"
    assert plain is None and len(replies) == 1 and not b.established
    if body == noise_body(genuine):  # the handshake completes with the dialler
        (m3,) = a.receive(replies[0])[0]
        assert b.receive(m3) == ([], None)
        assert b.established and b.remote_id == dialler(index).peer_id and a.remote_id == responder_identity().peer_id
        assert b.receive(a.encrypt(b"hello"))[1] == b"hello"


@settings(FUZZ, max_examples=300)
@given(RANDOMS)
def test_multi_key_responder_later_frames(rng):
    """After a genuine message 1 (any of the keys), only the genuine message
    3 of that handshake establishes the channel; anything else is refused."""
    index = rng.randrange(len(KEYS))
    a = SecureChannel(dialler(index), initiator=True)
    b = responder()
    (m2,) = b.receive(a.start()[0])[0]
    assert b.chosen == index
    (m3,) = a.receive(m2)[0]
    r = rng.random()
    if r < 0.15:
        frame = rng.randbytes(rng.randrange(120))
    elif r < 0.3:
        frame = rng.choice([*old_third_messages(), m2, *(m for _, m in old_first_messages())])
    elif r < 0.4:
        other = rng.choice(old_third_messages())
        cut = rng.randrange(len(m3) + 1)
        frame = m3[:cut] + other[cut:]
    elif r < 0.5:
        frame = m3
    else:
        frame = mf.mutate(m3, mf.random_ops(rng, allow_type=False))
    note(f"key={index} frame = {frame.hex()}\ngenuine = {m3.hex()}")
    try:
        b.receive(frame)
    except RemoteProtocolError as exc:
        assert str(exc)
        assert frame != m3, "the genuine message 3 was refused"
        assert not b.established and b.remote_id is None and b.chosen == index
        return
    assert frame == m3, "a message 3 that is not the genuine one was taken"
    assert b.established and b.remote_id == dialler(index).peer_id


def test_a_dialler_with_a_key_not_in_the_list_is_refused():
    for frame in (SecureChannel(dialler(3), initiator=True).start()[0], old_first_messages()[3][1]):
        b = responder()
        try:
            b.receive(frame)
        except HandshakeRefused as exc:
            assert exc.kind == "wrong_key" and "wrong network key" in str(exc)
        else:
            raise AssertionError("a dialler with a key not in the list was taken")
        assert b.chosen is None and not b.established
    for i in range(len(KEYS)):  # and each listed key is taken, and named
        b = responder()
        b.receive(SecureChannel(dialler(i), initiator=True).start()[0])
        assert b.chosen == i


# -- 2. protocol 4 messages ---------------------------------------------------------


def signer(n: int) -> rs.Signer:
    return rs.Signer(rs.new_signing_key(bytes([n]) * 32), bytes([n]) * 16)


A, B, W, R, S, X = (signer(n) for n in range(1, 7))  # admin (the node), admin, writer, reader, stranger, new
ROLES_OF = {A.peer_id: "admin", B.peer_id: "admin", W.peer_id: "writer", R.peer_id: "reader", S.peer_id: None}
NAMES = {A.peer_id: "Ann", B.peer_id: "Bob", W.peer_id: "Wu", R.peer_id: "Rae", S.peer_id: "Sam"}


@functools.cache
def base_ops() -> tuple[bytes, ...]:
    r, create = rs.Roster.create(A, "team", "Ann", T0)
    ops = [create]
    ops.append(r.sign_add(A, B.peer_id, B.public_key, "admin", "Bob", T0 + 1))
    ops.append(r.sign_add(A, W.peer_id, W.public_key, "writer", "Wu", T0 + 2))
    ops.append(r.sign_add(B, R.peer_id, R.public_key, "reader", "Rae", T0 + 3))
    return tuple(ops)


@functools.cache
def space_id() -> bytes:
    return rs.space_id_of(base_ops()[0])


def base_roster() -> rs.Roster:
    r = rs.Roster(space_id())
    r.receive_many(list(base_ops()))
    return r


@functools.cache
def admin_ops() -> tuple[bytes, ...]:
    """Genuine ops by an admin, each on top of the base roster, each with an effect."""
    out = []
    for make in (
        lambda r: r.sign_add(A, X.peer_id, X.public_key, "writer", "Xi", T0 + 10),
        lambda r: r.sign_role(B, W.peer_id, "reader", T0 + 11),
        lambda r: r.sign_role(A, R.peer_id, "writer", T0 + 12),
        lambda r: r.sign_remove(A, R.peer_id, T0 + 13),
        lambda r: r.sign_remove(B, W.peer_id, T0 + 14),
        lambda r: r.sign_rename(B, "team2", T0 + 15),
    ):
        out.append(make(base_roster()))
    return tuple(out)


@functools.cache
def other_ops() -> tuple[bytes, ...]:
    """Genuinely signed ops by peers that are not admins (a writer, a reader,
    a stranger), on top of the base roster: taken into the set as history,
    with no effect."""
    heads = base_roster().heads
    sid = space_id()
    return (
        rs._sign_op(
            W, rs.ADD, sid, heads, T0 + 20, target=X.peer_id, target_key=X.public_key, role="writer", member_name="Xi"
        ),
        rs._sign_op(W, rs.ROLE, sid, heads, T0 + 21, target=W.peer_id, role="admin"),
        rs._sign_op(R, rs.ROLE, sid, heads, T0 + 22, target=R.peer_id, role="admin"),
        rs._sign_op(R, rs.REMOVE, sid, heads, T0 + 23, target=A.peer_id),
        rs._sign_op(
            S, rs.ADD, sid, heads, T0 + 24, target=S.peer_id, target_key=S.public_key, role="admin", member_name="Sam"
        ),
        rs._sign_op(W, rs.RENAME, sid, heads, T0 + 25, name="mine"),
    )


def genuine_ops() -> frozenset[bytes]:
    return frozenset((*base_ops(), *admin_ops(), *other_ops()))


def gen_hello(rng: random.Random, peer: rs.Signer | None = None) -> pw.Hello:
    if peer is None:
        peer = rng.choice([A, B, W, R, S])
    pid = peer.peer_id if rng.random() < 0.8 else rng.randbytes(16)
    space = space_id() if rng.random() < 0.8 else rng.randbytes(16)
    key = peer.public_key if rng.random() < 0.8 else rng.randbytes(32)
    name = NAMES.get(peer.peer_id, "") if rng.random() < 0.7 else rng.choice(["", "é😀", "x" * 64, "a\nb"])
    token = b"" if rng.random() < 0.7 else rng.randbytes(16)
    return pw.Hello(pw.VERSION, pid, mf.gen_address(rng), mf.gen_uint(rng), space, key, name, token)


def gen_op(rng: random.Random) -> bytes:
    r = rng.random()
    if r < 0.7:
        return rng.choice(sorted(genuine_ops()))
    if r < 0.9:
        op = rng.choice(sorted(genuine_ops()))
        return mf.mutate(op, mf.random_ops(rng, allow_type=False), mf.varuint_offsets(rs, rs.decode_op, op))
    return rng.randbytes(rng.randrange(200))


def gen_space_message(rng: random.Random) -> pw.Message:
    kind = rng.choice([pw.Hello, pw.Roster, pw.Roster, pw.RosterHeads, pw.Keys])
    if kind is pw.Hello:
        return gen_hello(rng)
    if kind is pw.Roster:
        return pw.Roster(tuple(gen_op(rng) for _ in range(rng.randrange(4))))
    if kind is pw.RosterHeads:
        known = [rs.decode_op(op).hash for op in sorted(genuine_ops())]
        count = rng.choice([0, 1, 2, 3, pw.MAX_ROSTER_HEADS]) if rng.random() < 0.9 else rng.randrange(8)
        heads = tuple(rng.choice(known) if rng.random() < 0.6 else rng.randbytes(32) for _ in range(count))
        return pw.RosterHeads(heads, rng.random() < 0.5)
    keys = []
    for _ in range(rng.choice([0, 1, 2, 3, pw.MAX_KEYS]) if rng.random() < 0.95 else rng.randrange(5)):
        key_id = b"" if rng.random() < 0.3 else rng.choice([rs.decode_op(o).hash for o in admin_ops()] + [bytes(32)])
        keys.append((mf.gen_uint(rng) if rng.random() < 0.3 else rng.randrange(4), key_id, rng.randbytes(32)))
    return pw.Keys(tuple(keys))


def gen_space_frame(rng: random.Random) -> bytes:
    """A valid protocol-4 message, mutated (maybe), or two spliced."""
    frame = pw.encode(gen_space_message(rng))
    r = rng.random()
    if r < 0.25:
        return frame
    if r < 0.4:
        other = pw.encode(gen_space_message(rng))
        return frame[: rng.randrange(len(frame) + 1)] + other[rng.randrange(len(other) + 1) :]
    if r < 0.5:
        return frame[: rng.randrange(len(frame) + 1)]
    return mf.mutate(frame, mf.random_ops(rng), mf.peer_offsets(frame))


def check_limits(msg: pw.Message) -> None:
    if isinstance(msg, pw.Hello):
        assert msg.version == pw.VERSION and len(msg.peer_id) == pw.PEER_ID_BYTES
        assert len(msg.space) == pw.SPACE_ID_BYTES and len(msg.sign_key) == pw.SIGN_KEY_BYTES
        assert len(msg.name.encode()) <= pw.MAX_MEMBER_NAME_BYTES
        assert len(msg.token) in (0, pw.TOKEN_BYTES)
    elif isinstance(msg, pw.Roster):
        assert len(msg.ops) <= pw.MAX_ROSTER_OPS and all(len(op) <= pw.MAX_ROSTER_OP_BYTES for op in msg.ops)
    elif isinstance(msg, pw.RosterHeads):
        assert len(msg.heads) <= pw.MAX_ROSTER_HEADS and all(len(h) == pw.OP_HASH_BYTES for h in msg.heads)
    elif isinstance(msg, pw.Keys):
        assert len(msg.keys) <= pw.MAX_KEYS
        for _, key_id, key in msg.keys:
            assert len(key_id) in (0, pw.OP_HASH_BYTES) and len(key) == pw.SPACE_KEY_BYTES


def check_decode(frame: bytes) -> pw.Message | None:
    if currently_in_test_context():
        note(f"frame = bytes.fromhex({frame.hex()!r})")
    try:
        msg = pw.decode(frame)
    except RemoteProtocolError as exc:
        assert str(exc), "a refusal without a reason"
        return None
    check_limits(msg)
    assert pw.decode(pw.encode(msg)) == msg, "re-encoding changed the message"
    return msg


@settings(FUZZ, max_examples=600)
@given(RANDOMS)
def test_space_messages_round_trip(rng):
    msg = gen_space_message(rng)
    if isinstance(msg, pw.Hello) and len(msg.name.encode()) > pw.MAX_MEMBER_NAME_BYTES:
        return  # encode cuts a long name (tested below)
    note(f"msg = {msg!r}")
    assert pw.decode(pw.encode(msg)) == msg


@settings(FUZZ, max_examples=1000)
@given(RANDOMS)
def test_mutated_space_messages(rng):
    msg = check_decode(gen_space_frame(rng))
    event(type(msg).__name__ if msg is not None else "refused")


@settings(FUZZ, max_examples=300)
@given(
    st.sampled_from([pw.T.HELLO, pw.T.ROSTER, pw.T.ROSTER_HEADS, pw.T.KEYS]),
    st.sampled_from(mf.INTERESTING),
    st.binary(max_size=120),
)
def test_space_typed_garbage(kind, count, body):
    check_decode(encode_varuint(kind) + body)
    check_decode(encode_varuint(kind) + encode_varuint(count) + body)


@settings(FUZZ, max_examples=200)
@given(st.text(max_size=100))
def test_hello_member_name_is_cut_to_the_limit(name):
    msg = pw.decode(pw.encode(pw.Hello(pw.VERSION, bytes(16), "", 1, bytes(16), bytes(32), name, b"")))
    assert isinstance(msg, pw.Hello) and name.startswith(msg.name)
    assert len(msg.name.encode()) <= pw.MAX_MEMBER_NAME_BYTES


def test_limits_at_the_edge_and_an_older_hello():
    for frame in (
        bytes([pw.T.ROSTER]) + encode_varuint(pw.MAX_ROSTER_OPS + 1),
        bytes([pw.T.ROSTER]) + b"\x01" + encode_varuint(pw.MAX_ROSTER_OP_BYTES + 1) + b"x" * 1025,
        bytes([pw.T.ROSTER_HEADS]) + encode_varuint(pw.MAX_ROSTER_HEADS + 1) + bytes(32 * 65) + b"\x00",
        bytes([pw.T.ROSTER_HEADS]) + b"\x00\x02",  # unknown flag
        bytes([pw.T.KEYS]) + encode_varuint(pw.MAX_KEYS + 1),
        bytes([pw.T.KEYS]) + b"\x01\x00\x05" + bytes(5 + 32),  # a key id of 5 bytes
        pw.encode(pw.Hello(pw.VERSION, bytes(16), "", 1, bytes(16), bytes(32), "", b"t" * 5)),  # a short token
    ):
        assert check_decode(frame) is None, frame.hex()
    at_limit = pw.Roster((b"x" * pw.MAX_ROSTER_OP_BYTES,))
    assert pw.decode(pw.encode(at_limit)) == at_limit
    older = bytes([pw.T.HELLO]) + pw.MAGIC + b"\x03" + bytes(16) + b"\x00\x05"  # a protocol-3 HELLO
    try:
        pw.decode(older)
    except pw.VersionMismatch as exc:
        assert "unsupported protocol version 3 (this peer speaks 4): upgrade Meshpad on that peer" in str(exc)
    else:
        raise AssertionError("a protocol-3 HELLO was decoded")


# -- 3. a node that checks the space's rights -------------------------------------------

NODE = "127.0.0.1:1"
SPACE_KEY = SpaceKey(0, b"", network_key_from_text("the space's first key, fuzzing"))
# A key the shell keeps under an id of its own (an invite's key, ``server.spaces``):
# not one the wire carries (KEYS ids are empty or an op hash), so never sent.
LOCAL_KEY = SpaceKey(0, b"invite:" + bytes(8), network_key_from_text("a key an invite brought, fuzzing"))
START_KEYS = {b"": SPACE_KEY, LOCAL_KEY.key_id: LOCAL_KEY}


def check_sent(effects: list[Effect]) -> None:
    """What the node sends, its peers can read: a frame they refuse would
    close an honest link and count a strike against this peer."""
    for effect in effects:
        if isinstance(effect, SendPeer):
            try:
                pw.decode(effect.data)
            except RemoteProtocolError as exc:
                raise AssertionError(f"the node sends a frame its peers refuse ({exc}): {effect.data.hex()}") from None


class SpaceHarness:
    """A node (admin A) of a space with admin B, writer W and reader R, and
    one authenticated link into it from *peer*."""

    def __init__(self, peer: rs.Signer, seed: int = 0) -> None:
        self.peer = peer
        self.net = NodeNetwork(first_client_id=50_000)
        self.access = Access(base_roster(), A, "Ann", lambda: T0 + 100, keys=dict(START_KEYS))
        documents = {mf.DOC_NAME: mf.fresh_document()}
        self.node = Node(A.peer_id, NODE, random.Random(seed), lambda: 4242, None, documents, access=self.access)
        self.net.nodes[NODE] = self.node
        self.link = self.net.attach(NODE, "10.0.0.2", peer.peer_id)
        self.hello_effects: list[Effect] = []

    @property
    def roster(self) -> rs.Roster:
        return self.access.roster

    def hello(self, token: bytes = b"") -> list[Effect]:
        msg = pw.Hello(
            pw.VERSION,
            self.peer.peer_id,
            "",
            3,
            space_id(),
            self.peer.public_key,
            NAMES.get(self.peer.peer_id, ""),
            token,
        )
        self.net.now += 0.01
        self.hello_effects = list(self.net.feed(self.link, pw.encode(msg)))
        check_sent(self.hello_effects)
        return self.hello_effects

    @property
    def ready(self) -> bool:
        link = self.node.links.get(self.link)
        return link is not None and link.live

    def reconnect(self) -> None:
        if self.link in self.net.routes:
            self.net.hang_up(self.link)
        self.link = self.net.attach(NODE, "10.0.0.2", self.peer.peer_id)
        self.hello()

    def members_state(self) -> tuple[object, ...]:
        r = self.roster
        return (r.name, r.members, r.removed, r.open, r.epoch, r.rotation)

    def roster_state(self) -> tuple[object, ...]:
        r = self.roster
        return (*self.members_state(), tuple(r.heads), len(r), r.pending, r.digest)

    def documents(self) -> dict[str, tuple[str, bytes]]:
        return {name: (doc.text, doc.digest()) for name, doc in self.node.documents.items()}

    def feed(self, frame: bytes) -> None:
        """Feed *frame* on the link (when it is ready) and check the invariant."""
        if not self.ready:
            self.reconnect()
            if not self.ready:  # removed: its link is closed at HELLO, and stays out
                assert self.roster.role(self.peer.peer_id) is None
                return
        self.net.now += 0.01
        role = self.roster.role(self.peer.peer_id)
        roster, members, docs = self.roster_state(), self.members_state(), self.documents()
        keys, edits = dict(self.access.keys), self.access.refused.get("edit", 0)
        try:
            effects = self.net.feed(self.link, frame)
        except RemoteProtocolError as exc:
            assert str(exc), "a refusal without a reason"
            assert self.roster_state() == roster, "a refused frame changed the roster"
            assert self.documents() == docs, "a refused frame changed a document"
            assert self.access.keys == keys, "a refused frame changed the keys"
            event("refused")
            self.reconnect()
            return
        msg = pw.decode(frame)  # it was taken, so it decodes
        event(f"taken: {type(msg).__name__}")
        carried = set(msg.ops) & genuine_ops() if isinstance(msg, pw.Roster) else set()
        if not carried:
            assert self.roster_state() == roster, f"{type(msg).__name__} without a genuine op changed the roster"
        elif not carried & set(admin_ops()):
            assert self.members_state() == members, "ops by no admin changed the members"
        if self.roster_state() != roster:
            assert any(isinstance(e, RosterChanged) for e in effects), "the roster changed without RosterChanged"
        for key_id, key in keys.items():
            assert self.access.keys[key_id] == key, "a key was replaced"
        if self.access.keys != keys:
            assert isinstance(msg, pw.Keys) and role is not None, "keys changed by something else than a member's KEYS"
            removes = {op.hash for op, applied in self.roster.history() if applied and op.kind == rs.REMOVE}
            assert set(self.access.keys) - set(keys) <= removes, "a key was taken for an epoch the roster lacks"
        if self.documents() != docs:
            assert isinstance(msg, (pw.Update, pw.SyncStep2)), f"{type(msg).__name__} changed a document"
            assert role in ("admin", "writer"), f"a {role}'s {type(msg).__name__} changed a document"
        if isinstance(msg, pw.Update) and role == "reader":
            assert self.access.refused["edit"] == edits + 1, "a reader's UPDATE was not counted"
            assert any(isinstance(e, Refused) and e.what == "edit" for e in effects)
        if self.roster.role(self.peer.peer_id) is None:
            assert not self.ready, "the link of a peer that is no longer a member is open"
        check_sent(effects)


def gen_node_frame(rng: random.Random) -> bytes:
    r = rng.random()
    if r < 0.2:  # a genuine update of the node's document, maybe mutated
        frame = pw.encode(pw.Update(mf.DOC_NAME, rng.choice(mf.text_updates())))
        return frame if rng.random() < 0.6 else mf.mutate(frame, mf.random_ops(rng), mf.peer_offsets(frame))
    if r < 0.35:
        return pw.encode(pw.Roster(tuple(gen_op(rng) for _ in range(1 + rng.randrange(3)))))
    if r < 0.8:
        return gen_space_frame(rng)
    return mf.gen_peer_frame(rng, doc_only=rng.random() < 0.5)


@settings(FUZZ, max_examples=600)
@given(st.sampled_from(["admin", "writer", "reader"]), RANDOMS)
def test_node_with_access_after_a_members_hello(who, rng):
    peer = {"admin": B, "writer": W, "reader": R}[who]
    frames = [gen_node_frame(rng) for _ in range(1 + rng.randrange(5))]
    note(f"peer={who} frames = {mf.describe(frames)}")
    h = SpaceHarness(peer, seed=rng.randrange(4))
    h.hello()
    assert h.ready
    for frame in frames:
        h.feed(frame)


@settings(FUZZ, max_examples=300)
@given(RANDOMS)
def test_a_strangers_link_is_closed_at_hello(rng):
    """A stranger's HELLO (valid, or mutated) closes its link or is refused,
    whatever it says; what it sends before or after is refused, and nothing
    changes."""
    h = SpaceHarness(S, seed=rng.randrange(4))
    roster, docs = h.roster_state(), h.documents()
    hello = pw.encode(gen_hello(rng, S))
    if rng.random() < 0.5:
        hello = mf.mutate(hello, mf.random_ops(rng), mf.peer_offsets(hello))
    frames = [hello, *(gen_node_frame(rng) for _ in range(rng.randrange(4)))]
    note(f"frames = {mf.describe(frames)}")
    for frame in frames:
        h.net.now += 0.01
        if h.link not in h.net.routes:  # closed: the stranger comes back on a new link
            h.link = h.net.attach(NODE, "10.0.0.2", S.peer_id)
        try:
            effects = h.net.feed(h.link, frame)
        except RemoteProtocolError as exc:
            assert str(exc)
            h.net.hang_up(h.link)
        else:
            assert isinstance(pw.decode(frame), pw.Hello)
            closes = [e for e in effects if isinstance(e, CloseLink) and e.link == h.link]
            assert closes and closes[0].reason in (
                "not a member of this space",
                "protocol error: this link is for another space",
                "the invite is not valid here (used, expired or unknown)",
            ), effects
        assert not h.ready, "a stranger's link is ready"
        assert h.roster_state() == roster and h.documents() == docs and h.access.keys == START_KEYS


# -- sanity: what is genuine is taken (the checks above are not vacuous) ------------------


def test_a_genuine_admin_op_is_taken_and_closes_the_removed_peers_link():
    remove_r = admin_ops()[3]
    h = SpaceHarness(B)
    h.hello()
    members = h.members_state()
    effects = h.net.feed(h.link, pw.encode(pw.Roster((remove_r,))))
    assert RosterChanged((remove_r,)) in effects
    assert h.members_state() != members and R.peer_id in h.roster.removed and h.roster.epoch == 1
    reader = SpaceHarness(R)
    reader.hello()
    assert reader.ready
    reader.net.feed(reader.link, pw.encode(pw.Roster((remove_r,))))
    assert not reader.ready, "the removed reader's link stayed open"
    reader.reconnect()
    assert not reader.ready
    assert CloseLink(reader.link, "removed from this space") in reader.hello_effects


def test_ops_by_no_admin_are_kept_as_history_without_effect():
    h = SpaceHarness(W)
    h.hello()
    members, heads = h.members_state(), h.roster.heads
    h.net.feed(h.link, pw.encode(pw.Roster(other_ops())))
    assert h.roster.heads != heads and h.members_state() == members


def test_a_writers_update_is_taken_and_a_readers_is_refused():
    update = mf.text_updates()[0]
    expected = mf.fresh_document()
    expected.load([mf.base_state(), update])
    for peer, taken in ((W, True), (B, True), (R, False)):
        h = SpaceHarness(peer)
        h.hello()
        effects = h.net.feed(h.link, pw.encode(pw.Update(mf.DOC_NAME, update)))
        doc = h.node.documents[mf.DOC_NAME]
        assert (doc.text == expected.text) is taken and (doc.text == mf.BASE_TEXT) is not taken
        assert any(isinstance(e, Refused) and e.what == "edit" for e in effects) is not taken
        assert h.access.refused.get("edit", 0) == (0 if taken else 1)


def test_a_members_keys_are_taken_for_the_rosters_epochs_only():
    """A reader's KEYS of random ids adds nothing (every key is tried at each
    inbound handshake); a key for a REMOVE the roster lacks is asked for
    again (ROSTER_HEADS, want) and taken once the REMOVE is held."""
    rng = random.Random(5)
    h = SpaceHarness(R)
    h.hello()
    for _ in range(20):
        h.net.now += 0.05
        junk = tuple((rng.randrange(9), rng.randbytes(32), rng.randbytes(32)) for _ in range(pw.MAX_KEYS))
        h.net.feed(h.link, pw.encode(pw.Keys(junk)))
    assert h.access.keys == START_KEYS
    remove_w = admin_ops()[4]
    new = SpaceKey(1, rs.decode_op(remove_w).hash, bytes(range(32)))
    # A reader's key is not taken even for a REMOVE the roster holds (it
    # could plant a false one); an admin's is.
    h.net.feed(h.link, pw.encode(pw.Roster((remove_w,))))
    h.net.now += 0.05
    h.net.feed(h.link, pw.encode(pw.Keys(((7, new.key_id, new.key),))))
    assert h.access.keys == START_KEYS
    h = SpaceHarness(B)
    h.hello()
    h.net.now += 0.05
    effects = h.net.feed(h.link, pw.encode(pw.Keys(((7, new.key_id, new.key),))))
    assert h.access.keys == START_KEYS
    asked = [pw.decode(e.data) for e in effects if isinstance(e, SendPeer)]
    assert asked == [pw.RosterHeads(tuple(h.roster.heads), True)]
    h.net.feed(h.link, pw.encode(pw.Roster((remove_w,))))
    h.net.feed(h.link, pw.encode(pw.Keys(((7, new.key_id, new.key),))))
    assert h.access.keys == {**START_KEYS, new.key_id: new}  # epoch 1: the roster's, not the 7 it was sent with


def test_heads_that_lack_a_remove_get_the_op_then_its_key():
    h = SpaceHarness(W)
    remove_r = admin_ops()[3]
    h.access.roster.receive(remove_r)
    key = SpaceKey(1, rs.decode_op(remove_r).hash, bytes(32))
    h.access.keys[key.key_id] = key
    h.hello()
    h.net.now += 0.05
    effects = h.net.feed(h.link, pw.encode(pw.RosterHeads(tuple(base_roster().heads))))
    sent = [pw.decode(e.data) for e in effects if isinstance(e, SendPeer)]
    assert sent == [pw.Roster((remove_r,)), pw.Keys(((0, b"", SPACE_KEY.key), (1, key.key_id, key.key)))]


def test_a_valid_invite_admits_a_stranger():
    token = b"\x07" * 16
    s = SpaceHarness(S)
    s.access.invites[token_hash(token)] = Invite("reader", T0 + 1000)
    effects = s.hello(token)
    assert s.ready and s.roster.role(S.peer_id) == "reader"
    assert InviteUsed(token_hash(token), S.peer_id) in effects
    assert any(isinstance(e, RosterChanged) for e in effects)
    s.reconnect()  # the token was used once: the link comes back as a member's
    assert s.ready


# -- 4. invites ---------------------------------------------------------------------------


@functools.cache
def invites() -> tuple[str, ...]:
    out = []
    for address, legacy in (("127.0.0.1:7400", False), ("[::1]:1", True), ("peer.example.org:65535", False)):
        out.append(SpaceInvite(address, space_id(), SPACE_KEY.key, b"\x05" * 16, legacy).text())
    out.append(addresses.make_invite("127.0.0.1:7400", "a network key of old, long enough"))
    out += ["127.0.0.1:7400", "meshpad://", "meshpad://h:1/#.", " meshpad://[::1]:9/00#a.b "]
    return tuple(out)


INVITE_ALPHABET = string.ascii_letters + string.digits + "-_=+/#.:[]@% \t\n" + "é😀\x00٣"


def mutate_text(rng: random.Random, text: str) -> str:
    chars = list(text)
    for _ in range(rng.choice([1, 1, 2, 4])):
        r = rng.random()
        pos = rng.randrange(len(chars) + 1)
        if r < 0.3 and chars:
            chars[pos % len(chars)] = rng.choice(INVITE_ALPHABET)
        elif r < 0.5:
            chars[pos:pos] = rng.choice(INVITE_ALPHABET) * rng.randint(1, 3)
        elif r < 0.7 and chars:
            del chars[pos : pos + rng.randint(1, 8)]
        elif r < 0.8:
            del chars[pos:]
        elif r < 0.9:  # a splice with another invite
            other = rng.choice(invites())
            chars = chars[:pos] + list(other[rng.randrange(len(other) + 1) :])
        elif chars:  # a flipped bit of a character
            i = pos % len(chars)
            chars[i] = chr((ord(chars[i]) ^ (1 << rng.randrange(8))) or 1)
    return "".join(chars)


def gen_invite_text(rng: random.Random) -> str:
    r = rng.random()
    if r < 0.1:
        return "".join(rng.choice(INVITE_ALPHABET) for _ in range(rng.randrange(80)))
    if r < 0.2:
        return rng.choice(invites())
    if r < 0.8:  # a space invite, mutated
        return mutate_text(rng, rng.choice(invites()[:3]))
    return mutate_text(rng, rng.choice(invites()))


@settings(FUZZ, max_examples=1000)
@given(RANDOMS)
def test_invites_parse_or_are_refused_with_a_message(rng):
    text = gen_invite_text(rng)
    note(f"text = {text!r}")
    try:
        invite = parse_space_invite(text)
    except ValueError as exc:
        assert str(exc), "a refusal without a reason"
        event("space invite refused")
    else:
        if invite is None:
            event("not a space invite")
        else:
            event("space invite")
            assert isinstance(invite, SpaceInvite)
            assert len(invite.space) == 16 and len(invite.key) == 32 and len(invite.token) == 16
            assert addresses.parse_address(invite.address) == invite.address
            assert parse_space_invite(invite.text()) == invite
    try:
        address, key = addresses.parse_join(text)
    except ValueError as exc:
        assert str(exc)
    else:
        assert addresses.parse_address(address) == address
        assert key is None or len(key) >= 16


@settings(FUZZ, max_examples=300)
@given(st.text(max_size=120))
def test_random_text_as_an_invite(text):
    try:
        invite = parse_space_invite(text)
    except ValueError as exc:
        assert str(exc)
    else:
        assert invite is None or parse_space_invite(invite.text()) == invite
    try:
        addresses.parse_join(text)
    except ValueError as exc:
        assert str(exc)


def test_a_valid_invite_parses_back():
    invite = SpaceInvite("127.0.0.1:7400", space_id(), SPACE_KEY.key, b"\x05" * 16)
    assert parse_space_invite(invite.text()) == invite
    assert parse_space_invite(addresses.make_invite("127.0.0.1:7400", "a network key of old, long enough")) is None
    truncated = invite.text()[:-3]
    try:
        parse_space_invite(truncated)
    except ValueError as exc:
        assert "wrong length" in str(exc)
    else:
        raise AssertionError("a truncated token was taken")


def test_a_bad_op_after_a_good_one_keeps_and_reports_the_good_one():
    """ROSTER(genuine admin op, garbage): the genuine op is kept, so it must
    be reported (stored by the shell, passed on) before the link closes;
    else the node holds an op it loses on restart and never floods."""
    add_x = admin_ops()[0]
    bad = bytearray(admin_ops()[5])
    bad[len(bad) // 2] ^= 0x10
    h = SpaceHarness(B)
    h.hello()
    other = h.net.attach(NODE, "10.0.0.3", W.peer_id)  # another member's link, which the op floods to
    h.net.feed(other, pw.encode(pw.Hello(pw.VERSION, W.peer_id, "", 5, space_id(), W.public_key, "Wu", b"")))
    effects = h.net.feed(h.link, pw.encode(pw.Roster((add_x, bytes(bad)))))
    assert h.roster.role(X.peer_id) == "writer"
    assert RosterChanged((add_x,)) in effects
    assert any(isinstance(e, CloseLink) and e.link == h.link for e in effects) and not h.ready
    flooded = [e for e in effects if getattr(e, "link", None) == other and hasattr(e, "data")]
    assert [pw.decode(e.data) for e in flooded] == [pw.Roster((add_x,))]
