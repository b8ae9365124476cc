"""What the replication core asks of the shell (*effects*), and what its
components tell each other (*events*).

Effects are returned from every entry point of :class:`crdt.node.Node`; the
shell performs them in order. Events never leave the core: a component
emits one, the node hands it to every component, in a fixed order, and each
returns the effects it causes. That is how the components stay apart: none
calls another's internals.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from crdt.document import Change

if TYPE_CHECKING:
    from crdt.links import Link

LinkId = int


def peer_origin(link: LinkId) -> tuple[str, int]:
    """The origin under which changes from a peer link are applied."""
    return ("peer", link)


# -- effects ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SendPeer:
    link: LinkId
    data: bytes


@dataclass(frozen=True, slots=True)
class Dial:
    address: str


@dataclass(frozen=True, slots=True)
class CloseLink:
    link: LinkId
    reason: str


@dataclass(frozen=True, slots=True)
class DocChanged:
    """A document changed here: store it, show it to the browsers."""

    name: str
    update: bytes
    origin: object


@dataclass(frozen=True, slots=True)
class DocCreated:
    name: str


@dataclass(frozen=True, slots=True)
class AwarenessIn:
    name: str
    update: bytes
    link: LinkId


@dataclass(frozen=True, slots=True)
class PeersChanged:
    peers: list[tuple[str, str]]  # (peer id hex, address)


@dataclass(frozen=True, slots=True)
class PauseLink:
    """Stop reading from the link: its updates wait for causes that are on
    their way on other links (backpressure, ``crdt.replicas``)."""

    link: LinkId


@dataclass(frozen=True, slots=True)
class ResumeLink:
    link: LinkId


@dataclass(frozen=True, slots=True)
class LinkLost:
    """A ready link is gone: the cursors that came through it are gone too,
    unless a shuffle closed it (``planned``: its peer is alive and its cursors
    come on other links)."""

    link: LinkId
    planned: bool


@dataclass(frozen=True, slots=True)
class Load:
    """Read *name* from the store and hand it to ``loaded``: messages for it
    wait until then."""

    name: str


# -- effects of a space (crdt.access) ------------------------------------------------


@dataclass(frozen=True, slots=True)
class RosterChanged:
    """New roster ops were accepted: store them (*ops*, parents first)."""

    ops: tuple[bytes, ...]


@dataclass(frozen=True, slots=True)
class KeysChanged:
    keys: tuple[object, ...]  # crdt.access.SpaceKey


@dataclass(frozen=True, slots=True)
class InviteUsed:
    token_hash: bytes
    peer_id: bytes


@dataclass(frozen=True, slots=True)
class Refused:
    """Something a peer sent was refused by its rights (logged, counted)."""

    peer_id: bytes
    what: str  # "edit" (a reader's change), "roster" (an op that does not verify), "link" (not a member)
    detail: str


Effect = (
    SendPeer
    | Dial
    | CloseLink
    | DocChanged
    | DocCreated
    | AwarenessIn
    | PeersChanged
    | LinkLost
    | PauseLink
    | ResumeLink
    | Load
    | RosterChanged
    | KeysChanged
    | InviteUsed
    | Refused
)


# -- events between components ---------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LinkHello:
    """A link said HELLO: ``kept`` unless it duplicates an older link to the
    same peer (it is being closed)."""

    link: LinkId
    kept: bool


@dataclass(frozen=True, slots=True)
class LinkAccepted:
    """The other side kept the link (its first DIGEST came)."""

    link: LinkId


@dataclass(frozen=True, slots=True)
class LinkGone:
    """A link closed; *link* is its last state (no longer in the table)."""

    link: Link
    reason: str | None


@dataclass(frozen=True, slots=True)
class DocumentChanged:
    """Changes were integrated into a document (from a link, or made here):
    they are to be spread. ``origin`` is where they came from."""

    name: str
    changes: tuple[Change, ...]
    origin: object


Event = LinkHello | LinkAccepted | LinkGone | DocumentChanged
