"""Reading the Yjs update format (v1) without applying it.

pycrdt (Yrs) diverges when it is handed an update before the updates that
update builds on (``shared/hazards/out_of_order.py``). Browsers send updates
with no causal metadata, so the core reads each update's dependencies from its
encoding: where each client's run of structs starts, the origins and parents
its items point at, and the ranges its delete set removes. An update is
*ready* once the local state vector covers all of them.

Parsing doubles as validation of untrusted bytes: anything that is not a
well-formed v1 update raises :class:`~crdt.errors.RemoteProtocolError` before
pycrdt ever sees it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from crdt.errors import RemoteProtocolError
from crdt.lib0 import Reader, Writer

StateVector = dict[int, int]
# (client, clock, length) triples
DeleteRanges = list[tuple[int, int, int]]

_BIT8 = 0x80  # item has an origin (left neighbour)
_BIT7 = 0x40  # item has a right origin
_BIT6 = 0x20  # item has a parent sub-key (map entry)
_TYPE_XML_ELEMENT = 3
_TYPE_XML_HOOK = 5
_MAX_TYPE_REF = 6
# Shifts of a varuint's second to eighth bytes (lib0 integers fit in 53 bits).
_VARUINT_SHIFTS = (7, 14, 21, 28, 35, 42, 49)


@dataclass(slots=True)
class UpdateInfo:
    """What one update carries and what it needs.

    ``ranges`` maps each client to the half-open clock range ``[start, end)``
    of its structs in the update; ``needs`` maps a client to the clock the
    local state vector must reach before the update may be applied;
    ``deletes`` is the update's delete set.
    """

    ranges: dict[int, tuple[int, int]] = field(default_factory=dict)
    needs: dict[int, int] = field(default_factory=dict)
    deletes: DeleteRanges = field(default_factory=list)

    def is_ready(self, sv: Mapping[int, int]) -> bool:
        return all(sv.get(client, 0) >= clock for client, clock in self.needs.items())

    def is_empty(self) -> bool:
        return not self.ranges and not self.deletes

    def is_known(self, sv: Mapping[int, int]) -> bool:
        """True when every struct is already covered by *sv* and the update
        deletes nothing (a delete set can add information even then)."""
        return not self.deletes and all(sv.get(c, 0) >= end for c, (_, end) in self.ranges.items())


def _utf16_length(text: str) -> int:
    if text.isascii():
        return len(text)
    return len(text) + sum(1 for ch in text if ord(ch) > 0xFFFF)


def _content_length(r: Reader, ref: int) -> int:
    """Skip one item's content; return how many clock ticks it spans."""
    if ref == 1:  # ContentDeleted
        return r.read_varuint()
    if ref == 2:
        # ContentJSON: Yjs 13 never writes it, and Yrs does not read it the
        # way Yjs wrote it; refuse rather than let the two disagree.
        raise RemoteProtocolError("legacy JSON content is not accepted")
    if ref == 3:  # ContentBinary
        r.skip_var_bytes()
        return 1
    if ref == 4:  # ContentString: its clock length counts UTF-16 code units
        return _utf16_length(r.read_var_string())
    if ref == 5:  # ContentEmbed
        r.read_json()
        return 1
    if ref == 6:  # ContentFormat
        r.read_var_string()
        r.read_json()
        return 1
    if ref == 7:  # ContentType
        type_ref = r.read_varuint()
        if type_ref > _MAX_TYPE_REF:
            raise RemoteProtocolError(f"unknown shared type {type_ref}")
        if type_ref == _TYPE_XML_HOOK:
            # Yjs writes the hook's name, Yrs reads none: refuse, do not guess.
            raise RemoteProtocolError("XML hooks are not accepted")
        if type_ref == _TYPE_XML_ELEMENT:
            r.read_var_string()
        return 1
    if ref == 8:  # ContentAny
        n = r.read_count()
        for _ in range(n):
            r.skip_any()
        return n
    if ref == 9:  # ContentDoc
        r.read_var_string()
        r.skip_any()
        return 1
    raise RemoteProtocolError(f"unknown content type {ref}")


def parse_update(data: bytes) -> UpdateInfo:
    """Validate a v1 update and return its ranges, dependencies and deletes.

    Raises :class:`RemoteProtocolError` if *data* is not a well-formed update.

    Every update from a browser or a peer passes through here, so the common
    structs (items with string or deleted content, one-byte integers) are read
    inline; other content goes through :class:`~crdt.lib0.Reader`.
    """
    try:
        return _parse_update(data)
    except IndexError:
        raise RemoteProtocolError("unexpected end of update") from None


def simple_span(data: bytes) -> tuple[int, int, int] | bool | None:
    """What one typed keystroke's update spans, read from its first bytes:
    ``(client, first clock, clock after)`` for one item of ASCII text with
    its origins, True for an update with no structs (a deletion), and None
    for any other shape (which only :func:`parse_update` reads). Nothing is
    validated here: the caller parses whatever it goes on to use."""
    try:
        if data[0] == 0:
            return True
        if data[0] != 1 or data[1] != 1:  # one client, one struct
            return None
        pos = 2
        client = data[pos]
        if client < 0x80:
            pos += 1
        else:
            client, pos = _varuint(data, pos)
        clock = data[pos]
        if clock < 0x80:
            pos += 1
        else:
            clock, pos = _varuint(data, pos)
        info = data[pos]
        pos += 1
        if info & 0x1F != 4 or info & _BIT6 or not info & _BIT8:
            return None  # not a string item placed after its origin
        for _ in range(4 if info & _BIT7 else 2):  # the origins' ids
            while data[pos] & 0x80:
                pos += 1
            pos += 1
        n = data[pos]
        if n < 0x80:
            pos += 1
        else:
            n, pos = _varuint(data, pos)
        if not data[pos : pos + n].isascii():
            return None
        return client, clock, clock + n
    except (IndexError, RemoteProtocolError):
        return None


def _varuint(data: bytes, pos: int) -> tuple[int, int]:
    """A varuint of two bytes or more at *pos*: (value, position after)."""
    result = data[pos] & 0x7F
    for shift in _VARUINT_SHIFTS:
        pos += 1
        byte = data[pos]
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result, pos + 1
    raise RemoteProtocolError("integer too long")


def _read_id(data: bytes, pos: int, ids: list[tuple[int, int]]) -> int:
    """Append the (client, clock) id at *pos* to *ids*; return the position after it."""
    client = data[pos]
    if client < 0x80:
        pos += 1
    else:
        client, pos = _varuint(data, pos)
    clock = data[pos]
    if clock < 0x80:
        pos += 1
    else:
        clock, pos = _varuint(data, pos)
    ids.append((client, clock))
    return pos


def _parse_update(data: bytes) -> UpdateInfo:
    info = UpdateInfo()
    refs: list[tuple[int, int]] = []
    ranges = info.ranges
    needs = info.needs
    size = len(data)
    pos = 0
    v = data[pos]
    if v < 0x80:
        pos += 1
    else:
        v, pos = _varuint(data, pos)
    if v > size - pos:
        raise RemoteProtocolError("element count larger than the message")
    for _ in range(v):
        # struct count, client, first clock
        n_structs = data[pos]
        if n_structs < 0x80:
            pos += 1
        else:
            n_structs, pos = _varuint(data, pos)
        client = data[pos]
        if client < 0x80:
            pos += 1
        else:
            client, pos = _varuint(data, pos)
        clock = data[pos]
        if clock < 0x80:
            pos += 1
        else:
            clock, pos = _varuint(data, pos)
        start = clock
        if client in ranges:
            raise RemoteProtocolError("client appears twice in an update")
        if n_structs == 0 or n_structs > size - pos:
            raise RemoteProtocolError("bad struct count")
        need = start
        for _ in range(n_structs):
            byte = data[pos]
            pos += 1
            ref = byte & 0x1F
            if ref == 0 or ref == 10:  # GC, Skip
                length = data[pos]
                if length < 0x80:
                    pos += 1
                else:
                    length, pos = _varuint(data, pos)
                if ref == 10:
                    need = clock + length  # what was skipped must be known locally
            else:
                if byte & _BIT8:  # origin
                    pos = _read_id(data, pos, refs)
                if byte & _BIT7:  # right origin
                    pos = _read_id(data, pos, refs)
                if not byte & (_BIT8 | _BIT7):
                    r = Reader(data, pos)
                    if r.read_varuint() == 1:
                        r.read_var_string()  # parent is a root type, by name
                    else:
                        refs.append((r.read_varuint(), r.read_varuint()))
                    if byte & _BIT6:
                        r.read_var_string()
                    pos = r.pos
                if ref == 4:  # ContentString: its clock length counts UTF-16 code units
                    n = data[pos]
                    if n < 0x80:
                        pos += 1
                    else:
                        n, pos = _varuint(data, pos)
                    end = pos + n
                    if end > size:
                        raise RemoteProtocolError("length runs past the end of the message")
                    raw = data[pos:end]
                    pos = end
                    if raw.isascii():
                        length = n
                    else:
                        try:
                            length = _utf16_length(raw.decode("utf-8"))
                        except UnicodeDecodeError as exc:
                            raise RemoteProtocolError("string is not valid UTF-8") from exc
                elif ref == 1:  # ContentDeleted
                    length = data[pos]
                    if length < 0x80:
                        pos += 1
                    else:
                        length, pos = _varuint(data, pos)
                else:
                    r = Reader(data, pos)
                    length = _content_length(r, ref)
                    pos = r.pos
            if length <= 0:
                raise RemoteProtocolError("struct of zero length")
            clock += length
        ranges[client] = (start, clock)
        if need > 0:
            needs[client] = need
    for client, clock in refs:
        span = ranges.get(client)
        if span is not None and span[0] <= clock < span[1]:
            continue  # points inside this update
        if needs.get(client, 0) <= clock:
            needs[client] = clock + 1
    if pos == size - 1 and data[pos] == 0:
        return info  # no delete set: the common case of typing
    r = Reader(data, pos)
    for _ in range(r.read_count()):
        client = r.read_varuint()
        for _ in range(r.read_count()):
            clock = r.read_varuint()
            length = r.read_varuint()
            if length == 0:
                raise RemoteProtocolError("empty delete range")
            info.deletes.append((client, clock, length))
            end = clock + length
            span = ranges.get(client)
            if span is None:
                required = end
            elif end <= span[1]:
                required = min(end, span[0])
            else:
                required = end
            if needs.get(client, 0) < required:
                needs[client] = required
    if not r.at_end():
        raise RemoteProtocolError("trailing bytes after update")
    return info


def decode_state_vector(data: bytes) -> StateVector:
    """Decode (and so validate) state-vector bytes from the network or pycrdt."""
    r = Reader(data)
    sv: StateVector = {}
    for _ in range(r.read_count()):
        client = r.read_varuint()
        sv[client] = r.read_varuint()
    if not r.at_end():
        raise RemoteProtocolError("trailing bytes after state vector")
    return sv


def encode_state_vector(sv: Mapping[int, int]) -> bytes:
    """Canonical encoding: entries sorted by client (pycrdt's order is not)."""
    w = Writer()
    entries = sorted((c, k) for c, k in sv.items() if k > 0)
    w.write_varuint(len(entries))
    for client, clock in entries:
        w.write_varuint(client)
        w.write_varuint(clock)
    return w.to_bytes()


def delete_set_of(update: bytes) -> DeleteRanges:
    """Sorted, merged delete ranges of an update (for digests and checks)."""
    merged: DeleteRanges = []
    for client, clock, length in sorted(parse_update(update).deletes):
        if merged and merged[-1][0] == client and merged[-1][1] + merged[-1][2] >= clock:
            last = merged[-1]
            merged[-1] = (client, last[1], max(last[1] + last[2], clock + length) - last[1])
        else:
            merged.append((client, clock, length))
    return merged
