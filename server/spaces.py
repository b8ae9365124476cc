"""A peer's spaces: each a set of documents with its own members, roster and
keys (``crdt.access``, ``crdt.roster``), replicated by its own runtime and
links, on the one port.

What the data dir holds (every file written atomically):

* ``spaces.json``: the spaces, each ``{"id", "dir", "legacy"}``, and while
  joining, the invite's address and token. The first space's dir is the data
  dir itself: a data dir of before spaces is that space, untouched.
* ``signing-key`` (mode 0600): the peer's Ed25519 key, which signs its roster
  ops (the X25519 ``identity-key`` authenticates its links).
* in each space's dir: the store (``server.sqlite_store``), ``peers.json``,
  ``roster`` (the signed ops, each a varuint length and its bytes, parents
  first), ``space-keys`` (0600, the keys of each epoch) and ``invites.json``
  (0600: the hashes of the invites this peer issued, never the tokens).

A document is named ``name`` where only one space holds that name, and
``name@space`` always (``space`` the space's name, or its id where two spaces
share a name).
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import os
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web

from crdt import access as ac
from crdt import roster as rs
from crdt.effects import InviteUsed, KeysChanged, Refused, RosterChanged
from crdt.errors import MeshpadError, StoreError
from crdt.lib0 import Reader, Writer
from crdt.names import validate_name
from crdt.secure import Identity, network_key_from_text
from server import addresses
from server.identity import make_data_dir, write_atomically

log = logging.getLogger(__name__)

SPACES_FILE = "spaces.json"
SIGNING_KEY_FILE = "signing-key"
ROSTER_FILE = "roster"
KEYS_FILE = "space-keys"
INVITES_FILE = "invites.json"
LEGACY_NAME = "main"  # what the first space is called until an admin renames it
INVITE_DAYS = 7
REF_SEPARATOR = "@"
CLOSE_ROLE = 4403  # an editor's WebSocket closed because this peer may no longer write (static/editor.js)


class SpaceError(MeshpadError):
    """A request about spaces that cannot be done; *status* is the HTTP one."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


# -- invites ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SpaceInvite:
    """``meshpad://HOST:PORT/SPACE#KEY.TOKEN``: a space's id, its key at the
    epoch the invite was made in, and a one-time token its issuer redeems
    (``.L`` after the token: the space is a legacy one, ``crdt.roster``)."""

    address: str
    space: bytes
    key: bytes
    token: bytes
    legacy: bool = False

    def text(self) -> str:
        tail = ".L" if self.legacy else ""
        return f"{addresses.INVITE_PREFIX}{self.address}/{self.space.hex()}#{_b64(self.key)}.{_b64(self.token)}{tail}"


def parse_space_invite(text: str) -> SpaceInvite | None:
    """A space invite, or None for anything else (an old network invite, an
    address). Raises ValueError for a space invite that is malformed."""
    text = text.strip()
    if not text.startswith(addresses.INVITE_PREFIX) or "#" not in text:
        return None
    where, secret = text[len(addresses.INVITE_PREFIX) :].split("#", 1)
    if "/" not in where.rstrip("/") or "." not in secret:
        return None
    address, space_hex = where.rstrip("/").rsplit("/", 1)
    rule = "a space invite is meshpad://HOST:PORT/SPACE#KEY.TOKEN, as `meshpad invite --space NAME` prints it"
    try:
        space = bytes.fromhex(space_hex)
        parts = secret.split(".")
        if len(parts) not in (2, 3) or (len(parts) == 3 and parts[2] != "L"):
            raise ValueError("the part after # is KEY.TOKEN")
        key, token = _unb64(parts[0]), _unb64(parts[1])
        address = addresses.parse_address(address)
    except (ValueError, binascii.Error) as exc:
        raise ValueError(f"{rule}: {exc}") from None
    if len(space) != rs.SPACE_ID_BYTES or len(key) != 32 or len(token) != 16:
        raise ValueError(f"{rule}: a part has the wrong length")
    return SpaceInvite(address, space, key, token, len(parts) == 3)


# -- files ---------------------------------------------------------------------------------


def signing_key(data_dir: Path) -> bytes:
    path = data_dir / SIGNING_KEY_FILE
    try:
        raw = base64.b64decode(path.read_text().strip(), validate=True)
    except FileNotFoundError:
        raw = rs.new_signing_key(secrets.token_bytes(32))
        write_atomically(path, base64.b64encode(raw) + b"\n", 0o600)
        return raw
    except ValueError as exc:
        raise StoreError(f"{path}: not a signing key: {exc}") from exc
    if len(raw) != 32:
        raise StoreError(f"{path}: not a signing key (32 bytes expected)")
    return raw


def read_ops(path: Path) -> list[bytes]:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return []
    r = Reader(data)
    ops = []
    try:
        while not r.at_end():
            ops.append(r.read_var_bytes())
    except Exception as exc:
        raise StoreError(f"{path}: the roster file is damaged: {exc}") from exc
    return ops


def write_ops(path: Path, ops: list[bytes]) -> None:
    w = Writer()
    for op in ops:
        w.write_var_bytes(op)
    write_atomically(path, w.to_bytes())


def read_keys(path: Path) -> dict[bytes, ac.SpaceKey]:
    try:
        raw = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except ValueError as exc:
        raise StoreError(f"{path}: damaged: {exc}") from exc
    keys = {}
    for entry in raw.get("keys", []):
        key = ac.SpaceKey(int(entry["epoch"]), bytes.fromhex(entry["id"]), _unb64(entry["key"]))
        keys[key.key_id] = key
    return keys


def write_keys(path: Path, keys: dict[bytes, ac.SpaceKey]) -> None:
    body = {"keys": [{"epoch": k.epoch, "id": k.key_id.hex(), "key": _b64(k.key)} for k in keys.values()]}
    write_atomically(path, json.dumps(body, indent=1).encode(), 0o600)


def read_invites(path: Path) -> dict[bytes, ac.Invite]:
    try:
        raw = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except ValueError as exc:
        log.warning("%s is unreadable (%s): the invites it held no longer work", path, exc)
        return {}
    return {bytes.fromhex(h): ac.Invite(v["role"], float(v["expires"])) for h, v in raw.get("invites", {}).items()}


def write_invites(path: Path, invites: dict[bytes, ac.Invite]) -> None:
    body = {"invites": {h.hex(): {"role": i.role, "expires": i.expires} for h, i in invites.items()}}
    write_atomically(path, json.dumps(body, indent=1).encode(), 0o600)


# -- one space --------------------------------------------------------------------------


@dataclass(eq=False)
class Space:
    id: bytes
    dir: Path
    legacy: bool
    access: ac.Access
    join: dict[str, str] | None = None  # {"address", "token"} until the roster names this peer
    runtime: Any = None  # server.runtime.Runtime
    peering: Any = None  # server.peering.Peering
    last_seen: dict[bytes, float] = field(default_factory=dict)  # peer id -> wall time its link was last up
    # Why a member closed a link of ours, when it says we were removed (told
    # in a WebSocket close: shown, not trusted like the signed roster).
    refused_as: str | None = None
    was_writable: bool = True  # (what its editors were opened with)

    @property
    def hex(self) -> str:
        return self.id.hex()

    @property
    def roster(self) -> rs.Roster:
        return self.access.roster

    @property
    def name(self) -> str:
        return self.roster.name or (LEGACY_NAME if self.legacy else self.hex[:8])

    @property
    def role(self) -> str | None:
        return self.access.roster.role(self.access.me) if not self.access.joining else None

    @property
    def joining(self) -> bool:
        return self.access.joining

    @property
    def removed(self) -> bool:
        """This peer was removed (the signed roster it holds says so): it
        keeps what it had, and gets nothing new."""
        return self.access.me in self.roster.removed

    @property
    def started(self) -> bool:
        return self.runtime is not None and self.runtime.engine is not None

    def status(self) -> str:
        if self.joining:
            return "joining"
        if self.removed or self.refused_as is not None:
            return "removed"  # (a refusal only says so: it changes nothing)
        if self.roster.open:
            return "open"
        return "member" if self.role is not None else "not a member"


class Spaces:
    """Every space of this peer, in the order they were made or joined (the
    first is the one of before spaces)."""

    def __init__(self, data_dir: Path, private_key: bytes, peer_id: bytes, member_name: str, wall: Callable[[], float]):
        self.data_dir = data_dir
        self.private_key = private_key
        self.peer_id = peer_id
        self.member_name = member_name[: rs.MAX_MEMBER_NAME_BYTES]
        self.wall = wall
        self.signer = rs.Signer(signing_key(data_dir), peer_id)
        self.spaces: list[Space] = []
        self.build: Callable[[Space], None] = lambda space: None  # makes a space's runtime and links (server.app)
        self.start: Callable[[Space], Awaitable[None]] = _nothing  # starts them (server.app)

    # -- loading -------------------------------------------------------------------

    def load(self, network_key: str) -> None:
        """Read the spaces (the first start of a data dir of before spaces
        makes its network the first space)."""
        make_data_dir(self.data_dir)
        path = self.data_dir / SPACES_FILE
        try:
            entries = json.loads(path.read_text())["spaces"]
        except FileNotFoundError:
            psk = network_key_from_text(network_key)
            entries = [{"id": rs.legacy_space_id(psk).hex(), "dir": ".", "legacy": True}]
        except (ValueError, KeyError, TypeError) as exc:
            raise StoreError(f"{path}: damaged: {exc}") from exc
        for entry in entries:
            self.spaces.append(self._open(entry, network_key))
        self._save()

    def _open(self, entry: dict[str, Any], network_key: str) -> Space:
        space_id = bytes.fromhex(entry["id"])
        legacy = bool(entry.get("legacy"))
        where = self.data_dir / entry["dir"]
        make_data_dir(where)
        roster = rs.Roster(space_id, legacy=legacy)
        try:
            roster.receive_many(read_ops(where / ROSTER_FILE))
        except rs.RosterError as exc:
            raise StoreError(f"{where / ROSTER_FILE}: {exc}") from exc
        keys = read_keys(where / KEYS_FILE)
        if legacy and entry["dir"] == ".":
            keys.setdefault(b"", ac.SpaceKey(0, b"", network_key_from_text(network_key)))
        access = ac.Access(roster, self.signer, self.member_name, self.wall, keys, read_invites(where / INVITES_FILE))
        join = entry.get("join")
        if join:
            access.token = _unb64(join["token"])
        space = Space(space_id, where, legacy, access, join)
        if legacy and not join and roster.open and roster.role(self.peer_id) is None:
            ops = (roster.sign_claim(self.signer, self.member_name, self.wall()),)
            write_ops(where / ROSTER_FILE, roster.ops())
            log.debug("claimed the open space %s as this peer's (%d ops)", space.name, len(ops))
        return space

    def _save(self) -> None:
        entries = []
        for space in self.spaces:
            entry: dict[str, Any] = {"id": space.hex, "dir": os.path.relpath(space.dir, self.data_dir)}
            if space.legacy:
                entry["legacy"] = True
            if space.join:
                entry["join"] = space.join
            entries.append(entry)
        write_atomically(self.data_dir / SPACES_FILE, json.dumps({"version": 1, "spaces": entries}, indent=1).encode())

    # -- finding ---------------------------------------------------------------------

    @property
    def first(self) -> Space:
        return self.spaces[0]

    def __iter__(self) -> Any:
        return iter(self.spaces)

    def __len__(self) -> int:
        return len(self.spaces)

    def label(self, space: Space) -> str:
        """How a person names *space*: its name, or its id where two share it."""
        same = sum(1 for s in self.spaces if s.name == space.name)
        return space.name if same == 1 else space.hex

    def find(self, text: str) -> Space:
        """A space by name or id (started: one being set up is not there
        yet). Raises SpaceError (404)."""
        for space in self.spaces:
            if not space.started:
                continue
            if text in (space.hex, space.hex[:8]) or (text == space.name and self.label(space) == space.name):
                return space
        raise SpaceError(f"no space called {text!r}", 404)

    def by_id(self, space_id: bytes) -> Space | None:
        return next((s for s in self.spaces if s.id == space_id), None)

    def member_spaces(self) -> list[Space]:
        """The spaces whose documents this peer shows and serves."""
        return list(self.spaces)

    def resolve(self, ref: str) -> tuple[Space, str]:
        """``name`` or ``name@space`` -> (space, name). A plain name is the
        first space's if it holds it, else the one space that does. Raises
        SpaceError (404) when no space, or more than one, holds it."""
        name, sep, where = ref.rpartition(REF_SEPARATOR)
        if sep:
            return self.find(where), name
        holders = [s for s in self.spaces if s.started and s.runtime.exists(ref)]
        if not holders or holders[0] is self.first:
            return self.first, ref
        if len(holders) > 1:
            raise SpaceError(
                f"{len(holders)} spaces hold a document called {ref!r}: write it as {ref}@SPACE "
                f"({', '.join(self.label(s) for s in holders)})",
                404,
            )
        return holders[0], ref

    def ref(self, space: Space, name: str) -> str:
        """How *name* of *space* is written in links: plain when it is unambiguous."""
        if space is self.first and not space.runtime.exists(name):
            return name
        holders = [s for s in self.spaces if s.started and s.runtime.exists(name)]
        if holders and holders[0] is space and (space is self.first or len(holders) == 1):
            return name
        return f"{name}{REF_SEPARATOR}{self.label(space)}"

    # -- the handshake ------------------------------------------------------------

    def handshake_keys(self) -> list[tuple[Space, bytes]]:
        """Every key a dialler may hold, with its space (``crdt.secure``)."""
        return [(space, key.key) for space in self.spaces if space.started for key in space.access.keys.values()]

    def identity_for(self, space: Space) -> Identity:
        key = space.access.current_key()
        assert key is not None, "a space has a key"
        return Identity(self.private_key, key.key)

    # -- making and joining --------------------------------------------------------

    def create(self, name: str) -> Space:
        validate_name(name)
        if len(name) > rs.MAX_SPACE_NAME:
            raise SpaceError(f"a space name has at most {rs.MAX_SPACE_NAME} characters")
        if any(s.name == name for s in self.spaces):
            raise SpaceError(f"a space called {name!r} exists already", 409)
        roster, _ = rs.Roster.create(self.signer, name, self.member_name, self.wall())
        where = self.data_dir / "spaces" / roster.space_id.hex()
        make_data_dir(where.parent)
        make_data_dir(where)
        keys = {b"": ac.SpaceKey(0, b"", secrets.token_bytes(32))}
        write_keys(where / KEYS_FILE, keys)
        write_ops(where / ROSTER_FILE, roster.ops())
        access = ac.Access(roster, self.signer, self.member_name, self.wall, keys)
        space = Space(roster.space_id, where, False, access)
        self.spaces.append(space)
        self._save()
        self.build(space)
        return space

    def join(self, invite: SpaceInvite) -> Space:
        """A space joined with *invite* (the one already held, if this peer is in it)."""
        space = self.by_id(invite.space)
        if space is not None:
            if space.joining:
                space.access.token = invite.token
                space.join = {"address": invite.address, "token": _b64(invite.token)}
                self._save()
            if space.joining and all(k.key != invite.key for k in space.access.keys.values()):
                space.access.keys[b""] = ac.SpaceKey(0, b"", invite.key)  # what it dials with until KEYS come
                write_keys(space.dir / KEYS_FILE, space.access.keys)
            return space
        where = self.data_dir / "spaces" / invite.space.hex()
        make_data_dir(where.parent)
        make_data_dir(where)
        keys = {b"": ac.SpaceKey(0, b"", invite.key)}
        write_keys(where / KEYS_FILE, keys)
        roster = rs.Roster(invite.space, legacy=invite.legacy)
        access = ac.Access(roster, self.signer, self.member_name, self.wall, keys)
        access.token = invite.token
        join = {"address": invite.address, "token": _b64(invite.token)}
        space = Space(invite.space, where, invite.legacy, access, join)
        self.spaces.append(space)
        self._save()
        self.build(space)
        return space

    def join_network(self, network_key: str) -> Space:
        """The legacy space of an old-style invite's network key (made if new)."""
        psk = network_key_from_text(network_key)
        space_id = rs.legacy_space_id(psk)
        space = self.by_id(space_id)
        if space is not None:
            return space
        where = self.data_dir / "spaces" / space_id.hex()
        make_data_dir(where.parent)
        make_data_dir(where)
        keys = {b"": ac.SpaceKey(0, b"", psk)}
        write_keys(where / KEYS_FILE, keys)
        roster = rs.Roster(space_id, legacy=True)
        roster.sign_claim(self.signer, self.member_name, self.wall())
        write_ops(where / ROSTER_FILE, roster.ops())
        space = Space(space_id, where, True, ac.Access(roster, self.signer, self.member_name, self.wall, keys))
        self.spaces.append(space)
        self._save()
        self.build(space)
        return space

    def invite(self, space: Space, address: str, role: str = "writer") -> SpaceInvite:
        """A one-time invite to *space* as *role* (this peer must be an admin)."""
        if role not in ("writer", "reader", "admin"):
            raise SpaceError("an invite is for a writer, a reader or an admin")
        if space.role != "admin":
            raise SpaceError(f"only an admin of {space.name} can invite to it", 403)
        if space.roster.open and role != "writer":
            # Anyone holding the network key may claim the space while it is open.
            self._sign(space, space.roster.sign_seal(self.signer, self.wall()))
        key = space.access.current_key()
        assert key is not None
        token = secrets.token_bytes(16)
        invites = space.access.invites
        now = self.wall()
        for digest in [d for d, i in invites.items() if i.expires < now]:
            del invites[digest]
        if len(invites) >= ac.MAX_INVITES:
            raise SpaceError(f"{space.name} has {ac.MAX_INVITES} unused invites: wait for some to expire")
        invites[ac.token_hash(token)] = ac.Invite(role, now + INVITE_DAYS * 86400)  # type: ignore[arg-type]
        write_invites(space.dir / INVITES_FILE, invites)
        return SpaceInvite(address, space.id, key.key, token, space.legacy)

    # -- roster changes made here ----------------------------------------------------------

    def set_role(self, space: Space, peer_id: bytes, role: str) -> None:
        self._admin(space)
        try:
            op = space.roster.sign_role(self.signer, peer_id, role, self.wall())  # type: ignore[arg-type]
        except rs.RosterError as exc:
            raise SpaceError(str(exc), 409) from None
        self._sign(space, op)

    def remove(self, space: Space, peer_id: bytes) -> None:
        """Remove a member: the space's key is rotated (``crdt.access``)."""
        self._admin(space)
        try:
            op = space.roster.sign_remove(self.signer, peer_id, self.wall())
        except rs.RosterError as exc:
            raise SpaceError(str(exc), 409) from None
        new_key = ac.SpaceKey(space.roster.epoch, space.roster.rotation, secrets.token_bytes(32))
        self._sign(space, op, new_key)
        space.access.invites.clear()  # invites carry the old key
        write_invites(space.dir / INVITES_FILE, space.access.invites)

    def seal(self, space: Space) -> None:
        self._admin(space)
        try:
            op = space.roster.sign_seal(self.signer, self.wall())
        except rs.RosterError as exc:
            raise SpaceError(str(exc), 409) from None
        self._sign(space, op)

    def rename(self, space: Space, name: str) -> None:
        self._admin(space)
        validate_name(name)
        if any(s.name == name for s in self.spaces if s is not space):
            raise SpaceError(f"a space called {name!r} exists already", 409)
        try:
            op = space.roster.sign_rename(self.signer, name, self.wall())
        except rs.RosterError as exc:
            raise SpaceError(str(exc), 409) from None
        self._sign(space, op)

    def _admin(self, space: Space) -> None:
        if space.role != "admin":
            raise SpaceError(f"only an admin of {space.name} can change its members", 403)

    def _sign(self, space: Space, op: bytes, new_key: ac.SpaceKey | None = None) -> None:
        runtime = space.runtime
        if runtime is None or runtime.engine is None:
            write_ops(space.dir / ROSTER_FILE, space.roster.ops())
            if new_key is not None:
                space.access.keys[new_key.key_id] = new_key
                write_keys(space.dir / KEYS_FILE, space.access.keys)
            return
        runtime.perform(runtime.gossip.space_changed((op,), runtime.now(), new_key))

    # -- what the core asks (crdt.access effects) -----------------------------------------

    def on_effect(self, space: Space, effect: object) -> None:
        if isinstance(effect, RosterChanged):
            write_ops(space.dir / ROSTER_FILE, space.roster.ops())
            if space.join and space.role is not None:
                space.join = None
                space.access.token = b""
                self._save()
                log.info("joined the space %s as %s", space.name, space.role)
            if space.removed:
                log.warning(
                    "this peer was removed from the space %s: it keeps the documents it had and receives nothing new",
                    space.name,
                )
            self._rekey(space)
            self._rights_changed(space)
        elif isinstance(effect, KeysChanged):
            write_keys(space.dir / KEYS_FILE, space.access.keys)
            self._rekey(space)
        elif isinstance(effect, InviteUsed):
            write_invites(space.dir / INVITES_FILE, space.access.invites)
            log.info("an invite to %s was used by peer %s", space.name, effect.peer_id.hex())
        elif isinstance(effect, Refused):
            # Logged, not flooded: the first few, then every hundredth (all are counted).
            count = space.access.refused.get(effect.what, 0)
            if count <= 3 or count % 100 == 0:
                level = logging.WARNING if effect.what in ("edit", "roster") else logging.INFO
                log.log(
                    level, "space %s: refused from peer %s: %s (%d refused so far)",
                    space.name, effect.peer_id.hex(), effect.detail, count,
                )  # fmt: skip

    def refused(self, space: Space, reason: str) -> None:
        """A member closed our link with *reason*."""
        if reason.strip() == "removed from this space" and space.refused_as is None:
            space.refused_as = reason
            log.warning("a member of %s refuses this peer: %s", space.name, reason)

    def _rights_changed(self, space: Space) -> None:
        """When this peer may no longer write in *space*, its editors are
        closed with CLOSE_ROLE: they load again, read-only and saying why."""
        runtime = space.runtime
        if runtime is None or runtime.engine is None:
            return
        writable = runtime.writable
        if space.was_writable and not writable:
            for conn in list(runtime.connections.values()):
                conn.close(f"your role in {space.name} changed: you may read, not write", CLOSE_ROLE)
        space.was_writable = writable

    def _rekey(self, space: Space) -> None:
        if space.peering is not None:
            space.peering.identity = self.identity_for(space)
            space.peering.enabled = not space.removed

    # -- what a person sees ---------------------------------------------------------------

    def summary(self, space: Space) -> dict[str, Any]:
        runtime = space.runtime
        documents = len(runtime.names()) if runtime is not None and runtime.engine is not None else 0
        return {
            "name": self.label(space),
            "id": space.hex,
            "role": space.role,
            "members": len(space.roster.members),
            "documents": documents,
            "status": space.status(),
            "epoch": space.roster.epoch,
            "writable": runtime is not None and runtime.writable,
            # What peers sent that their rights did not allow: counted, and logged.
            "refused": dict(space.access.refused),
            # Bytes on this space's peer links (encrypted, WebSocket framing included).
            "wire": {
                "in": space.peering.wire_in if space.peering is not None else 0,
                "out": space.peering.wire_out if space.peering is not None else 0,
            },
        }

    def members(self, space: Space) -> list[dict[str, Any]]:
        connected: set[bytes] = set()
        if space.runtime is not None and space.runtime.engine is not None:
            connected = {link.peer_id for link in space.runtime.gossip.table.ready() if link.peer_id}
        now = self.wall()
        rows = []
        for member in sorted(space.roster.members.values(), key=lambda m: (m.role != "admin", m.name, m.peer_id)):
            me = member.peer_id == self.peer_id
            seen = now if (me or member.peer_id in connected) else space.last_seen.get(member.peer_id)
            rows.append(
                {
                    "peer": member.peer_id.hex(),
                    "name": member.name,
                    "role": member.role,
                    "since": member.since,
                    "last_seen": seen,
                    "connected": member.peer_id in connected,
                    "me": me,
                }
            )
        return rows


async def _nothing(space: Space) -> None:
    return None


SPACES = web.AppKey("spaces", Spaces)

__all__ = ["SPACES", "Space", "SpaceError", "SpaceInvite", "Spaces", "parse_space_invite"]
