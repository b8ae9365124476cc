"""The browser side of one document: every editor connected to it through the
y-websocket protocol, sans-IO.

The shell calls :meth:`DocumentSession.connect`, :meth:`~DocumentSession.receive`
and :meth:`~DocumentSession.disconnect` with a connection id and gets back
effects to perform, in order:

* :class:`Send` — write these bytes to that connection;
* :class:`Changed` — the document changed (store it, tell other peers).

Rules kept here (y-websocket server behaviour, which stock clients rely on):

1. A new connection gets sync step 1, then the awareness of everyone present.
2. Step 1 is answered with step 2 (the diff against the sender's state vector).
3. A change is sent to every other connection, never back to its author.
   Changes may be held back (``changed(..., hold=True)``) and sent merged by
   :meth:`DocumentSession.flush`: one frame per connection for all the
   changes one turn of the peer brought. Held changes go out before any
   change sent at once, so every connection still gets them in order.
4. Awareness is relayed to *every* connection, the sender included: a lone
   client counts its own echo as a sign of life and reconnects without it.
5. When a connection closes, the awareness states it introduced are removed
   at once, for everyone left.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from contextlib import suppress
from dataclasses import dataclass, field

from pycrdt import merge_updates

from crdt import ywire
from crdt.document import Change, Document
from crdt.errors import RemoteProtocolError

ConnectionId = int


@dataclass(frozen=True, slots=True)
class Send:
    connection: ConnectionId
    data: bytes


@dataclass(frozen=True, slots=True)
class Changed:
    update: bytes
    origin: object


@dataclass(frozen=True, slots=True)
class AwarenessOut:
    """Awareness entries accepted here, as a y-protocols awareness update,
    for the other peers."""

    update: bytes
    via: object  # where they came from (a peer link is not sent its own entries back)


Effect = Send | Changed | AwarenessOut


def merge_update_frames(frames: list[bytes]) -> list[bytes]:
    """Frames queued for one browser, with every run of consecutive sync
    update frames merged into one: a browser that has fallen behind (a busy
    document, a slow link) gets fewer, larger writes. The frames are this
    peer's own, in the order it applied their updates, so each run is causal
    and its merge applies exactly as the run would; other frames keep their
    place."""
    out: list[bytes] = []
    run: list[bytes] = []
    for frame in [*frames, b""]:  # the empty frame ends the last run
        if frame[:2] == _SYNC_UPDATE_PREFIX:
            run.append(frame)
            continue
        if len(run) == 1:
            out.append(run[0])
        elif run:
            updates = [_update_in(f) for f in run]
            out.append(ywire.encode_sync_update(merge_updates(*updates)))
        run = []
        if frame:
            out.append(frame)
    return out


_SYNC_UPDATE_PREFIX = bytes([ywire.MESSAGE_SYNC, ywire.SYNC_UPDATE])


def _update_in(frame: bytes) -> bytes:
    update = ywire.update_of(frame)
    if update is None:
        message = ywire.decode_message(frame)
        assert isinstance(message, ywire.SyncUpdate)
        update = message.update
    return update


# A remote person's cursor that has not been renewed for this long is
# dropped (y-protocols clients renew every 15 s and time out at 30 s).
REMOTE_AWARENESS_TIMEOUT = 30.0


@dataclass(slots=True)
class _AwarenessState:
    clock: int
    state: str  # JSON text; "null" once the client left
    owner: ConnectionId | None  # the browser connection that speaks for it, if local
    via: object = None  # the peer link it came through, if remote
    renewed: float = 0.0


@dataclass(slots=True)
class DocumentSession:
    document: Document
    connections: set[ConnectionId] = field(default_factory=set)
    _awareness: dict[int, _AwarenessState] = field(default_factory=dict)
    _held: list[Change] = field(default_factory=list)  # changes not sent yet (rule 3)

    # -- connections ---------------------------------------------------------

    def connect(self, conn: ConnectionId) -> list[Effect]:
        self.connections.add(conn)
        effects: list[Effect] = [Send(conn, ywire.encode_sync_step1(self.document.encode_state_vector()))]
        present = self._present()
        if present:
            effects.append(Send(conn, ywire.encode_awareness(present)))
        return effects

    def disconnect(self, conn: ConnectionId) -> list[Effect]:
        self.connections.discard(conn)
        self.document.drop_pending(conn)
        gone: list[ywire.AwarenessEntry] = []
        for client, state in self._awareness.items():
            if state.owner == conn and state.state != "null":
                gone.append(ywire.AwarenessEntry(client, state.clock + 1, "null"))
        for client in [c for c, s in self._awareness.items() if s.owner == conn]:
            del self._awareness[client]  # the connection is closed: nobody can revive it
        if not gone:
            return []
        data = ywire.encode_awareness(gone)
        effects: list[Effect] = [Send(other, data) for other in sorted(self.connections)]
        effects.append(AwarenessOut(ywire.awareness_update(gone), None))
        return effects

    # -- messages ------------------------------------------------------------

    def receive(self, conn: ConnectionId, frame: bytes) -> list[Effect]:
        """Handle one frame from *conn*. Raises RemoteProtocolError (and
        changes nothing) when the frame is not valid."""
        if conn not in self.connections:
            raise RemoteProtocolError("connection is not open")
        message = ywire.decode_message(frame)
        if isinstance(message, ywire.SyncStep1):
            diff = self.document.diff(message.state_vector)
            return [Send(conn, ywire.encode_sync_step2(diff))]
        if isinstance(message, (ywire.SyncStep2, ywire.SyncUpdate)):
            return self.apply(message.update, conn)
        if isinstance(message, ywire.Awareness):
            return self._receive_awareness(conn, message.entries)
        present = self._present()
        return [Send(conn, ywire.encode_awareness(present))] if present else []

    def receive_many(
        self, conn: ConnectionId, frames: Sequence[bytes]
    ) -> tuple[list[Effect], RemoteProtocolError | None]:
        """Handle frames that arrived together from *conn*, in order, as
        :meth:`receive` would one by one, except that consecutive document
        updates are applied as one change. Stops at the first frame that is
        refused: returns the effects of the frames before it and the error."""
        effects: list[Effect] = []
        updates: list[bytes] = []
        for frame in frames:
            try:
                if conn not in self.connections:
                    raise RemoteProtocolError("connection is not open")
                update = ywire.update_of(frame)
                if update is None:
                    message = ywire.decode_message(frame)
                    if isinstance(message, (ywire.SyncStep2, ywire.SyncUpdate)):
                        update = message.update
                if update is not None:
                    updates.append(update)
                    continue
                if updates:
                    changes, error = self.document.receive_many(updates, conn)
                    updates = []
                    effects += self.changed(changes)
                    if error is not None:
                        return effects, error
                effects += self.receive(conn, frame)
            except RemoteProtocolError as exc:
                error = exc
                break
        else:
            error = None
        if updates:
            changes, refused = self.document.receive_many(updates, conn)
            effects += self.changed(changes)
            error = refused or error
        return effects, error

    def apply(self, update: bytes, origin: object) -> list[Effect]:
        """Integrate an update (from a browser or from elsewhere) and fan the
        resulting changes out to every connection but the one they came from."""
        changes = self.document.receive(update, origin)
        return self.changed(changes)

    def changed(self, changes: list[Change], hold: bool = False) -> list[Effect]:
        """The document changed: store and push each change, and send it
        to every connection but its author's, now or (*hold*) at the next
        :meth:`flush`."""
        effects: list[Effect] = []
        if hold:
            self._held += changes
            return [Changed(change.update, change.origin) for change in changes]
        effects += self.flush()
        for change in changes:
            effects.append(Changed(change.update, change.origin))
            data = ywire.encode_sync_update(change.update)
            effects.extend(Send(c, data) for c in sorted(self.connections) if c != change.origin)
        return effects

    @property
    def holding(self) -> bool:
        return bool(self._held)

    def flush(self) -> list[Effect]:
        """Send the held changes: to each connection, one frame with those
        it did not make, merged in the order they were applied."""
        if not self._held:
            return []
        held, self._held = self._held, []
        updates = [change.update for change in held]
        everyone = updates[0] if len(updates) == 1 else merge_updates(*updates)
        effects: list[Effect] = []
        data_all: bytes | None = None
        for conn in sorted(self.connections):
            if all(change.origin != conn for change in held):
                data_all = data_all or ywire.encode_sync_update(everyone)
                effects.append(Send(conn, data_all))
                continue
            theirs = [change.update for change in held if change.origin != conn]
            if theirs:
                merged = theirs[0] if len(theirs) == 1 else merge_updates(*theirs)
                effects.append(Send(conn, ywire.encode_sync_update(merged)))
        return effects

    def _receive_awareness(
        self, conn: ConnectionId | None, entries: tuple[ywire.AwarenessEntry, ...], via: object = None, now: float = 0.0
    ) -> list[Effect]:
        accepted: list[ywire.AwarenessEntry] = []
        for entry in entries:
            current = self._awareness.get(entry.client)
            if current is not None and current.owner is not None and current.owner != conn:
                continue  # a local connection speaks for this client
            if (
                current is None
                or current.clock < entry.clock
                or (current.clock == entry.clock and entry.is_removal and current.state != "null")
            ):
                self._awareness[entry.client] = _AwarenessState(entry.clock, entry.state, conn, via, now)
                accepted.append(entry)
        if not accepted:
            return []
        data = ywire.encode_awareness(accepted)
        effects: list[Effect] = [Send(c, data) for c in sorted(self.connections)]
        effects.append(AwarenessOut(ywire.awareness_update(accepted), via))
        return effects

    def receive_remote_awareness(self, update: bytes, via: object, now: float) -> list[Effect]:
        """Awareness from another peer. Raises RemoteProtocolError if malformed."""
        return self._receive_awareness(None, ywire.decode_awareness(update), via, now)

    def expire_remote(self, now: float, via: object = None) -> list[Effect]:
        """Forget remote cursors not renewed in time, or (with *via*) all of
        those that came through a link that closed. Only local browsers are
        told: other peers run their own clocks."""
        gone: list[ywire.AwarenessEntry] = []
        for client, state in list(self._awareness.items()):
            if state.owner is not None:
                continue
            if state.state == "null":
                if now - state.renewed > REMOTE_AWARENESS_TIMEOUT:
                    del self._awareness[client]  # a removal long past: its clock is no longer needed
                continue
            if (via is not None and state.via == via) or (
                via is None and now - state.renewed > REMOTE_AWARENESS_TIMEOUT
            ):
                del self._awareness[client]
                gone.append(ywire.AwarenessEntry(client, state.clock + 1, "null"))
        if not gone:
            return []
        data = ywire.encode_awareness(gone)
        return [Send(c, data) for c in sorted(self.connections)]

    def _present(self) -> list[ywire.AwarenessEntry]:
        return [
            ywire.AwarenessEntry(client, s.clock, s.state)
            for client, s in sorted(self._awareness.items())
            if s.state != "null"
        ]

    def people_of(self, conn: ConnectionId) -> dict[int, tuple[str, str]]:
        """Who a browser connection speaks for, from its awareness: client id
        -> (name, colour) as the person set them in the editor."""
        people: dict[int, tuple[str, str]] = {}
        for client, state in self._awareness.items():
            if state.owner != conn or state.state == "null":
                continue
            user: object = None
            with suppress(ValueError):
                parsed = json.loads(state.state)
                user = parsed.get("user") if isinstance(parsed, dict) else None
            if isinstance(user, dict):
                name, color = user.get("name"), user.get("color")
                people[client] = (
                    name[:80] if isinstance(name, str) else "",
                    color[:16] if isinstance(color, str) else "",
                )
            else:
                people[client] = ("", "")
        return people

    def awareness_count(self) -> int:
        return len(self._present())
