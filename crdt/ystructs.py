"""The structs of a Yjs v1 update, decoded whole, and written back.

``crdt.yupdate`` reads an update only as far as causal delivery needs. History
needs more: the text of the document as it was at a snapshot (a state vector
and a delete set), and the order of its characters. Both start from the
document's whole state, kept with its deleted content (``skip_gc``):

* :func:`cut` writes the update of the document *as it was at a snapshot*:
  every client's structs up to the snapshot's clock (the last one shortened
  where the clock falls inside it) and the snapshot's delete set. Loading it
  into a fresh pycrdt document gives that version's text. This is what Yjs's
  ``createDocFromSnapshot`` does; pycrdt 0.14's ``Doc.from_snapshot`` panics
  or gives the wrong text on real histories (docs/history.md), so it is not
  used.
* :func:`decode` hands :mod:`crdt.timeline` every item with its origins.

Only pycrdt's own output is decoded here (a replica's state): anything
malformed is a LocalProtocolError, a bug, not input to forgive.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from crdt.errors import LocalProtocolError, RemoteProtocolError
from crdt.lib0 import Reader, Writer

Id = tuple[int, int]
DeleteRanges = list[tuple[int, int, int]]

GC = 0
DELETED = 1
BINARY = 3
STRING = 4
EMBED = 5
FORMAT = 6
TYPE = 7
ANY = 8
DOC = 9
SKIP = 10
_BIT8, _BIT7, _BIT6 = 0x80, 0x40, 0x20


@dataclass(slots=True)
class Struct:
    """One struct: a GC range, a Skip, or an item with its content.

    ``parent`` is a root type's name, an item id (a nested type), or None
    when the item takes its parent from its origins. ``raw`` is the encoded
    content of contents that are never split (types, embeds, binaries).
    """

    kind: int
    client: int
    clock: int
    length: int
    info: int = 0
    origin: Id | None = None
    right: Id | None = None
    parent: str | Id | None = None
    sub: str | None = None
    text: str | None = None  # STRING
    values: list[bytes] | None = None  # ANY: each value, encoded
    raw: bytes = b""

    @property
    def is_item(self) -> bool:
        return self.kind not in (GC, SKIP)

    def head(self, length: int) -> Struct:
        """The first *length* clocks of this struct (its origins unchanged,
        as Yjs keeps them on the left part of a split)."""
        if length >= self.length:
            return self
        if self.kind == STRING:
            assert self.text is not None
            return _replace(self, length, text=utf16_slice(self.text, 0, length))
        if self.kind == ANY:
            assert self.values is not None
            return _replace(self, length, values=self.values[:length])
        if self.kind in (GC, DELETED, SKIP):
            return _replace(self, length)
        raise LocalProtocolError(f"a struct of content {self.kind} spans one clock and cannot be split")

    def tail(self, offset: int) -> Struct:
        """The clocks from *offset* on, as the right part of a Yjs split: its
        origin is the last clock of the left part."""
        if self.kind == STRING:
            assert self.text is not None
            part = _replace(self, self.length - offset, text=utf16_slice(self.text, offset, self.length))
        elif self.kind == ANY:
            assert self.values is not None
            part = _replace(self, self.length - offset, values=self.values[offset:])
        elif self.kind in (GC, DELETED):
            part = _replace(self, self.length - offset)
        else:
            raise LocalProtocolError(f"a struct of content {self.kind} spans one clock and cannot be split")
        part.clock = self.clock + offset
        if self.is_item:
            part.origin = (self.client, self.clock + offset - 1)
            part.info |= _BIT8
        return part


def _replace(s: Struct, length: int, **changes: object) -> Struct:
    part = Struct(
        s.kind, s.client, s.clock, length, s.info, s.origin, s.right, s.parent, s.sub, s.text, s.values, s.raw
    )
    for key, value in changes.items():
        setattr(part, key, value)
    return part


def utf16_length(text: str) -> int:
    if text.isascii():
        return len(text)
    return len(text) + sum(1 for ch in text if ord(ch) > 0xFFFF)


def utf16_slice(text: str, start: int, stop: int) -> str:
    """*text*[start:stop] counted in UTF-16 code units, as Yjs clocks count.
    A cut inside a surrogate pair gives U+FFFD for the half, as Yjs does."""
    if text.isascii() or all(ord(ch) <= 0xFFFF for ch in text):
        return text[start:stop]
    units = text.encode("utf-16-le")[2 * start : 2 * stop]
    return units.decode("utf-16-le", errors="replace")


# -- reading -----------------------------------------------------------------------


def decode(update: bytes) -> tuple[dict[int, list[Struct]], DeleteRanges]:
    """Every client's structs, in clock order, and the delete set."""
    try:
        return _decode(update)
    except (IndexError, ValueError, RemoteProtocolError) as exc:
        raise LocalProtocolError(f"not a whole-state update: {exc}") from exc


def _decode(update: bytes) -> tuple[dict[int, list[Struct]], DeleteRanges]:
    r = Reader(update)
    clients: dict[int, list[Struct]] = {}
    for _ in range(r.read_varuint()):
        count = r.read_varuint()
        client = r.read_varuint()
        clock = r.read_varuint()
        structs = clients.setdefault(client, [])
        for _ in range(count):
            s = _read_struct(r, client, clock)
            structs.append(s)
            clock += s.length
    deletes: DeleteRanges = []
    for _ in range(r.read_varuint()):
        client = r.read_varuint()
        for _ in range(r.read_varuint()):
            clock = r.read_varuint()
            deletes.append((client, clock, r.read_varuint()))
    if not r.at_end():
        raise ValueError("bytes after the delete set")
    return clients, deletes


def _read_id(r: Reader) -> Id:
    return r.read_varuint(), r.read_varuint()


def _read_struct(r: Reader, client: int, clock: int) -> Struct:
    info = r.read_u8()
    kind = info & 0x1F
    if kind in (GC, SKIP):
        return Struct(kind, client, clock, r.read_varuint())
    s = Struct(kind, client, clock, 1, info)
    if info & _BIT8:
        s.origin = _read_id(r)
    if info & _BIT7:
        s.right = _read_id(r)
    if not info & (_BIT8 | _BIT7):
        if r.read_varuint() == 1:
            s.parent = r.read_var_string()
        else:
            s.parent = _read_id(r)
        if info & _BIT6:
            s.sub = r.read_var_string()
    start = r.pos
    if kind == DELETED:
        s.length = r.read_varuint()
    elif kind == STRING:
        s.text = r.read_var_string()
        s.length = utf16_length(s.text)
    elif kind == ANY:
        s.values = []
        for _ in range(r.read_varuint()):
            at = r.pos
            r.skip_any()
            s.values.append(r.data[at : r.pos])
        s.length = len(s.values)
    else:
        if kind == BINARY:
            r.skip_var_bytes()
        elif kind == EMBED:
            r.read_var_string()
        elif kind == FORMAT:
            r.read_var_string()
            r.read_var_string()
        elif kind == TYPE:
            ref = r.read_varuint()
            if ref in (3, 5):  # XmlElement, XmlHook: a name
                r.read_var_string()
        elif kind == DOC:
            r.read_var_string()
            r.skip_any()
        else:
            raise ValueError(f"content {kind}")
        s.raw = r.data[start : r.pos]
    if s.length <= 0:
        raise ValueError("empty struct")
    return s


# -- writing -----------------------------------------------------------------------


def _write_struct(w: Writer, s: Struct) -> None:
    if s.kind in (GC, SKIP):
        w.write_u8(s.kind)
        w.write_varuint(s.length)
        return
    info = s.info & ~(_BIT8 | _BIT7) | (_BIT8 if s.origin else 0) | (_BIT7 if s.right else 0)
    w.write_u8(info)
    if s.origin:
        w.write_varuint(s.origin[0])
        w.write_varuint(s.origin[1])
    if s.right:
        w.write_varuint(s.right[0])
        w.write_varuint(s.right[1])
    if not s.origin and not s.right:
        if isinstance(s.parent, str):
            w.write_varuint(1)
            w.write_var_string(s.parent)
        elif s.parent is not None:
            w.write_varuint(0)
            w.write_varuint(s.parent[0])
            w.write_varuint(s.parent[1])
        else:
            raise LocalProtocolError("an item with neither origins nor parent")
        if info & _BIT6:
            assert s.sub is not None
            w.write_var_string(s.sub)
    if s.kind == DELETED:
        w.write_varuint(s.length)
    elif s.kind == STRING:
        assert s.text is not None
        w.write_var_string(s.text)
    elif s.kind == ANY:
        assert s.values is not None
        w.write_varuint(len(s.values))
        for value in s.values:
            w.write_bytes(value)
    else:
        w.write_bytes(s.raw)


def write_delete_set(w: Writer, deletes: Sequence[tuple[int, int, int]]) -> None:
    by_client: dict[int, list[tuple[int, int]]] = {}
    for client, clock, length in sorted(deletes):
        by_client.setdefault(client, []).append((clock, length))
    w.write_varuint(len(by_client))
    for client, ranges in by_client.items():
        w.write_varuint(client)
        w.write_varuint(len(ranges))
        for clock, length in ranges:
            w.write_varuint(clock)
            w.write_varuint(length)


def cut(update: bytes, state_vector: Mapping[int, int], deletes: Sequence[tuple[int, int, int]]) -> bytes:
    """The update of the document as it was at a snapshot: *update* (a
    whole state, with deleted content) cut to *state_vector*, with the
    snapshot's delete set *deletes* in place of its own. Raises
    LocalProtocolError if *update* does not hold everything the snapshot
    names (the caller checks the state vector first)."""
    clients, _ = decode(update)
    w = Writer()
    kept: list[tuple[int, list[Struct]]] = []
    for client, structs in clients.items():
        upto = state_vector.get(client, 0)
        if upto <= 0:
            continue
        out: list[Struct] = []
        for s in structs:
            if s.clock >= upto:
                break
            out.append(s.head(upto - s.clock))
        if not out or out[0].clock != 0 or out[-1].clock + out[-1].length < upto:
            raise LocalProtocolError(f"client {client} is not held up to clock {upto}")
        kept.append((client, out))
    w.write_varuint(len(kept))
    for client, out in kept:
        w.write_varuint(len(out))
        w.write_varuint(client)
        w.write_varuint(0)
        for s in out:
            _write_struct(w, s)
    write_delete_set(w, deletes)
    return w.to_bytes()
