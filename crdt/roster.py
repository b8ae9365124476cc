"""The roster of a space: who is a member, with which role, as a set of
signed operations forming a DAG (each op names the ops it builds on).

Sans-IO: times are passed in, keys and their seeds are passed in, nothing here
reads a clock, a socket or a global random generator. Every member holds the
same op set after gossip and computes the same roster from it, whatever order
the ops arrived in.

Op encoding (lib0 varuints; every field in this order)::

    op   = version u8 (=1) | kind u8 | space_id bytes[16]
           | parent_count varuint (<= 16) | parent_count x hash bytes[32]
           | author peer_id bytes[16] | author_key bytes[32]
           | time varuint (milliseconds since the epoch) | body | signature bytes[64]
    hash      = BLAKE2b(op bytes including the signature, digest_size=32)
    signature = Ed25519 over b"meshpad-roster-v1" + op bytes before the signature

    kind  body
    1 CREATE  name string, member_name string   (no parents; space_id = 16 zero bytes;
              the space's id is BLAKE2b(op bytes, digest_size=16, person=b"meshpad-space"))
    2 CLAIM   member_name string                 (legacy spaces only)
    3 ADD     peer_id bytes[16], key bytes[32], role u8, member_name string
    4 ROLE    peer_id bytes[16], role u8
    5 REMOVE  peer_id bytes[16]
    6 NAME    member_name string
    7 RENAME  name string
    8 SEAL    (no body)                          (legacy spaces: ends CLAIMs)

A string is a varuint byte length and that many bytes of UTF-8. Role codes:
0 admin, 1 writer, 2 reader, 3 relay (holds ciphertext only; reserved for
blind relays: it decodes and replays, but this module does not sign ops that
grant it). A space name follows the document name rule (``crdt/names.py``)
and is at most 64 characters; a member name is at most 64 bytes of UTF-8
without control characters (it may be empty).

Decoding refuses, with :class:`RosterError`: an unknown version or kind, a
length over :data:`MAX_OP_BYTES`, bytes left over, a non-canonical encoding
(an overlong varuint), more than :data:`MAX_PARENTS` or duplicate parents, a
CREATE with parents or a non-zero space id, an op other than CREATE or CLAIM
without parents, a bad signature, a role code over 3, a bad name. A roster
also refuses an op of another space, a CREATE in a legacy space and a CLAIM
in a space that is not legacy.

Replay (the merge rule). An op is *accepted* once all its parents are; until
then it waits (at most :data:`MAX_PENDING` ops wait). The state is computed by
replaying every accepted op in one deterministic topological order: Kahn's
algorithm where, among the ops whose parents have all been replayed, the next
is the smallest by ``(priority, hash)``, with priority REMOVE 0, ROLE 1,
everything else 2: of concurrent ops, removals and role changes come before
what they might invalidate. Each op is applied to the state the ops before it
left, if it is valid at that point:

* its author is a member holding exactly the op's ``author_key`` (a CREATE or
  CLAIM introduces its author's key), and an admin for ADD, ROLE, REMOVE and
  RENAME;
* CREATE makes its author the space's first admin; CLAIM (legacy spaces,
  while *open*: no REMOVE applied yet) makes its author an admin if it is not
  a member yet; SEAL (an admin, legacy spaces) closes a legacy space to
  CLAIMs, as the first REMOVE does;
* ADD needs a target that is not a member (it may have been removed: then it
  is added back); ROLE and REMOVE need a target that is a member; ROLE, NAME
  and RENAME must change something;
* no op may leave the space without an admin (a last admin's demotion or
  removal has no effect). An admin may remove itself ("leave").

An op that is not valid has no effect, but stays in the set: it is signed
history, shown as such by :meth:`Roster.history`. Each applied REMOVE raises
the epoch by one and names the new key epoch (:attr:`Roster.rotation`); the
first seals a legacy space. Consequences: of a concurrent "A removes B" and
"B demotes C", the removal comes first and the demotion has no effect; of two
admins removing each other, exactly one remains.
"""

from __future__ import annotations

import functools
import hashlib
import heapq
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Literal, cast

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from crdt.errors import RemoteProtocolError
from crdt.lib0 import Reader, Writer
from crdt.names import is_valid_name

Role = Literal["admin", "writer", "reader", "relay"]
ROLES: tuple[Role, ...] = ("admin", "writer", "reader", "relay")

VERSION = 1
MAX_OPS = 10_000  # ops per space, accepted and waiting
MAX_OP_BYTES = 1024
MAX_PARENTS = 16
MAX_PENDING = 1024  # ops waiting for their parents
MAX_SPACE_NAME = 64  # characters
MAX_MEMBER_NAME_BYTES = 64
MAX_TIME_MS = 2**53 - 1

PEER_ID_BYTES = 16
KEY_BYTES = 32
HASH_BYTES = 32
SIGNATURE_BYTES = 64
SPACE_ID_BYTES = 16
SIGNING_CONTEXT = b"meshpad-roster-v1"
NO_SPACE = bytes(SPACE_ID_BYTES)

CREATE = 1
CLAIM = 2
ADD = 3
ROLE = 4
REMOVE = 5
NAME = 6
RENAME = 7
SEAL = 8
KIND_NAMES = {
    CREATE: "create",
    CLAIM: "claim",
    ADD: "add",
    ROLE: "role",
    REMOVE: "remove",
    NAME: "name",
    RENAME: "rename",
    SEAL: "seal",
}
_PRIORITY = {REMOVE: 0, ROLE: 1}


class RosterError(RemoteProtocolError):
    """An op that cannot be taken: bad encoding or signature, another space,
    over a limit; or, from a ``sign_*`` helper, an op the signer may not
    make now. The roster is left as it was."""


@dataclass(frozen=True, slots=True)
class Member:
    peer_id: bytes
    sign_pub: bytes  # the member's Ed25519 public key
    role: Role
    name: str  # the name the member goes by
    since: float  # time of the op that made it a member (seconds since the epoch)


@dataclass(frozen=True, slots=True)
class Op:
    hash: bytes
    kind: int
    space_id: bytes
    parents: tuple[bytes, ...]
    author: bytes
    author_key: bytes
    time: float  # seconds since the epoch (milliseconds on the wire)
    target: bytes = b""  # ADD, ROLE, REMOVE: the member's peer id
    target_key: bytes = b""  # ADD: the member's Ed25519 public key
    role: Role | None = None  # ADD, ROLE
    name: str = ""  # CREATE, RENAME: the space name
    member_name: str = ""  # CREATE, CLAIM, ADD, NAME
    raw: bytes = field(default=b"", repr=False)


def new_signing_key(seed: bytes) -> bytes:
    """The raw Ed25519 private key made from 32 random bytes passed in."""
    if len(seed) != KEY_BYTES:
        raise ValueError("a signing key is made from 32 random bytes")
    Ed25519PrivateKey.from_private_bytes(seed)
    return bytes(seed)


def legacy_space_id(network_psk: bytes) -> bytes:
    """The id of the space a pre-spaces network (its key) becomes."""
    return hashlib.blake2b(network_psk, digest_size=SPACE_ID_BYTES, person=b"meshpad-legacy").digest()


def space_id_of(create_raw: bytes) -> bytes:
    return hashlib.blake2b(create_raw, digest_size=SPACE_ID_BYTES, person=b"meshpad-space").digest()


class Signer:
    """A member's signing identity: its Ed25519 key and its peer id."""

    def __init__(self, private_key: bytes, peer_id: bytes) -> None:
        if len(private_key) != KEY_BYTES or len(peer_id) != PEER_ID_BYTES:
            raise ValueError("a signer takes a 32-byte Ed25519 private key and a 16-byte peer id")
        self._key = Ed25519PrivateKey.from_private_bytes(private_key)
        self.peer_id = bytes(peer_id)
        self._public = self._key.public_key().public_bytes_raw()

    @property
    def public_key(self) -> bytes:
        return self._public

    def sign(self, message: bytes) -> bytes:
        return self._key.sign(message)


# -- encoding ------------------------------------------------------------------


def _check_member_name(name: object) -> str:
    if not isinstance(name, str):
        raise RosterError("a member name is a string")
    try:
        size = len(name.encode("utf-8"))
    except UnicodeEncodeError as exc:
        raise RosterError("a member name is not valid Unicode") from exc
    if size > MAX_MEMBER_NAME_BYTES:
        raise RosterError(f"a member name is at most {MAX_MEMBER_NAME_BYTES} bytes of UTF-8")
    if any(unicodedata.category(c) == "Cc" for c in name):
        raise RosterError("a member name has no control characters")
    return name


def _check_space_name(name: object) -> str:
    if not (isinstance(name, str) and len(name) <= MAX_SPACE_NAME and is_valid_name(name)):
        raise RosterError(
            f"invalid space name {name!r}: 1 to {MAX_SPACE_NAME} letters A-Z a-z, digits, '-', '_' or '.', "
            "not starting with '.'"
        )
    return name


def _encode_unsigned(op: Op, ms: int) -> bytes:
    w = Writer()
    w.write_u8(VERSION)
    w.write_u8(op.kind)
    w.write_bytes(op.space_id)
    w.write_varuint(len(op.parents))
    for parent in op.parents:
        w.write_bytes(parent)
    w.write_bytes(op.author)
    w.write_bytes(op.author_key)
    w.write_varuint(ms)
    kind = op.kind
    if kind == CREATE:
        w.write_var_string(op.name)
        w.write_var_string(op.member_name)
    elif kind in (CLAIM, NAME):
        w.write_var_string(op.member_name)
    elif kind == ADD:
        w.write_bytes(op.target)
        w.write_bytes(op.target_key)
        w.write_u8(ROLES.index(cast(Role, op.role)))
        w.write_var_string(op.member_name)
    elif kind == ROLE:
        w.write_bytes(op.target)
        w.write_u8(ROLES.index(cast(Role, op.role)))
    elif kind == REMOVE:
        w.write_bytes(op.target)
    elif kind != SEAL:
        w.write_var_string(op.name)
    return w.to_bytes()


@functools.lru_cache(maxsize=1024)
def _public_key(raw: bytes) -> Ed25519PublicKey:
    return Ed25519PublicKey.from_public_bytes(raw)


def _read_role(r: Reader) -> Role:
    code = r.read_u8()
    if code >= len(ROLES):
        raise RosterError(f"unknown role code {code}")
    return ROLES[code]


def decode_op(raw: bytes) -> Op:
    """Decode one op and check its signature. Raises :class:`RosterError`
    for anything malformed; checks nothing that needs a roster."""
    if not isinstance(raw, (bytes, bytearray)):
        raise RosterError("an op is bytes")
    raw = bytes(raw)
    if len(raw) > MAX_OP_BYTES:
        raise RosterError(f"op of {len(raw)} bytes, over the limit of {MAX_OP_BYTES}")
    if len(raw) < SIGNATURE_BYTES + 2:
        raise RosterError("op too short")
    signed, signature = raw[:-SIGNATURE_BYTES], raw[-SIGNATURE_BYTES:]
    try:
        op, ms = _decode_fields(signed)
    except RosterError:
        raise
    except RemoteProtocolError as exc:
        raise RosterError(f"malformed op: {exc}") from exc
    if _encode_unsigned(op, ms) != signed:
        raise RosterError("op not canonically encoded")
    try:
        _public_key(op.author_key).verify(signature, SIGNING_CONTEXT + signed)
    except (InvalidSignature, ValueError) as exc:
        raise RosterError("bad op signature") from exc
    return _with_hash(op, raw)


def _with_hash(op: Op, raw: bytes) -> Op:
    digest = hashlib.blake2b(raw, digest_size=HASH_BYTES).digest()
    return Op(
        digest,
        op.kind,
        op.space_id,
        op.parents,
        op.author,
        op.author_key,
        op.time,
        op.target,
        op.target_key,
        op.role,
        op.name,
        op.member_name,
        raw,
    )


def _decode_fields(signed: bytes) -> tuple[Op, int]:
    r = Reader(signed)
    version = r.read_u8()
    if version != VERSION:
        raise RosterError(f"unknown roster op version {version}")
    kind = r.read_u8()
    if kind not in KIND_NAMES:
        raise RosterError(f"unknown roster op kind {kind}")
    space_id = r.read_bytes(SPACE_ID_BYTES)
    count = r.read_varuint()
    if count > MAX_PARENTS:
        raise RosterError(f"{count} parents, over the limit of {MAX_PARENTS}")
    parents = tuple(r.read_bytes(HASH_BYTES) for _ in range(count))
    if len(set(parents)) != len(parents):
        raise RosterError("duplicate parents")
    if kind == CREATE and (parents or space_id != NO_SPACE):
        raise RosterError("a CREATE has no parents and a zero space id")
    if kind not in (CREATE, CLAIM) and not parents:
        raise RosterError(f"a {KIND_NAMES[kind].upper()} names at least one parent")
    author = r.read_bytes(PEER_ID_BYTES)
    author_key = r.read_bytes(KEY_BYTES)
    ms = r.read_varuint()
    if ms > MAX_TIME_MS:
        raise RosterError("op time out of range")
    target = target_key = b""
    role: Role | None = None
    name = member_name = ""
    if kind == CREATE:
        name = _check_space_name(r.read_var_string())
        member_name = _check_member_name(r.read_var_string())
    elif kind in (CLAIM, NAME):
        member_name = _check_member_name(r.read_var_string())
    elif kind == ADD:
        target = r.read_bytes(PEER_ID_BYTES)
        target_key = r.read_bytes(KEY_BYTES)
        role = _read_role(r)
        member_name = _check_member_name(r.read_var_string())
    elif kind == ROLE:
        target = r.read_bytes(PEER_ID_BYTES)
        role = _read_role(r)
    elif kind == REMOVE:
        target = r.read_bytes(PEER_ID_BYTES)
    elif kind != SEAL:
        name = _check_space_name(r.read_var_string())
    if not r.at_end():
        raise RosterError("bytes left over after the op")
    op = Op(b"", kind, space_id, parents, author, author_key, ms / 1000, target, target_key, role, name, member_name)
    return op, ms


def _sign_op(signer: Signer, kind: int, space_id: bytes, parents: Iterable[bytes], now: float, **body: object) -> bytes:
    try:
        ms = round(now * 1000)
    except (ValueError, OverflowError) as exc:  # NaN, infinity
        raise RosterError("time out of range") from exc
    if not 0 <= ms <= MAX_TIME_MS:
        raise RosterError("time out of range")
    op = Op(b"", kind, space_id, tuple(parents), signer.peer_id, signer.public_key, ms / 1000, **body)  # type: ignore[arg-type]
    signed = _encode_unsigned(op, ms)
    raw = signed + signer.sign(SIGNING_CONTEXT + signed)
    if len(raw) > MAX_OP_BYTES:  # pragma: no cover - names are bounded far below
        raise RosterError("op over the size limit")
    return raw


# -- state ----------------------------------------------------------------------


class _State:
    """The roster state at one point of the replay."""

    __slots__ = ("admins", "epoch", "legacy", "members", "name", "removed", "rotation", "sealed")

    def __init__(self, legacy: bool) -> None:
        self.legacy = legacy
        self.name = ""
        self.members: dict[bytes, Member] = {}
        self.removed: set[bytes] = set()
        self.epoch = 0
        self.rotation = b""
        self.admins = 0
        self.sealed = False

    def why_not(self, op: Op) -> str | None:
        """Why *op* would have no effect here, or None if it would apply."""
        kind = op.kind
        if kind == CREATE:
            return "the space already exists" if self.members or self.epoch else None
        if kind == CLAIM:
            if not self.legacy:
                return "only a legacy space is claimed"
            if self.epoch or self.sealed:
                return "the space is sealed"
            if op.author in self.members:
                return "already a member"
            return None
        author = self.members.get(op.author)
        if author is None:
            return "the author is not a member"
        if author.sign_pub != op.author_key:
            return "the op is not signed with the member's key"
        if kind == NAME:
            return "that is already the member's name" if op.member_name == author.name else None
        if author.role != "admin":
            return "the author is not an admin"
        if kind == RENAME:
            return "that is already the space's name" if op.name == self.name else None
        if kind == SEAL:
            return None if self.legacy and not self.sealed and not self.epoch else "the space is not open"
        target = self.members.get(op.target)
        if kind == ADD:
            return "already a member" if target is not None else None
        if target is None:
            return "the target is not a member"
        if kind == ROLE:
            if op.role == target.role:
                return f"already {'an' if target.role == 'admin' else 'a'} {target.role}"
            if target.role == "admin" and self.admins == 1:
                return "the space would have no admin"
            return None
        # REMOVE
        if target.role == "admin" and self.admins == 1:
            return "the space would have no admin"
        return None

    def apply(self, op: Op) -> bool:
        if self.why_not(op) is not None:
            return False
        kind = op.kind
        if kind in (CREATE, CLAIM):
            self.members[op.author] = Member(op.author, op.author_key, "admin", op.member_name, op.time)
            self.admins += 1
            if kind == CREATE:
                self.name = op.name
        elif kind == ADD:
            role = cast(Role, op.role)
            self.members[op.target] = Member(op.target, op.target_key, role, op.member_name, op.time)
            self.removed.discard(op.target)
            self.admins += role == "admin"
        elif kind == ROLE:
            old = self.members[op.target]
            role = cast(Role, op.role)
            self.members[op.target] = Member(old.peer_id, old.sign_pub, role, old.name, old.since)
            self.admins += (role == "admin") - (old.role == "admin")
        elif kind == REMOVE:
            old = self.members.pop(op.target)
            self.admins -= old.role == "admin"
            self.removed.add(op.target)
            self.epoch += 1
            self.rotation = op.hash
        elif kind == SEAL:
            self.sealed = True
        elif kind == NAME:
            old = self.members[op.author]
            self.members[op.author] = Member(old.peer_id, old.sign_pub, old.role, op.member_name, old.since)
        else:
            self.name = op.name
        return True


def _replay(ops: dict[bytes, Op], legacy: bool) -> tuple[_State, list[bytes], list[bool]]:
    """Replay every op of *ops* (all parents present) in the deterministic
    order; returns the state, the order and each op's effect.

    In a legacy space, a CLAIM counts only if it is an ancestor of the op that
    sealed the space (the first SEAL or REMOVE that took effect): a claim made
    without knowing of the seal, however it sorts, has no effect."""
    state, order, effects = _replay_once(ops, legacy, frozenset())
    if not legacy:
        return state, order, effects
    seal = next((h for h, e in zip(order, effects, strict=True) if e and ops[h].kind in (SEAL, REMOVE)), None)
    if seal is None:
        return state, order, effects
    before = _ancestors(ops, seal)
    late = frozenset(h for h, e in zip(order, effects, strict=True) if e and ops[h].kind == CLAIM and h not in before)
    return _replay_once(ops, legacy, late) if late else (state, order, effects)


def _ancestors(ops: dict[bytes, Op], start: bytes) -> set[bytes]:
    seen: set[bytes] = set()
    stack = list(ops[start].parents)
    while stack:
        h = stack.pop()
        if h not in seen:
            seen.add(h)
            stack.extend(ops[h].parents)
    return seen


def _replay_once(ops: dict[bytes, Op], legacy: bool, void: frozenset[bytes]) -> tuple[_State, list[bytes], list[bool]]:
    children: dict[bytes, list[bytes]] = {}
    waiting: dict[bytes, int] = {}
    ready: list[tuple[int, bytes]] = []
    for h, op in ops.items():
        waiting[h] = len(op.parents)
        if not op.parents:
            ready.append((_PRIORITY.get(op.kind, 2), h))
        for p in op.parents:
            children.setdefault(p, []).append(h)
    heapq.heapify(ready)
    state = _State(legacy)
    order: list[bytes] = []
    effects: list[bool] = []
    while ready:
        _, h = heapq.heappop(ready)
        order.append(h)
        effects.append(h not in void and state.apply(ops[h]))
        for child in children.get(h, ()):
            waiting[child] -= 1
            if waiting[child] == 0:
                heapq.heappush(ready, (_PRIORITY.get(ops[child].kind, 2), child))
    return state, order, effects


class Roster:
    """The roster of one space: its accepted ops, the ops waiting for
    parents, and the state their replay gives."""

    def __init__(self, space_id: bytes, *, legacy: bool = False) -> None:
        if len(space_id) != SPACE_ID_BYTES:
            raise ValueError("a space id is 16 bytes")
        self.space_id = bytes(space_id)
        self.legacy = legacy
        self._ops: dict[bytes, Op] = {}
        self._heads: set[bytes] = set()
        self._pending: dict[bytes, Op] = {}
        self._missing: dict[bytes, int] = {}  # pending op -> parents not accepted yet
        self._waiters: dict[bytes, list[bytes]] = {}  # missing parent -> pending ops naming it
        self._state = _State(legacy)
        self._order: list[bytes] = []
        self._effects: list[bool] = []
        self._dirty = False  # the order must be computed anew
        self._sorted_heads: list[bytes] | None = []

    @classmethod
    def create(cls, signer: Signer, name: str, member_name: str, now: float) -> tuple[Roster, bytes]:
        """A new space with *signer* its admin: the roster and its CREATE op."""
        raw = _sign_op(
            signer,
            CREATE,
            NO_SPACE,
            (),
            now,
            name=_check_space_name(name),
            member_name=_check_member_name(member_name),
        )
        roster = cls(space_id_of(raw))
        roster.receive(raw)
        return roster, raw

    # -- receiving --------------------------------------------------------------

    def receive(self, raw: bytes) -> list[bytes]:
        """Verify and take one op. Returns the hashes of the ops newly
        accepted (this one and the waiting ops it released, parents first);
        [] if it was known or waits for parents. Raises :class:`RosterError`
        for an invalid op, and then changes nothing."""
        return self.receive_many([raw])

    def receive_many(self, raws: list[bytes]) -> list[bytes]:
        """:meth:`receive` for each op in turn, replaying once at the end.
        An invalid op raises; the ops before it stay taken."""
        accepted: list[bytes] = []
        try:
            for raw in raws:
                self._take(self._check(raw), accepted)
        finally:
            self._settle()
        return accepted

    def _check(self, raw: bytes) -> Op:
        op = decode_op(raw)
        if op.kind == CREATE:
            if self.legacy:
                raise RosterError("a legacy space has no CREATE")
            if space_id_of(op.raw) != self.space_id:
                raise RosterError("the CREATE of another space")
        else:
            if op.space_id != self.space_id:
                raise RosterError("an op of another space")
            if op.kind == CLAIM and not self.legacy:
                raise RosterError("a CLAIM in a space that is not legacy")
        return op

    def _take(self, op: Op, accepted: list[bytes]) -> None:
        h = op.hash
        if h in self._ops or h in self._pending:
            return
        if len(self._ops) + len(self._pending) >= MAX_OPS:
            raise RosterError(f"the space has {MAX_OPS} ops, the limit")
        missing = [p for p in op.parents if p not in self._ops]
        if missing:
            if len(self._pending) >= MAX_PENDING:
                raise RosterError(f"{MAX_PENDING} ops already wait for their parents")
            self._pending[h] = op
            self._missing[h] = len(missing)
            for p in missing:
                self._waiters.setdefault(p, []).append(h)
            return
        stack = [op]
        while stack:
            current = stack.pop()
            self._accept(current)
            accepted.append(current.hash)
            for waiter in reversed(self._waiters.pop(current.hash, [])):
                self._missing[waiter] -= 1
                if self._missing[waiter] == 0:
                    del self._missing[waiter]
                    stack.append(self._pending.pop(waiter))

    def _accept(self, op: Op) -> None:
        # An op that names every head descends from every accepted op, so the
        # replay order puts it last: it is applied to the state as it is.
        # Otherwise the whole order is computed anew (in _settle).
        appended = not self._dirty and self._heads.issubset(op.parents)
        self._ops[op.hash] = op
        self._heads.difference_update(op.parents)
        self._heads.add(op.hash)
        self._sorted_heads = None
        if appended:
            self._order.append(op.hash)
            self._effects.append(self._state.apply(op))
        else:
            self._dirty = True

    def _settle(self) -> None:
        if self._dirty:
            self._state, self._order, self._effects = _replay(self._ops, self.legacy)
            self._dirty = False

    # -- signing ----------------------------------------------------------------

    def _sign(self, signer: Signer, kind: int, now: float, **body: object) -> bytes:
        heads = self.heads
        parents = heads[:MAX_PARENTS]
        raw = _sign_op(signer, kind, self.space_id, parents, now, **body)
        op = self._check(raw)
        if op.hash in self._ops or op.hash in self._pending:
            raise RosterError("that op exists already")
        if len(self._ops) + len(self._pending) >= MAX_OPS:
            raise RosterError(f"the space has {MAX_OPS} ops, the limit")
        reason = self._state.why_not(op)
        if reason is not None:
            raise RosterError(reason)
        if len(heads) > MAX_PARENTS:
            # The op cannot name every head, so concurrent ops may be replayed
            # after it: check its effect in the whole new order first.
            ops = {**self._ops, op.hash: op}
            state, order, effects = _replay(ops, self.legacy)
            if not effects[order.index(op.hash)]:
                raise RosterError("the op would have no effect after concurrent ops")
            self._take(op, [])
            self._state, self._order, self._effects, self._dirty = state, order, effects, False
        else:
            self._take(op, [])
            self._settle()
        return raw

    def _member_signer(self, signer: Signer) -> None:
        me = self._state.members.get(signer.peer_id)
        if me is not None and me.sign_pub != signer.public_key:
            raise RosterError("the signer's key is not the one this member holds")

    def sign_claim(self, signer: Signer, member_name: str, now: float) -> bytes:
        """Claim admin in an open legacy space."""
        return self._sign(signer, CLAIM, now, member_name=_check_member_name(member_name))

    def sign_add(self, signer: Signer, peer_id: bytes, key: bytes, role: Role, member_name: str, now: float) -> bytes:
        self._member_signer(signer)
        if len(peer_id) != PEER_ID_BYTES or len(key) != KEY_BYTES:
            raise RosterError("a member is a 16-byte peer id and a 32-byte Ed25519 key")
        return self._sign(
            signer,
            ADD,
            now,
            target=bytes(peer_id),
            target_key=bytes(key),
            role=_grantable(role),
            member_name=_check_member_name(member_name),
        )

    def sign_role(self, signer: Signer, peer_id: bytes, role: Role, now: float) -> bytes:
        self._member_signer(signer)
        return self._sign(signer, ROLE, now, target=_peer_id(peer_id), role=_grantable(role))

    def sign_remove(self, signer: Signer, peer_id: bytes, now: float) -> bytes:
        self._member_signer(signer)
        return self._sign(signer, REMOVE, now, target=_peer_id(peer_id))

    def sign_name(self, signer: Signer, member_name: str, now: float) -> bytes:
        self._member_signer(signer)
        return self._sign(signer, NAME, now, member_name=_check_member_name(member_name))

    def sign_seal(self, signer: Signer, now: float) -> bytes:
        """Close an open legacy space to CLAIMs."""
        self._member_signer(signer)
        return self._sign(signer, SEAL, now)

    def sign_rename(self, signer: Signer, name: str, now: float) -> bytes:
        self._member_signer(signer)
        return self._sign(signer, RENAME, now, name=_check_space_name(name))

    # -- state ------------------------------------------------------------------

    @property
    def name(self) -> str:
        """The space name ("" for a legacy space until a RENAME)."""
        return self._state.name

    @property
    def members(self) -> dict[bytes, Member]:
        return dict(self._state.members)

    def role(self, peer_id: bytes) -> Role | None:
        member = self._state.members.get(peer_id)
        return None if member is None else member.role

    @property
    def removed(self) -> frozenset[bytes]:
        """Peer ids removed and not added back."""
        return frozenset(self._state.removed)

    @property
    def open(self) -> bool:
        """A legacy space that no REMOVE has sealed yet: CLAIMs still count."""
        return self.legacy and self._state.epoch == 0 and not self._state.sealed

    @property
    def epoch(self) -> int:
        """The number of REMOVE ops applied."""
        return self._state.epoch

    @property
    def rotation(self) -> bytes:
        """The hash of the last applied REMOVE (b"" if none): the key epoch."""
        return self._state.rotation

    @property
    def heads(self) -> list[bytes]:
        if self._sorted_heads is None:
            self._sorted_heads = sorted(self._heads)
        return list(self._sorted_heads)

    @property
    def digest(self) -> bytes:
        """BLAKE2b-16 over the sorted heads: equal digests, equal op sets."""
        return hashlib.blake2b(b"".join(self.heads), digest_size=16).digest()

    @property
    def pending(self) -> int:
        return len(self._pending)

    def __contains__(self, op_hash: object) -> bool:
        return op_hash in self._ops

    def __len__(self) -> int:
        return len(self._ops)

    def ops(self) -> list[bytes]:
        """Every accepted op's bytes, in replay order (parents first)."""
        return [self._ops[h].raw for h in self._order]

    def ops_since(self, heads: list[bytes]) -> list[bytes]:
        """The accepted ops that are neither the given heads nor their
        ancestors (unknown hashes are ignored), parents first: what a peer
        that reported those heads lacks."""
        seen: set[bytes] = set()
        stack = [h for h in heads if h in self._ops]
        while stack:
            h = stack.pop()
            if h in seen:
                continue
            seen.add(h)
            stack.extend(self._ops[h].parents)
        return [self._ops[h].raw for h in self._order if h not in seen]

    def history(self) -> list[tuple[Op, bool]]:
        """Every accepted op in replay order, with whether it took effect."""
        return [(self._ops[h], effect) for h, effect in zip(self._order, self._effects, strict=True)]


def _peer_id(peer_id: bytes) -> bytes:
    if len(peer_id) != PEER_ID_BYTES:
        raise RosterError("a peer id is 16 bytes")
    return bytes(peer_id)


def _grantable(role: object) -> Role:
    if role not in ROLES:
        raise RosterError(f"unknown role {role!r}: one of admin, writer, reader")
    if role == "relay":
        raise RosterError("the relay role is not supported yet")
    return cast(Role, role)
