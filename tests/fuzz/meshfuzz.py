"""Shared material for the fuzz tests: a corpus of *real* inputs (peer
messages of every type, Yjs updates made by pycrdt, y-websocket frames) and
the mutators applied to them.

A mutation is a list of plain tuples (``("flip", 17, 3)``, ``("lie", 2,
2**32)``, ...), so hypothesis can generate and shrink it and print it when a
property fails, and the seeded endpoint tests can draw the same tuples from a
``random.Random``. :func:`mutate` applies them.

Structure-aware: :func:`varuint_offsets` runs the project's own decoder over a
*valid* input with a recording ``Reader`` and returns where every varuint
(type byte, lengths, counts, clocks, client ids...) starts; the ``lie`` and
``overlong`` operations rewrite exactly those fields.
"""

from __future__ import annotations

import functools
import json
import random
from collections.abc import Callable, Sequence
from types import ModuleType
from typing import Any

from hypothesis import strategies as st
from pycrdt import Array, Doc, Map, Text, XmlElement, XmlFragment, XmlText

from crdt import lib0, yupdate, ywire
from crdt import peerwire as pw
from crdt.document import Document
from crdt.lib0 import encode_varuint

Op = tuple[Any, ...]

# Values worth lying with in a length or count field: boundaries of varuint
# widths, of 32/53/56/64-bit integers and of the protocol's own limits.
INTERESTING: tuple[int, ...] = (
    0,
    1,
    2,
    15,
    16,
    17,
    63,
    64,
    65,
    127,
    128,
    200,
    201,
    255,
    300,
    301,
    16383,
    16384,
    65535,
    65536,
    100_000,
    100_001,
    2**21,
    2**28 - 1,
    2**31 - 1,
    2**31,
    2**32 - 1,
    2**32,
    2**35,
    2**49,
    2**53 - 1,
    2**53,
    2**56 - 1,
    2**56,
    2**63,
    2**64 - 1,
    pw.MAX_FRAME_BYTES,
    pw.MAX_FRAME_BYTES + 1,
)

# -- structure: where the varuints of a valid input are ----------------------------


def varuint_offsets(module: ModuleType, decode: Callable[[bytes], object], data: bytes) -> tuple[int, ...]:
    """Offsets at which *decode* (a function of *module*, which reads through
    ``module.Reader``) reads a varuint while decoding the valid input *data*."""
    return _varuint_offsets(module, decode, data)


@functools.lru_cache(maxsize=4096)
def _varuint_offsets(module: ModuleType, decode: Callable[[bytes], object], data: bytes) -> tuple[int, ...]:
    offsets: list[int] = []

    class Recording(lib0.Reader):
        def read_varuint(self) -> int:
            offsets.append(self.pos)
            return super().read_varuint()

    original = module.Reader
    module.Reader = Recording
    try:
        decode(data)
    finally:
        module.Reader = original
    return tuple(sorted(set(offsets)))


def peer_offsets(frame: bytes) -> tuple[int, ...]:
    return _try_offsets(pw, pw.decode, frame)


def update_offsets(update: bytes) -> tuple[int, ...]:
    return varuint_offsets(yupdate, yupdate.parse_update, update)


def ywire_offsets(frame: bytes) -> tuple[int, ...]:
    return varuint_offsets(ywire, ywire.decode_message, frame)


# -- mutation ------------------------------------------------------------------


def _varuint_end(data: bytearray, pos: int) -> int:
    end = pos
    while end < len(data) and end - pos < 10:
        end += 1
        if data[end - 1] < 0x80:
            break
    return end


def mutate(data: bytes, ops: Sequence[Op], offsets: Sequence[int] = ()) -> bytes:
    """Apply *ops* to *data*. Field rewrites (``lie``, ``overlong``) come
    first, from the last field backwards, so that their offsets still hold;
    byte-level operations follow in order, positions taken modulo the length."""
    buf = bytearray(data)
    fields = [op for op in ops if op[0] in ("lie", "overlong")]
    others = [op for op in ops if op[0] not in ("lie", "overlong")]
    if fields and offsets:
        targets = sorted(((offsets[op[1] % len(offsets)], op) for op in fields), key=lambda t: -t[0])
        done: set[int] = set()
        for pos, op in targets:
            if pos in done or pos >= len(buf):
                continue
            done.add(pos)
            end = _varuint_end(buf, pos)
            if op[0] == "lie":
                buf[pos:end] = encode_varuint(op[2])
            else:  # the same value, non-canonically: one more continuation byte
                old = bytearray(buf[pos:end])
                if old and old[-1] < 0x80:
                    old[-1] |= 0x80
                    old.append(0)
                    buf[pos:end] = old
    elif fields:
        others = [("set", op[1], op[2] & 0xFF if op[0] == "lie" else 0x80) for op in fields] + others
    for op in others:
        kind = op[0]
        n = len(buf)
        if kind == "flip":
            if n:
                buf[op[1] % n] ^= 1 << op[2]
        elif kind == "set":
            if n:
                buf[op[1] % n] = op[2]
        elif kind == "insert":
            pos = op[1] % (n + 1)
            buf[pos:pos] = op[2]
        elif kind == "delete":
            if n:
                pos = op[1] % n
                del buf[pos : pos + op[2]]
        elif kind == "truncate":
            del buf[op[1] % (n + 1) :]
        elif kind == "dup":
            if n:
                pos = op[1] % n
                chunk = buf[pos : pos + op[2]]
                buf[pos:pos] = chunk
        elif kind == "append":
            buf += op[1]
        elif kind == "type":
            # Replace the leading varuint (a message type) with another number.
            end = _varuint_end(buf, 0)
            buf[0:end] = encode_varuint(op[1])
        else:  # pragma: no cover - a typo in a test
            raise AssertionError(f"unknown mutation {op!r}")
    return bytes(buf)


_index = st.integers(0, 1 << 20)
_value = st.one_of(st.sampled_from(INTERESTING), st.integers(0, 2**64 - 1))
_op = st.one_of(
    st.tuples(st.just("flip"), _index, st.integers(0, 7)),
    st.tuples(st.just("set"), _index, st.integers(0, 255)),
    st.tuples(st.just("insert"), _index, st.binary(min_size=1, max_size=8)),
    st.tuples(st.just("delete"), _index, st.integers(1, 16)),
    st.tuples(st.just("truncate"), _index),
    st.tuples(st.just("dup"), _index, st.integers(1, 32)),
    st.tuples(st.just("append"), st.binary(min_size=1, max_size=8)),
    st.tuples(st.just("type"), st.one_of(st.integers(0, 15), st.sampled_from(INTERESTING))),
    st.tuples(st.just("lie"), _index, _value),
    st.tuples(st.just("lie"), _index, _value),
    st.tuples(st.just("overlong"), _index),
)


def ops(max_ops: int = 4) -> st.SearchStrategy[list[Op]]:
    return st.lists(_op, min_size=1, max_size=max_ops)


_OP_KINDS = ("flip", "set", "insert", "delete", "truncate", "dup", "append", "type", "lie", "lie", "overlong")


def random_ops(rng: random.Random, max_ops: int = 4, allow_type: bool = True) -> list[Op]:
    """The same operations as :func:`ops`, drawn from a seeded generator."""
    out: list[Op] = []
    for _ in range(rng.randint(1, max_ops)):
        kind = rng.choice(_OP_KINDS)
        i = rng.randrange(1 << 20)
        value = rng.choice(INTERESTING) if rng.random() < 0.6 else rng.randrange(2**64)
        if kind == "flip":
            out.append((kind, i, rng.randrange(8)))
        elif kind == "set":
            out.append((kind, i, rng.randrange(256)))
        elif kind == "insert":
            out.append((kind, i, rng.randbytes(rng.randint(1, 8))))
        elif kind == "delete":
            out.append((kind, i, rng.randint(1, 16)))
        elif kind == "truncate":
            out.append((kind, i))
        elif kind == "dup":
            out.append((kind, i, rng.randint(1, 32)))
        elif kind == "append":
            out.append((kind, rng.randbytes(rng.randint(1, 8))))
        elif kind == "type" and allow_type:
            out.append((kind, rng.randrange(16)))
        elif kind == "overlong":
            out.append((kind, i))
        else:
            out.append(("lie", i, value))
    return out


# -- a corpus of real Yjs updates ---------------------------------------------------

DOC_NAME = "notes"
BASE_TEXT = "hello wörld 😀\nsecond line"
BASE_CLIENT = 1001


def _capture(doc: Doc[Any]) -> list[bytes]:
    captured: list[bytes] = []
    doc.observe(lambda event: captured.append(bytes(event.update)))
    return captured


@functools.cache
def base_state() -> bytes:
    """The whole state of the document every Node/peer fuzz target starts with."""
    doc = Document(DOC_NAME, BASE_CLIENT)
    doc.edit("seed", insert=BASE_TEXT)
    return doc.encode_state()


def fresh_document(name: str = DOC_NAME, client_id: int = 4242) -> Document:
    doc = Document(name, client_id)
    doc.load([base_state()])
    return doc


def edits_on(state: bytes, client_id: int, rng: random.Random, count: int, insert_only: bool = False) -> list[bytes]:
    """*count* incremental updates of random edits on top of *state*, each
    depending on the one before (a causal chain)."""
    doc: Doc[Any] = Doc(client_id=client_id)
    doc.apply_update(state)
    text = doc.get("content", type=Text)
    captured = _capture(doc)
    for _ in range(count):
        current = str(text)
        size = len(current.encode())
        if size and not insert_only and rng.random() < 0.35:
            # Delete a range of whole code points (pycrdt positions are UTF-8 bytes).
            start_cp = rng.randrange(len(current))
            end_cp = min(len(current), start_cp + rng.randint(1, 4))
            start = len(current[:start_cp].encode())
            end = len(current[:end_cp].encode())
            del text[start:end]
        else:
            at_cp = rng.randint(0, len(current))
            at = len(current[:at_cp].encode())
            text.insert(at, rng.choice(["a", "xyz", "é", "😀", "\n", "naïve ", "—", "🙂🙂"]))
    return captured


@functools.cache
def text_updates() -> tuple[bytes, ...]:
    """Real updates that build on :func:`base_state`: causal chains from two
    clients (so later ones are orphans when sent alone), concurrent edits and
    delete-only edits."""
    rng = random.Random(7)
    out: list[bytes] = []
    out += edits_on(base_state(), 2002, rng, 6)
    out += edits_on(base_state(), 3003, rng, 4)
    # Delete-only: leaves the state vector alone, changes the delete set.
    doc: Doc[Any] = Doc(client_id=3004)
    doc.apply_update(base_state())
    text = doc.get("content", type=Text)
    captured = _capture(doc)
    del text[0:5]
    out += captured
    # A whole state from an unrelated document (concurrent root inserts).
    other: Doc[Any] = Doc(client_id=5005)
    other.get("content", type=Text).insert(0, "unrelated ✓")
    out.append(bytes(other.get_update()))
    return tuple(out)


@functools.cache
def equivocating_updates() -> tuple[bytes, ...]:
    """Causal chains of edits by *one* client id (6006) made on separate
    replicas: the same (client, clock) carries different content in
    different chains. A client that reuses its id (a bug, or on purpose)
    sends such updates; each is well-formed on its own."""
    out: list[bytes] = []
    for k in range(6):
        out += edits_on(base_state(), 6006, random.Random(k), 3)
    return tuple(out)


@functools.cache
def rich_updates() -> tuple[bytes, ...]:
    """Updates with every kind of content Yjs has: maps and arrays of JSON
    values (ContentAny), binary, nested types, formats, embeds, XML and a
    subdocument, on top of :func:`base_state`."""
    doc: Doc[Any] = Doc(client_id=4004)
    doc.apply_update(base_state())
    captured = _capture(doc)
    m = doc.get("m", type=Map)
    a = doc.get("a", type=Array)
    t = doc.get("content", type=Text)
    m["i"] = -12
    m["f"] = 1.5
    m["s"] = "x"
    m["n"] = None
    m["b"] = True
    m["bytes"] = b"\x01\x02"
    m["nested"] = {"k": [1, 2, {"z": None}]}
    m["big"] = 2**40
    a.append(Map({"x": 1}))
    a.append(Text("hi"))
    a.append(Array([1, 2]))
    t.insert(0, "bold")
    t.format(0, 3, {"bold": True})
    t.insert_embed(2, {"image": "x.png"})
    m["sub"] = Doc()
    x = doc.get("x", type=XmlFragment)
    x.children.append(XmlElement("p", {"a": "b"}, [XmlText("t")]))
    del t[0:2]
    return tuple(captured)


@functools.cache
def all_updates() -> tuple[bytes, ...]:
    return (*text_updates(), *rich_updates(), base_state(), b"\x00\x00")


@functools.cache
def state_vectors() -> tuple[bytes, ...]:
    svs = [b"\x00", Document(DOC_NAME, 9).encode_state_vector(), fresh_document().encode_state_vector()]
    doc: Doc[Any] = Doc(client_id=77)
    doc.apply_update(base_state())
    for update in text_updates()[:6]:
        doc.apply_update(update)
        svs.append(bytes(doc.get_state()))
    return tuple(svs)


def awareness_update(entries: Sequence[tuple[int, int, object]]) -> bytes:
    return ywire.awareness_update([ywire.AwarenessEntry(c, k, json.dumps(s)) for c, k, s in entries])


@functools.cache
def awareness_updates() -> tuple[bytes, ...]:
    return (
        awareness_update([(11, 1, {"user": {"name": "Ann", "color": "#f00"}, "cursor": None})]),
        awareness_update([(11, 2, None)]),
        awareness_update([(12, 5, {"user": {"name": "Bö 😀"}}), (13, 1, {})]),
        awareness_update([]),
    )


# -- peer messages of every type -------------------------------------------------------


_NAME_FIRST = "abcxyzABZ019_-"
names = st.one_of(
    st.sampled_from([DOC_NAME, "other", "notes.v2", "a", "x" * 128]),
    st.builds(
        lambda first, rest: first + rest,
        st.sampled_from(_NAME_FIRST),
        st.text(alphabet=_NAME_FIRST + ".", max_size=20),
    ),
)
# 56 bits: the widest varuint a Reader accepts (8 bytes of 7 bits).
uint56 = st.one_of(st.sampled_from([0, 1, 127, 128, 2**32 - 1, 2**53, 2**56 - 1]), st.integers(0, 2**56 - 1))
peer_ids = st.binary(min_size=16, max_size=16)
hashes = st.binary(min_size=16, max_size=16)
addresses = st.one_of(
    st.sampled_from(["", "127.0.0.1:7400", "[::1]:7400", "0.0.0.0:1", "example.org:7400"]),
    st.text(max_size=40).filter(lambda s: len(s.encode()) <= pw.MAX_ADDRESS_BYTES),
)
update_bytes = st.one_of(st.sampled_from(all_updates()), st.binary(max_size=40))
sv_bytes = st.one_of(st.sampled_from(state_vectors()), st.binary(max_size=20))
aw_bytes = st.one_of(st.sampled_from(awareness_updates()), st.binary(max_size=20))


def messages(own_peer_id: bytes | None = None) -> st.SearchStrategy[pw.Message]:
    """Valid peer messages of every type (within every limit)."""
    hello_ids = peer_ids if own_peer_id is None else st.one_of(st.just(own_peer_id), peer_ids)
    return st.one_of(
        st.builds(pw.Hello, st.just(pw.VERSION), hello_ids, addresses, uint56),
        st.builds(
            pw.Peers,
            st.lists(st.tuples(peer_ids, addresses), max_size=pw.MAX_PEERS_PER_MESSAGE).map(tuple),
        ),
        st.builds(pw.Ping, uint56),
        st.builds(pw.Pong, uint56),
        st.builds(pw.Digest, hashes, uint56),
        st.builds(pw.DocDigests, st.lists(st.tuples(names, hashes), max_size=8).map(tuple)),
        st.builds(pw.SyncStep1, names, sv_bytes, st.booleans()),
        st.builds(pw.SyncStep2, names, update_bytes),
        st.builds(pw.Update, names, update_bytes),
        st.builds(pw.Awareness, names, aw_bytes),
        st.builds(pw.Bye, st.text(max_size=60).filter(lambda s: len(s.encode()) <= pw.MAX_REASON_BYTES)),
        st.builds(
            pw.IHave,
            names,
            st.lists(st.tuples(uint56, uint56), max_size=6).map(tuple),
            st.lists(st.tuples(uint56, uint56, st.integers(1, 2**56 - 1)), max_size=6).map(tuple),
        ),
        st.just(pw.Prune()),
        st.builds(pw.Graft, st.lists(st.tuples(names, sv_bytes), max_size=3).map(tuple)),
    )


def one_of_each_type() -> list[pw.Message]:
    """A fixed valid message of every type (seeds for the seeded generators)."""
    return [
        pw.Hello(pw.VERSION, bytes(range(16)), "127.0.0.1:7400", 5),
        pw.Peers(((bytes(16), "10.0.0.1:7400"), (b"\x01" * 16, "[::1]:1"))),
        pw.Ping(7),
        pw.Pong(7),
        pw.Digest(b"\x02" * 16, 3),
        pw.DocDigests(((DOC_NAME, b"\x03" * 16), ("other", b"\x04" * 16))),
        pw.SyncStep1(DOC_NAME, state_vectors()[2], True),
        pw.SyncStep2(DOC_NAME, text_updates()[0]),
        pw.Update(DOC_NAME, text_updates()[1]),
        pw.Awareness(DOC_NAME, awareness_updates()[0]),
        pw.Bye("bye"),
        pw.IHave(DOC_NAME, ((5, 3), (7, 1)), ((5, 1, 2),)),
        pw.Prune(),
        pw.Graft(((DOC_NAME, state_vectors()[2]),)),
    ]


def with_inner(msg: pw.Message, inner: bytes) -> pw.Message:
    """The same message with its inner payload (update, state vector or
    awareness update) replaced."""
    if isinstance(msg, pw.SyncStep1):
        return pw.SyncStep1(msg.name, inner, msg.reply_step1)
    if isinstance(msg, pw.Graft) and msg.documents:
        return pw.Graft(((msg.documents[0][0], inner), *msg.documents[1:]))
    if isinstance(msg, (pw.SyncStep2, pw.Update, pw.Awareness)):
        return type(msg)(msg.name, inner)
    return msg


def inner_offsets(msg: pw.Message) -> tuple[int, ...]:
    if isinstance(msg, pw.SyncStep1):
        return _try_offsets(yupdate, yupdate.decode_state_vector, msg.state_vector)
    if isinstance(msg, pw.Graft) and msg.documents:
        return _try_offsets(yupdate, yupdate.decode_state_vector, msg.documents[0][1])
    if isinstance(msg, (pw.SyncStep2, pw.Update)):
        return _try_offsets(yupdate, yupdate.parse_update, msg.update)
    if isinstance(msg, pw.Awareness):
        return _try_offsets(ywire, ywire.decode_awareness, msg.update)
    return ()


def _try_offsets(module: ModuleType, decode: Callable[[bytes], object], data: bytes) -> tuple[int, ...]:
    try:
        return varuint_offsets(module, decode, data)
    except Exception:
        return ()  # not valid to begin with (random bytes): plain byte mutations


def inner_of(msg: pw.Message) -> bytes | None:
    if isinstance(msg, pw.SyncStep1):
        return msg.state_vector
    if isinstance(msg, pw.Graft) and msg.documents:
        return msg.documents[0][1]
    if isinstance(msg, (pw.SyncStep2, pw.Update, pw.Awareness)):
        return msg.update
    return None


def mutate_message(msg: pw.Message, inner_ops: Sequence[Op] | None, outer_ops: Sequence[Op] | None) -> bytes:
    """Encode *msg* after mutating its inner payload, then mutate the frame."""
    inner = inner_of(msg)
    if inner is not None and inner_ops:
        msg = with_inner(msg, mutate(inner, inner_ops, inner_offsets(msg)))
    frame = pw.encode(msg)
    if outer_ops:
        frame = mutate(frame, outer_ops, peer_offsets(frame))
    return frame


def describe(frames: Sequence[bytes]) -> str:
    return "[" + ", ".join(f"bytes.fromhex({f.hex()!r})" for f in frames) + "]"


# -- seeded generation ---------------------------------------------------------------


class ByteRandom(random.Random):
    """A ``random.Random`` whose every choice is read from a byte string (the
    FuzzedDataProvider pattern): hypothesis draws the bytes, the generators
    below turn them into structured inputs, and shrinking the bytes (towards
    fewer and smaller ones) shrinks the input towards the first, simplest
    choice of every generator. When the bytes run out every choice is 0."""

    def __init__(self, data: bytes) -> None:
        self._data = data
        self._pos = 0
        super().__init__(0)

    def _take(self, n: int) -> bytes:
        chunk = self._data[self._pos : self._pos + n]
        self._pos += n
        return chunk.ljust(n, b"\0")

    def getrandbits(self, k: int) -> int:
        if k == 0:
            return 0
        return int.from_bytes(self._take((k + 7) // 8), "little") & ((1 << k) - 1)

    def random(self) -> float:
        return self.getrandbits(53) / (1 << 53)

    def randbytes(self, n: int) -> bytes:
        return self._take(n)


def gen_name(rng: random.Random) -> str:
    fixed = [DOC_NAME, DOC_NAME, DOC_NAME, "other", "notes.v2", "a", "x" * 128]
    if rng.random() < 0.8:
        return rng.choice(fixed)
    return rng.choice(_NAME_FIRST) + "".join(rng.choice(_NAME_FIRST + ".") for _ in range(rng.randrange(12)))


def gen_uint(rng: random.Random) -> int:
    return rng.choice(INTERESTING) % 2**56 if rng.random() < 0.5 else rng.randrange(2**56)


def gen_address(rng: random.Random) -> str:
    fixed = ["", "127.0.0.1:7400", "[::1]:7400", "0.0.0.0:1", "example.org:7400", "é😀:1"]
    return rng.choice(fixed) if rng.random() < 0.8 else rng.randbytes(rng.randrange(40)).decode("latin-1")


def gen_update(rng: random.Random) -> bytes:
    return rng.choice(all_updates()) if rng.random() < 0.85 else rng.randbytes(rng.randrange(40))


def gen_message(rng: random.Random, peer_id: bytes | None = None, doc_only: bool = False) -> pw.Message:
    """A valid peer message (*doc_only*: one of those that touch documents)."""
    kinds = [pw.Update, pw.SyncStep2, pw.SyncStep1, pw.Awareness, pw.Digest, pw.DocDigests, pw.IHave, pw.Graft]
    if not doc_only:
        kinds += [pw.Hello, pw.Peers, pw.Ping, pw.Pong, pw.Bye, pw.Prune]
    kind = rng.choice(kinds)
    if kind in (pw.Update, pw.SyncStep2):
        return kind(gen_name(rng), gen_update(rng))
    if kind is pw.IHave:
        clients = [1, 2, 3, gen_uint(rng)]
        ends = tuple(
            (rng.choice(clients), gen_uint(rng) if rng.random() < 0.2 else rng.randrange(50))
            for _ in range(rng.randrange(3))
        )
        deletes = tuple((rng.choice(clients), rng.randrange(50), rng.randrange(1, 10)) for _ in range(rng.randrange(3)))
        return pw.IHave(gen_name(rng), ends, deletes)
    if kind is pw.Prune:
        return pw.Prune()
    if kind is pw.Graft:
        docs = []
        for _ in range(rng.randrange(3)):
            sv = rng.choice(state_vectors()) if rng.random() < 0.85 else rng.randbytes(rng.randrange(20))
            docs.append((gen_name(rng), sv))
        return pw.Graft(tuple(docs))
    if kind is pw.SyncStep1:
        sv = rng.choice(state_vectors()) if rng.random() < 0.85 else rng.randbytes(rng.randrange(20))
        return pw.SyncStep1(gen_name(rng), sv, rng.random() < 0.5)
    if kind is pw.Awareness:
        aw = rng.choice(awareness_updates()) if rng.random() < 0.85 else rng.randbytes(rng.randrange(20))
        return pw.Awareness(gen_name(rng), aw)
    if kind is pw.Digest:
        return pw.Digest(rng.randbytes(16), gen_uint(rng))
    if kind is pw.DocDigests:
        return pw.DocDigests(tuple((gen_name(rng), rng.randbytes(16)) for _ in range(rng.randrange(4))))
    if kind is pw.Hello:
        pid = peer_id if peer_id is not None and rng.random() < 0.5 else rng.randbytes(16)
        return pw.Hello(pw.VERSION, pid, gen_address(rng), gen_uint(rng))
    if kind is pw.Peers:
        return pw.Peers(tuple((rng.randbytes(16), gen_address(rng)) for _ in range(rng.randrange(5))))
    if kind in (pw.Ping, pw.Pong):
        return kind(gen_uint(rng))
    return pw.Bye(rng.randbytes(rng.randrange(30)).decode("latin-1"))


def gen_peer_frame(rng: random.Random, peer_id: bytes | None = None, doc_only: bool = False) -> bytes:
    """One frame for a peer: random bytes, a valid message, or a valid
    message mutated inside (its update, state vector or awareness bytes),
    outside (the frame), or both."""
    r = rng.random()
    if r < 0.12:
        return rng.randbytes(rng.randrange(64))
    if r < 0.18:
        kind = rng.choice([*range(16), *INTERESTING[:12]])
        return encode_varuint(kind) + encode_varuint(rng.choice(INTERESTING)) + rng.randbytes(rng.randrange(40))
    msg = gen_message(rng, peer_id, doc_only)
    if r < 0.35:
        return pw.encode(msg)
    if r < 0.6:
        return mutate_message(msg, random_ops(rng), None)
    if r < 0.85:
        return mutate_message(msg, None, random_ops(rng))
    return mutate_message(msg, random_ops(rng, 2), random_ops(rng, 2))
