"""The y-websocket protocol between a browser and its peer (y-protocols
framing), one message per WebSocket frame::

    0 sync       0 step 1 (state vector) | 1 step 2 (update) | 2 update
    1 awareness  varbytes(awareness update)
    3 query awareness
    100 saved    varuint(n)   Meshpad only: the first n frames this connection
                              sent have been processed and are on disk

Decoding raises :class:`~crdt.errors.RemoteProtocolError` for anything else.
A frame that is refused closes the connection with code 1008 and the reason,
except one that would take the document past its size limit: that closes
with CLOSE_TOO_LARGE, and the reason says by how much, so that an editor can
tell its user and stop sending it again.
Awareness updates are ``count, (client id, clock, JSON state)*``; a state of
``null`` means the client left.
"""

from __future__ import annotations

from dataclasses import dataclass

from crdt.errors import RemoteProtocolError
from crdt.lib0 import Reader, Writer, parse_json

MESSAGE_SYNC = 0
MESSAGE_AWARENESS = 1
MESSAGE_AUTH = 2
MESSAGE_QUERY_AWARENESS = 3
MESSAGE_SAVED = 100

# WebSocket close code (application range) for "this change makes the
# document too large"; the reason reads "document too large: N bytes over the
# limit of M bytes".
CLOSE_TOO_LARGE = 4413

SYNC_STEP1 = 0
SYNC_STEP2 = 1
SYNC_UPDATE = 2


@dataclass(frozen=True, slots=True)
class SyncStep1:
    state_vector: bytes


@dataclass(frozen=True, slots=True)
class SyncStep2:
    update: bytes


@dataclass(frozen=True, slots=True)
class SyncUpdate:
    update: bytes


@dataclass(frozen=True, slots=True)
class AwarenessEntry:
    client: int
    clock: int
    state: str  # JSON text exactly as sent; "null" when the client left

    @property
    def is_removal(self) -> bool:
        return self.state == "null"


@dataclass(frozen=True, slots=True)
class Awareness:
    entries: tuple[AwarenessEntry, ...]


@dataclass(frozen=True, slots=True)
class QueryAwareness:
    pass


Message = SyncStep1 | SyncStep2 | SyncUpdate | Awareness | QueryAwareness


def decode_message(frame: bytes) -> Message:
    """Decode one frame from a browser."""
    r = Reader(frame)
    kind = r.read_varuint()
    message: Message
    if kind == MESSAGE_SYNC:
        sub = r.read_varuint()
        payload = r.read_var_bytes()
        if sub == SYNC_STEP1:
            message = SyncStep1(payload)
        elif sub == SYNC_STEP2:
            message = SyncStep2(payload)
        elif sub == SYNC_UPDATE:
            message = SyncUpdate(payload)
        else:
            raise RemoteProtocolError(f"unknown sync message {sub}")
    elif kind == MESSAGE_AWARENESS:
        message = Awareness(decode_awareness(r.read_var_bytes()))
    elif kind == MESSAGE_QUERY_AWARENESS:
        message = QueryAwareness()
    else:
        raise RemoteProtocolError(f"unknown message type {kind}")
    if not r.at_end():
        raise RemoteProtocolError("trailing bytes after message")
    return message


def update_of(frame: bytes) -> bytes | None:
    """The update a sync update or step 2 frame carries, read without
    decoding the frame (most frames are keystrokes); None for any other
    frame, and for long ones: :func:`decode_message` reads those."""
    if len(frame) < 3 or frame[0] != MESSAGE_SYNC or (frame[1] != SYNC_UPDATE and frame[1] != SYNC_STEP2):
        return None
    n = frame[2]
    if n >= 0x80 or len(frame) != 3 + n:
        return None
    return bytes(frame[3:])


def decode_awareness(data: bytes) -> tuple[AwarenessEntry, ...]:
    r = Reader(data)
    entries = []
    for _ in range(r.read_count()):
        client = r.read_varuint()
        clock = r.read_varuint()
        state = r.read_var_string()
        if state != "null":
            parse_json(state)
        entries.append(AwarenessEntry(client, clock, state))
    if not r.at_end():
        raise RemoteProtocolError("trailing bytes after awareness update")
    return tuple(entries)


def awareness_update(entries: list[AwarenessEntry] | tuple[AwarenessEntry, ...]) -> bytes:
    """The y-protocols awareness update (the payload of message 1)."""
    inner = Writer()
    inner.write_varuint(len(entries))
    for entry in entries:
        inner.write_varuint(entry.client)
        inner.write_varuint(entry.clock)
        inner.write_var_string(entry.state)
    return inner.to_bytes()


def encode_awareness(entries: list[AwarenessEntry] | tuple[AwarenessEntry, ...]) -> bytes:
    w = Writer()
    w.write_varuint(MESSAGE_AWARENESS)
    w.write_var_bytes(awareness_update(entries))
    return w.to_bytes()


def _sync(sub: int, payload: bytes) -> bytes:
    w = Writer()
    w.write_varuint(MESSAGE_SYNC)
    w.write_varuint(sub)
    w.write_var_bytes(payload)
    return w.to_bytes()


def encode_sync_step1(state_vector: bytes) -> bytes:
    return _sync(SYNC_STEP1, state_vector)


def encode_sync_step2(update: bytes) -> bytes:
    return _sync(SYNC_STEP2, update)


def encode_sync_update(update: bytes) -> bytes:
    return _sync(SYNC_UPDATE, update)


def encode_query_awareness() -> bytes:
    return bytes([MESSAGE_QUERY_AWARENESS])


def encode_saved(count: int) -> bytes:
    w = Writer()
    w.write_varuint(MESSAGE_SAVED)
    w.write_varuint(count)
    return w.to_bytes()
