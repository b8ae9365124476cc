"""The Meshpad peer protocol: the binary frames two peers exchange over one
WebSocket (``/peer``), whichever side dialled.

Every frame is one message: a varuint *type*, then its fields. The numbers are
on the wire: the set is closed and append-only (a new message gets a new
number; no number is ever reused or changed). ``docs/protocol.md`` describes
each message. The first frame each side sends is HELLO, and it starts with
the protocol magic and version, so a peer can refuse an incompatible one
before reading anything else.

:func:`decode` is the one door for untrusted bytes: it returns a message or
raises :class:`~crdt.errors.RemoteProtocolError`, never anything else, and it
enforces every size limit below.
"""

from __future__ import annotations

from dataclasses import dataclass

from crdt.errors import RemoteProtocolError
from crdt.lib0 import Reader, Writer
from crdt.names import is_valid_key

MAGIC = b"MSHP"
# 2 added IHAVE, PRUNE and GRAFT (lazy push); 3 gave documents a life (a
# key, a name, the Trash, the forgotten: docs/protocol.md §9), DIGEST its
# answer flag and added UNAVAILABLE; 4 made a link belong to one space (HELLO
# names the space, the peer's signing key and name, and an invite token) and
# added ROSTER, ROSTER_HEADS and KEYS. A peer of another version is told so in
# the reason its link is closed with, and never banned for it.
VERSION = 4

# Hard limits. Each is far above honest use and keeps one link from making a
# peer allocate without bound.
MAX_FRAME_BYTES = 16 * 1024 * 1024  # a whole-document sync of a large document
MAX_ADDRESS_BYTES = 300  # host:port, a DNS name at most 253 bytes
MAX_PEERS_PER_MESSAGE = 64  # peer exchange samples, not the whole view
MAX_DIGEST_ENTRIES = 100_000  # documents listed in one DOC_DIGESTS
MAX_REASON_BYTES = 200
MAX_IHAVE_RANGES = 4096  # client ends and delete ranges named by one IHAVE
MAX_GRAFT_DOCUMENTS = 1024  # documents asked for in one GRAFT
PEER_ID_BYTES = 16
HASH_BYTES = 16
SPACE_ID_BYTES = 16
SIGN_KEY_BYTES = 32  # an Ed25519 public key
TOKEN_BYTES = 16  # an invite's secret
MAX_MEMBER_NAME_BYTES = 64
MAX_ROSTER_OPS = 10_000  # ops in one ROSTER (crdt.roster.MAX_OPS)
MAX_ROSTER_OP_BYTES = 1024
MAX_ROSTER_HEADS = 64
MAX_KEYS = 256
OP_HASH_BYTES = 32
SPACE_KEY_BYTES = 32


class T:
    """Message type numbers (append-only)."""

    HELLO = 1
    PEERS = 2
    PING = 3
    PONG = 4
    DIGEST = 5
    DOC_DIGESTS = 6
    SYNC_STEP1 = 7
    SYNC_STEP2 = 8
    UPDATE = 9
    AWARENESS = 10
    BYE = 11
    IHAVE = 12
    PRUNE = 13
    GRAFT = 14
    UNAVAILABLE = 15
    ROSTER = 16
    ROSTER_HEADS = 17
    KEYS = 18


# Each type's name, lowercased, by number: a bounded label set for the
# shell's counters (``server.metrics``).
TYPE_NAMES: dict[int, str] = {v: k.lower() for k, v in vars(T).items() if k.isupper() and isinstance(v, int)}


def type_name(frame: bytes) -> str:
    """The name of the message type *frame* starts with, or ``unknown``.
    Reads only the first byte (every number is below 128); never raises."""
    return TYPE_NAMES.get(frame[0], "unknown") if frame else "unknown"


@dataclass(frozen=True, slots=True)
class Hello:
    version: int
    peer_id: bytes
    listen: str  # "host:port" others can dial, or "" when it accepts no connections
    nonce: int = 0  # random per link: breaks the tie between two links to one peer
    space: bytes = bytes(SPACE_ID_BYTES)  # the space this link is for
    sign_key: bytes = bytes(SIGN_KEY_BYTES)  # the sender's Ed25519 public key (its roster entries)
    name: str = ""  # the name the sender goes by
    token: bytes = b""  # an invite's secret (empty, or TOKEN_BYTES): "add me"


@dataclass(frozen=True, slots=True)
class Peers:
    peers: tuple[tuple[bytes, str], ...]  # (peer id, address)


@dataclass(frozen=True, slots=True)
class Ping:
    nonce: int


@dataclass(frozen=True, slots=True)
class Pong:
    nonce: int


@dataclass(frozen=True, slots=True)
class Digest:
    root: bytes
    count: int
    answer: bool = False  # the answer to a DIGEST with the same root: not answered


@dataclass(frozen=True, slots=True)
class Unavailable:
    """The sender holds this document but cannot serve it: its stored copy
    cannot be read, or it was deleted forever. Not asked there again."""

    name: str
    reason: str


@dataclass(frozen=True, slots=True)
class DocDigests:
    entries: tuple[tuple[str, bytes], ...]  # (document name, hash)


@dataclass(frozen=True, slots=True)
class SyncStep1:
    name: str
    state_vector: bytes
    reply_step1: bool  # ask the other side to send its own step 1 back


@dataclass(frozen=True, slots=True)
class SyncStep2:
    name: str
    update: bytes


@dataclass(frozen=True, slots=True)
class Update:
    name: str
    update: bytes


@dataclass(frozen=True, slots=True)
class Awareness:
    name: str
    update: bytes  # a y-protocols awareness update


@dataclass(frozen=True, slots=True)
class Bye:
    reason: str


@dataclass(frozen=True, slots=True)
class IHave:
    """Changes to one document the sender has and did not push on this
    (lazy) link: for each client the clock it has reached, and the ranges
    the changes deleted (deletions leave clocks unchanged)."""

    name: str
    ends: tuple[tuple[int, int], ...]  # (client, clock)
    deletes: tuple[tuple[int, int, int], ...]  # (client, clock, length)


@dataclass(frozen=True, slots=True)
class Prune:
    """A pushed update came twice: push on this link lazily (IHAVE) from now on."""


@dataclass(frozen=True, slots=True)
class Graft:
    """Push on this link again. For each document listed (something an IHAVE
    named did not come) send what the state vector lacks, as SYNC_STEP2."""

    documents: tuple[tuple[str, bytes], ...]  # (name, state vector)


@dataclass(frozen=True, slots=True)
class Roster:
    ops: tuple[bytes, ...]  # signed roster operations (crdt.roster), parents first


@dataclass(frozen=True, slots=True)
class RosterHeads:
    heads: tuple[bytes, ...]  # the sender's roster heads
    want: bool = False  # "I lack some of yours: send me what I lack"


@dataclass(frozen=True, slots=True)
class Keys:
    keys: tuple[tuple[int, bytes, bytes], ...]  # (epoch, id: the REMOVE op's hash or b"", key)


Message = (
    Hello
    | Peers
    | Ping
    | Pong
    | Digest
    | DocDigests
    | SyncStep1
    | SyncStep2
    | Update
    | Awareness
    | Bye
    | IHave
    | Prune
    | Graft
    | Unavailable
    | Roster
    | RosterHeads
    | Keys
)


class VersionMismatch(RemoteProtocolError):
    """A Meshpad peer of another protocol version: refused, not banned."""


def _name(r: Reader) -> str:
    name = r.read_var_string()
    if not is_valid_key(name):
        raise RemoteProtocolError("invalid document name")
    return name


def _bounded_string(r: Reader, limit: int, what: str) -> str:
    n = r.read_varuint()
    if n > limit:
        raise RemoteProtocolError(f"{what} too long")
    raw = r.read_bytes(n)
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise RemoteProtocolError(f"{what} is not UTF-8") from exc


def _fixed(r: Reader, n: int) -> bytes:
    return r.read_bytes(n)


def decode(frame: bytes) -> Message:
    """Decode one frame. Raises RemoteProtocolError for anything invalid."""
    if len(frame) > MAX_FRAME_BYTES:
        raise RemoteProtocolError("frame too large")
    r = Reader(frame)
    kind = r.read_varuint()
    msg: Message
    if kind == T.HELLO:
        if r.read_bytes(len(MAGIC)) != MAGIC:
            raise RemoteProtocolError("not a Meshpad peer")
        version = r.read_varuint()
        if version != VERSION:
            older = "this" if version > VERSION else "that"
            raise VersionMismatch(
                f"unsupported protocol version {version} (this peer speaks {VERSION}): upgrade Meshpad on {older} peer"
            )
        peer_id = _fixed(r, PEER_ID_BYTES)
        listen = _bounded_string(r, MAX_ADDRESS_BYTES, "address")
        nonce = r.read_varuint()
        space = _fixed(r, SPACE_ID_BYTES)
        sign_key = _fixed(r, SIGN_KEY_BYTES)
        name = _bounded_string(r, MAX_MEMBER_NAME_BYTES, "name")
        token = r.read_var_bytes()
        if len(token) not in (0, TOKEN_BYTES):
            raise RemoteProtocolError("bad invite token")
        msg = Hello(version, peer_id, listen, nonce, space, sign_key, name, token)
    elif kind == T.PEERS:
        n = r.read_varuint()
        if n > MAX_PEERS_PER_MESSAGE:
            raise RemoteProtocolError("too many peers in one message")
        peers = tuple((_fixed(r, PEER_ID_BYTES), _bounded_string(r, MAX_ADDRESS_BYTES, "address")) for _ in range(n))
        msg = Peers(peers)
    elif kind == T.PING:
        msg = Ping(r.read_varuint())
    elif kind == T.PONG:
        msg = Pong(r.read_varuint())
    elif kind == T.DIGEST:
        root = _fixed(r, HASH_BYTES)
        count = r.read_varuint()
        flags = r.read_u8()
        if flags > 1:
            raise RemoteProtocolError("unknown digest flags")
        msg = Digest(root, count, bool(flags))
    elif kind == T.DOC_DIGESTS:
        n = r.read_varuint()
        if n > MAX_DIGEST_ENTRIES:
            raise RemoteProtocolError("too many documents in one digest")
        msg = DocDigests(tuple((_name(r), _fixed(r, HASH_BYTES)) for _ in range(n)))
    elif kind == T.SYNC_STEP1:
        name = _name(r)
        sv = r.read_var_bytes()
        flags = r.read_u8()
        if flags > 1:
            raise RemoteProtocolError("unknown sync flags")
        msg = SyncStep1(name, sv, bool(flags & 1))
    elif kind == T.SYNC_STEP2:
        msg = SyncStep2(_name(r), r.read_var_bytes())
    elif kind == T.UPDATE:
        msg = Update(_name(r), r.read_var_bytes())
    elif kind == T.AWARENESS:
        msg = Awareness(_name(r), r.read_var_bytes())
    elif kind == T.BYE:
        msg = Bye(_bounded_string(r, MAX_REASON_BYTES, "reason"))
    elif kind == T.IHAVE:
        name = _name(r)
        n = r.read_varuint()
        if n > MAX_IHAVE_RANGES:
            raise RemoteProtocolError("too many ranges in one IHAVE")
        ends = tuple((r.read_varuint(), r.read_varuint()) for _ in range(n))
        m = r.read_varuint()
        if n + m > MAX_IHAVE_RANGES:
            raise RemoteProtocolError("too many ranges in one IHAVE")
        deletes = tuple((r.read_varuint(), r.read_varuint(), r.read_varuint()) for _ in range(m))
        if any(length == 0 for _, _, length in deletes):
            raise RemoteProtocolError("empty delete range in IHAVE")
        msg = IHave(name, ends, deletes)
    elif kind == T.PRUNE:
        msg = Prune()
    elif kind == T.GRAFT:
        n = r.read_varuint()
        if n > MAX_GRAFT_DOCUMENTS:
            raise RemoteProtocolError("too many documents in one GRAFT")
        msg = Graft(tuple((_name(r), r.read_var_bytes()) for _ in range(n)))
    elif kind == T.UNAVAILABLE:
        msg = Unavailable(_name(r), _bounded_string(r, MAX_REASON_BYTES, "reason"))
    elif kind == T.ROSTER:
        n = r.read_varuint()
        if n > MAX_ROSTER_OPS:
            raise RemoteProtocolError("too many roster operations in one message")
        ops = []
        for _ in range(n):
            size = r.read_varuint()
            if size > MAX_ROSTER_OP_BYTES:
                raise RemoteProtocolError("roster operation too large")
            ops.append(r.read_bytes(size))
        msg = Roster(tuple(ops))
    elif kind == T.ROSTER_HEADS:
        n = r.read_varuint()
        if n > MAX_ROSTER_HEADS:
            raise RemoteProtocolError("too many roster heads")
        heads = tuple(_fixed(r, OP_HASH_BYTES) for _ in range(n))
        flags = r.read_u8()
        if flags > 1:
            raise RemoteProtocolError("unknown roster flags")
        msg = RosterHeads(heads, bool(flags))
    elif kind == T.KEYS:
        n = r.read_varuint()
        if n > MAX_KEYS:
            raise RemoteProtocolError("too many keys")
        keys = []
        for _ in range(n):
            epoch = r.read_varuint()
            key_id = r.read_var_bytes()
            if len(key_id) not in (0, OP_HASH_BYTES):
                raise RemoteProtocolError("bad key id")
            keys.append((epoch, key_id, _fixed(r, SPACE_KEY_BYTES)))
        msg = Keys(tuple(keys))
    else:
        raise RemoteProtocolError(f"unknown message type {kind}")
    if not r.at_end():
        raise RemoteProtocolError("trailing bytes after message")
    return msg


def encode(msg: Message) -> bytes:
    w = Writer()
    if isinstance(msg, Hello):
        w.write_varuint(T.HELLO)
        w.write_bytes(MAGIC)
        w.write_varuint(msg.version)
        w.write_bytes(msg.peer_id)
        w.write_var_string(msg.listen)
        w.write_varuint(msg.nonce)
        w.write_bytes(msg.space)
        w.write_bytes(msg.sign_key)
        w.write_var_string(msg.name.encode()[:MAX_MEMBER_NAME_BYTES].decode("utf-8", "ignore"))
        w.write_var_bytes(msg.token)
    elif isinstance(msg, Peers):
        w.write_varuint(T.PEERS)
        w.write_varuint(len(msg.peers))
        for peer_id, address in msg.peers:
            w.write_bytes(peer_id)
            w.write_var_string(address)
    elif isinstance(msg, Ping):
        w.write_varuint(T.PING)
        w.write_varuint(msg.nonce)
    elif isinstance(msg, Pong):
        w.write_varuint(T.PONG)
        w.write_varuint(msg.nonce)
    elif isinstance(msg, Digest):
        w.write_varuint(T.DIGEST)
        w.write_bytes(msg.root)
        w.write_varuint(msg.count)
        w.write_u8(1 if msg.answer else 0)
    elif isinstance(msg, DocDigests):
        w.write_varuint(T.DOC_DIGESTS)
        w.write_varuint(len(msg.entries))
        for name, digest in msg.entries:
            w.write_var_string(name)
            w.write_bytes(digest)
    elif isinstance(msg, SyncStep1):
        w.write_varuint(T.SYNC_STEP1)
        w.write_var_string(msg.name)
        w.write_var_bytes(msg.state_vector)
        w.write_u8(1 if msg.reply_step1 else 0)
    elif isinstance(msg, SyncStep2):
        w.write_varuint(T.SYNC_STEP2)
        w.write_var_string(msg.name)
        w.write_var_bytes(msg.update)
    elif isinstance(msg, Update):
        w.write_varuint(T.UPDATE)
        w.write_var_string(msg.name)
        w.write_var_bytes(msg.update)
    elif isinstance(msg, Awareness):
        w.write_varuint(T.AWARENESS)
        w.write_var_string(msg.name)
        w.write_var_bytes(msg.update)
    elif isinstance(msg, IHave):
        w.write_varuint(T.IHAVE)
        w.write_var_string(msg.name)
        w.write_varuint(len(msg.ends))
        for client, clock in msg.ends:
            w.write_varuint(client)
            w.write_varuint(clock)
        w.write_varuint(len(msg.deletes))
        for client, clock, length in msg.deletes:
            w.write_varuint(client)
            w.write_varuint(clock)
            w.write_varuint(length)
    elif isinstance(msg, Prune):
        w.write_varuint(T.PRUNE)
    elif isinstance(msg, Graft):
        w.write_varuint(T.GRAFT)
        w.write_varuint(len(msg.documents))
        for name, state_vector in msg.documents:
            w.write_var_string(name)
            w.write_var_bytes(state_vector)
    elif isinstance(msg, Unavailable):
        w.write_varuint(T.UNAVAILABLE)
        w.write_var_string(msg.name)
        w.write_var_string(msg.reason.encode()[:MAX_REASON_BYTES].decode("utf-8", "ignore"))
    elif isinstance(msg, Roster):
        w.write_varuint(T.ROSTER)
        w.write_varuint(len(msg.ops))
        for op in msg.ops:
            w.write_var_bytes(op)
    elif isinstance(msg, RosterHeads):
        w.write_varuint(T.ROSTER_HEADS)
        w.write_varuint(len(msg.heads))
        for head in msg.heads:
            w.write_bytes(head)
        w.write_u8(1 if msg.want else 0)
    elif isinstance(msg, Keys):
        w.write_varuint(T.KEYS)
        w.write_varuint(len(msg.keys))
        for epoch, key_id, key in msg.keys:
            w.write_varuint(epoch)
            w.write_var_bytes(key_id)
            w.write_bytes(key)
    elif isinstance(msg, Bye):
        w.write_varuint(T.BYE)
        w.write_var_string(msg.reason.encode()[:MAX_REASON_BYTES].decode("utf-8", "ignore"))
    return w.to_bytes()
