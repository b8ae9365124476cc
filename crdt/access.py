"""Who may do what on a space's links, sans-IO: the roster, the space's
keys and its invites, checked where peer input enters (``crdt.node``).

A node replicates one space. Every link of it is for that space: the Noise
handshake used one of the space's keys (``crdt.secure``), and HELLO names the
space, the peer's signing key and name, and maybe an invite's token. Here:

* **Admission** (:meth:`Access.admit`, at HELLO): a link is kept when its
  peer (the one the channel authenticated) is a member of the roster; or
  presents a valid, unexpired invite token that this peer issued (this peer
  then signs the ADD); or the space is a legacy space still open to every
  holder of its network key; or this peer is joining (its roster is empty) and
  dialled the link itself. Anything else is closed with a reason a person
  reads (``not a member of this space``, ``removed from this space``), not
  as a protocol error: it is not a strike.
* **Rights** (:meth:`Access.may_write`): changes (UPDATE, SYNC_STEP2) are
  taken from writers and admins only. A reader's are dropped and counted, on
  every link, so a reader's edit can enter no replica: every peer applies
  only what came from a writer's link or its own writer's browser, and
  forwards only what it applied, so by induction on the order changes were
  applied every change in any replica was authored on a writer's peer. A
  reader's own peer does not push on links to writers (they would drop it).
* **The roster** (``crdt.roster``) spreads by flooding: each new op goes on
  every link; ROSTER_HEADS on every new link and every ``ROSTER_PERIOD``
  to one link repairs what a flood missed. A change that removes or demotes
  a peer closes or re-checks its links at once.
* **Keys**: every REMOVE starts a new key epoch; the admin who removed sends
  the new key to the members on its links, and they pass it on (KEYS goes only
  to links whose peer is a member now). Old keys are kept so a member that
  was away can still connect and catch up; the roster, not the key, is what
  refuses a removed peer.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable
from dataclasses import dataclass, field

from crdt import peerwire as pw
from crdt import roster as rs
from crdt.effects import CloseLink, Effect, InviteUsed, KeysChanged, LinkId, Refused, RosterChanged
from crdt.links import Link, Links

# Seconds between two unprompted ROSTER_HEADS (to one random link).
ROSTER_PERIOD = 30.0
# Invites a space keeps (issued, unused, unexpired).
MAX_INVITES = 1024


def op_digest(raw: bytes) -> bytes:
    """A roster op's hash (``crdt.roster``)."""
    return hashlib.blake2b(raw, digest_size=32).digest()


def token_hash(token: bytes) -> bytes:
    """What a peer keeps of an invite it issued: never the token itself."""
    return hashlib.blake2b(token, digest_size=16, person=b"meshpad-invite").digest()


@dataclass(frozen=True, slots=True)
class Invite:
    role: rs.Role
    expires: float  # wall-clock seconds


@dataclass(frozen=True, slots=True)
class SpaceKey:
    epoch: int
    key_id: bytes  # the REMOVE op that started the epoch (b"" for the first)
    key: bytes  # 32 bytes, the Noise pre-shared key


@dataclass
class Access:
    roster: rs.Roster
    signer: rs.Signer
    member_name: str
    wall: Callable[[], float]
    keys: dict[bytes, SpaceKey] = field(default_factory=dict)
    invites: dict[bytes, Invite] = field(default_factory=dict)
    token: bytes = b""  # ours, when joining with an invite: sent in HELLO on links we dial
    refused: dict[str, int] = field(default_factory=dict)
    _next_heads: float | None = None

    def __post_init__(self) -> None:
        self.table: Links | None = None
        self.rng: random.Random | None = None
        self._by_hash: dict[bytes, bytes] = {}
        self.forget_peer: Callable[[bytes], None] = lambda peer_id: None  # crdt.node: drop it from known peers

    def bind(self, table: Links, rng: random.Random) -> None:
        self.table = table
        self.rng = rng
        table.hello_fields = self.hello_fields

    # -- what we are --------------------------------------------------------------

    @property
    def me(self) -> bytes:
        return self.signer.peer_id

    @property
    def joining(self) -> bool:
        return len(self.roster) == 0

    @property
    def my_role(self) -> rs.Role | None:
        """This peer's role (None while joining: it may change nothing yet)."""
        return None if self.joining else self.role_of(self.me)

    def role_of(self, peer_id: bytes | None) -> rs.Role | None:
        if peer_id is None:
            return None
        role = self.roster.role(peer_id)
        if role is None and (self.roster.open or self.joining) and peer_id not in self.roster.removed:
            return "writer"  # open legacy space: every key holder writes, as before spaces
        return role

    def current_key(self) -> SpaceKey | None:
        """The key links are dialled with: the one of the roster's epoch,
        else the newest this peer holds."""
        key = self.keys.get(self.roster.rotation)
        if key is not None:
            return key
        return max(self.keys.values(), key=lambda k: k.epoch, default=None)

    def hello_fields(self, link: Link) -> dict[str, object]:
        return {
            "space": self.roster.space_id,
            "sign_key": self.signer.public_key,
            "name": self.member_name,
            "token": self.token if (link.outbound and self.token and self.roster.role(self.me) is None) else b"",
        }

    # -- links ---------------------------------------------------------------

    def admit(self, link: Link, hello: pw.Hello, now: float) -> tuple[bool, list[Effect]]:
        """At HELLO: keep the link? (False: the effects close it.)"""
        peer = link.remote_id or hello.peer_id
        if self.me in self.roster.removed and (hello.space != self.roster.space_id or self.roster.role(peer) is None):
            # Removed: this peer takes nothing more of the space, from anyone
            # (may_write). A member's link is still kept, for the roster: a
            # concurrent op may void the removal (its author removed first),
            # and this peer learns it there, or it would be cut off for good.
            return False, [self._refuse(link, peer, "link", "that peer was removed from this space")]
        if hello.space != self.roster.space_id:
            return False, [self._refuse(link, peer, "link", "protocol error: this link is for another space")]
        if self.roster.role(peer) is not None:
            return True, []
        if peer in self.roster.removed and not hello.token:
            return False, [self._refuse(link, peer, "link", "removed from this space")]
        if hello.token:
            found = self._redeem(peer, hello, now)
            if found is not None:
                return True, found
            return False, [self._refuse(link, peer, "link", "the invite is not valid here (used, expired or unknown)")]
        if self.roster.open:
            return True, []
        if self.joining and link.outbound:
            return True, []
        return False, [self._refuse(link, peer, "link", "not a member of this space")]

    def _redeem(self, peer: bytes, hello: pw.Hello, now: float) -> list[Effect] | None:
        digest = token_hash(hello.token)
        invite = self.invites.get(digest)
        if invite is None or invite.expires < self.wall() or self.my_role != "admin":
            return None
        try:
            op = self.roster.sign_add(self.signer, peer, hello.sign_key, invite.role, hello.name, self.wall())
        except rs.RosterError:
            return None
        del self.invites[digest]
        return [InviteUsed(digest, peer), RosterChanged((op,)), *self._flood((op,), None, now)]

    def on_hello(self, link: Link, now: float) -> list[Effect]:
        """A link is ready: tell it our roster heads, and our keys if it is a member."""
        effects: list[Effect] = [self._send(link, pw.RosterHeads(tuple(self.roster.heads[: pw.MAX_ROSTER_HEADS])), now)]
        return effects + self._keys_to(link, now)

    def _keys_to(self, link: Link, now: float) -> list[Effect]:
        if not self.keys or self.roster.role(link.peer_id or b"") is None:
            return []
        # Only keys the wire carries (an id that is empty or an op hash): one the
        # shell keeps under an id of its own stays here, as a peer would refuse it.
        keys = tuple(
            (k.epoch, k.key_id, k.key)
            for k in sorted(self.keys.values(), key=lambda k: k.epoch)
            if len(k.key_id) in (0, pw.OP_HASH_BYTES) and len(k.key) == pw.SPACE_KEY_BYTES
        )
        if not keys:
            return []
        return [self._send(link, pw.Keys(keys[-pw.MAX_KEYS :]), now)]

    # -- rights ---------------------------------------------------------------

    def may_write(self, link: Link) -> bool:
        if self.me in self.roster.removed:
            return False  # removed here: no change is taken from anyone
        return self.role_of(link.peer_id) in ("admin", "writer")

    def takes_pushes(self, link: Link) -> bool:
        """Whether changes pushed on *link* would be taken: a reader's peer
        pushes to readers only."""
        if self.my_role in ("admin", "writer") or self.joining:
            return True
        return self.role_of(link.peer_id) not in ("admin", "writer")

    def refuse_edit(self, link: Link, kind: str) -> list[Effect]:
        return [Refused(link.peer_id or b"", "edit", f"{kind} from a reader")]

    # -- roster messages -------------------------------------------------------------

    def on_roster(self, link: Link, msg: pw.Roster, now: float) -> list[Effect]:
        before = self._rights()
        heads, count = self.roster.heads, len(self.roster)
        refused: list[Effect] = []
        try:
            raw = tuple(self._raw(h) for h in self.roster.receive_many(list(msg.ops)))
        except rs.RosterError as exc:
            self.count("roster")
            # What came before the bad op is kept (each verified alone): it is
            # stored and passed on like any new op (the ops that are not the old
            # heads' ancestors, parents first); the link goes.
            raw = tuple(self.roster.ops_since(heads)) if len(self.roster) != count else ()
            refused = [Refused(link.peer_id or b"", "roster", str(exc)), CloseLink(link.id, f"protocol error: {exc}")]
        if not raw:
            return refused
        return [RosterChanged(raw), *self._flood(raw, link.id, now), *self._after_change(before, now), *refused]

    def on_heads(self, link: Link, msg: pw.RosterHeads, now: float) -> list[Effect]:
        effects: list[Effect] = []
        missing = self.roster.ops_since(list(msg.heads))
        if missing:
            for start in range(0, len(missing), pw.MAX_ROSTER_OPS):
                effects.append(self._send(link, pw.Roster(tuple(missing[start : start + pw.MAX_ROSTER_OPS])), now))
        if not msg.want and any(h not in self.roster for h in msg.heads):
            effects.append(self._send(link, pw.RosterHeads(tuple(self.roster.heads[: pw.MAX_ROSTER_HEADS]), True), now))
        if missing:  # after the ops: the keys of the epochs they may start
            effects += self._keys_to(link, now)
        return effects

    def on_keys(self, link: Link, msg: pw.Keys, now: float) -> list[Effect]:
        """A member's keys: taken only for an epoch the roster holds (the id is
        an applied REMOVE; the epoch is the roster's count of them), so what a
        member sends cannot grow the keys (each tried at every inbound
        handshake) past the roster's epochs. A key for a REMOVE not held yet
        is asked for again: our heads (want) bring the op, then the key."""
        if self.roster.role(link.peer_id or b"") not in ("admin", "writer"):
            return []  # a reader's keys are not taken: it could plant a false one
        unknown = [i for _, i, _ in msg.keys if i not in self.keys]
        if not unknown:
            return []
        epochs: dict[bytes, int] = {}
        for op, applied in self.roster.history():
            if applied and op.kind == rs.REMOVE:
                epochs[op.hash] = len(epochs) + 1
        fresh = [SpaceKey(epochs[i], i, k) for _, i, k in msg.keys if i not in self.keys and i in epochs]
        if not fresh:
            heads = tuple(self.roster.heads[: pw.MAX_ROSTER_HEADS])
            return [self._send(link, pw.RosterHeads(heads, True), now)]
        for key in fresh:
            self.keys[key.key_id] = key
        effects: list[Effect] = [KeysChanged(tuple(self.keys.values()))]
        for other in self._table.ready():
            if other.id != link.id:
                effects += self._keys_to(other, now)
        return effects

    # -- local changes -------------------------------------------------------------

    def signed(self, ops: tuple[bytes, ...], now: float, new_key: SpaceKey | None = None) -> list[Effect]:
        """Ops signed here (already in the roster): store, flood, enforce."""
        effects: list[Effect] = []
        if new_key is not None:
            # The key is stored before the op that starts its epoch: a crash
            # between the two must not leave an epoch whose key nobody has.
            self.keys[new_key.key_id] = new_key
            effects.append(KeysChanged(tuple(self.keys.values())))
        effects.append(RosterChanged(ops))
        effects += self._flood(ops, None, now)
        effects += self._after_change(None, now)
        if new_key is not None:
            for link in self._table.ready():
                effects += self._keys_to(link, now)
        return effects

    def _rights(self) -> dict[bytes, rs.Role | None]:
        return {link.peer_id: self.role_of(link.peer_id) for link in self._table.ready() if link.peer_id}

    def _after_change(self, before: dict[bytes, rs.Role | None] | None, now: float) -> list[Effect]:
        """Links whose peer is no longer a member are closed, and removed
        peers are forgotten (not dialled, not passed on in peer exchange)."""
        for peer in self.roster.removed:
            self.forget_peer(peer)
        effects: list[Effect] = []
        for link in self._table.ready():
            role = self.role_of(link.peer_id)
            if role is None:
                why = "removed from this space" if link.peer_id in self.roster.removed else "not a member of this space"
                effects.append(self._table.close(link, why))
        return effects

    def _flood(self, ops: tuple[bytes, ...], source: LinkId | None, now: float) -> list[Effect]:
        # A peer just removed gets the op that removed it (then its link
        # closes): its UI says so with a signed record, not a rumour.
        data = pw.encode(pw.Roster(ops))
        return [
            self._table.send(link, data, now)
            for link in self._table.ready()
            if link.id != source and (self.role_of(link.peer_id) is not None or link.peer_id in self.roster.removed)
        ]

    def _raw(self, op_hash: bytes) -> bytes:
        if op_hash not in self._by_hash:
            self._by_hash = {op_digest(raw): raw for raw in self.roster.ops()}
        return self._by_hash[op_hash]

    def _send(self, link: Link, msg: pw.Message, now: float) -> Effect:
        return self._table.send(link, pw.encode(msg), now)

    def _refuse(self, link: Link, peer: bytes, what: str, detail: str) -> Effect:
        self.refused[what] = self.refused.get(what, 0) + 1
        return CloseLink(link.id, detail)

    def count(self, what: str) -> None:
        self.refused[what] = self.refused.get(what, 0) + 1

    @property
    def _table(self) -> Links:
        assert self.table is not None, "Access.bind first"
        return self.table

    # -- timers -------------------------------------------------------------------

    def tick(self, now: float) -> list[Effect]:
        if self._next_heads is None:
            self._next_heads = now + ROSTER_PERIOD
            return []
        if now < self._next_heads:
            return []
        self._next_heads = now + ROSTER_PERIOD
        ready = [link for link in self._table.ready() if self.role_of(link.peer_id) is not None]
        if not ready or self.rng is None:
            return []
        link = self.rng.choice(ready)
        return [self._send(link, pw.RosterHeads(tuple(self.roster.heads[: pw.MAX_ROSTER_HEADS])), now)]

    def next_deadline(self, now: float) -> float:
        return self._next_heads if self._next_heads is not None else now
