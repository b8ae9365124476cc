"""Fuzz target 2: ``crdt.node.Node.receive(link, frame, now)``.

A Node on the simulated network (``nodenet``) holds one document (``notes``,
with text) and one inbound link whose other end is the fuzzer. Each
example feeds it (maybe) a valid HELLO, then frames of every kind: random
bytes, valid peer messages of every type carrying real Yjs updates, and
mutations of those (of the frame, and of the update / state vector /
awareness bytes inside it). Like the shell, a frame that raises closes its
link (``link_closed``) and the peer opens a new one.

Invariants checked after every frame:

1. Only ``RemoteProtocolError`` escapes (anything else fails the test).
2. A frame that raised changed nothing: the same documents exist (none was
   created), and every document has the same text and ``digest()``.
3. A frame that did not decode into an UPDATE or SYNC_STEP2 for a document
   leaves that document's text and digest unchanged, and yields no
   ``DocChanged`` for it.
4. The documents the frame created are exactly those named by its
   ``DocCreated`` effects.
5. Whenever a document changed, it is exactly what the node *said* changed:
   a replica built through the trusted path (``Document.load``, what the
   store replays after a restart) from the document's initial state plus
   every ``DocChanged`` update reported so far has the same text and the
   same digest. A change the node made without reporting it (lost on
   restart, never pushed to peers) or a partly applied update fails this.
6. Every ``DocChanged`` update (stored, and pushed to every other link) is
   one that ``parse_update`` accepts, as every other peer will check it, and
   the log of them loads back without pycrdt panicking.

``test_node_receive_equivocating_updates`` feeds well-formed updates of a
client that reused its id (the same clocks with different content), with
the same invariants. ``test_memory_stays_bounded_under_garbage`` checks the
bounds over thousands of frames on one node.
"""

from __future__ import annotations

import random
import tracemalloc

import meshfuzz as mf
from hypothesis import HealthCheck, given, note, settings
from hypothesis import strategies as st
from nodenet import NodeNetwork

from crdt import peerwire as pw
from crdt.document import MAX_PENDING_BYTES, MAX_PENDING_UPDATES, Document
from crdt.errors import RemoteProtocolError
from crdt.node import CloseLink, DocChanged, DocCreated
from crdt.yupdate import parse_update

FUZZ = settings(
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

OWN_ID = bytes(range(16))
REMOTE_ID = bytes(range(100, 116))


class Harness:
    """One Node, its link from the fuzzer, and what the node reported about
    each document."""

    def __init__(self, seed: int, authenticated: bool) -> None:
        self.net = NodeNetwork(first_client_id=50_000)
        documents = {mf.DOC_NAME: mf.fresh_document()}
        self.node = self.net.add("127.0.0.1:1", seed=seed, peer_id=OWN_ID, documents=documents)
        self.authenticated = authenticated
        # Per document: the updates that rebuild it (initial state, then every DocChanged).
        self.log: dict[str, list[bytes]] = {mf.DOC_NAME: [mf.base_state()]}
        self.open_link()

    def open_link(self) -> None:
        """The peer (the fuzzer) connects anew."""
        self.link = self.net.attach(self.node.listen, "10.0.0.2", REMOTE_ID if self.authenticated else None)

    def reconnect(self, say_hello: bool = False) -> None:
        """The link closes (the shell closes it after a refused frame; the
        node may have closed it) and the peer comes back on a new one, where
        it may say HELLO at once."""
        if self.link in self.net.routes:
            self.net.hang_up(self.link)
        self.open_link()
        if say_hello:
            self.net.feed(self.link, hello())

    def snapshot(self) -> dict[str, tuple[str, bytes, int]]:
        return {name: (doc.text, doc.digest(), doc.pending_count()) for name, doc in self.node.documents.items()}

    def feed(self, frame: bytes) -> None:
        self.net.now += 0.01
        before = self.snapshot()
        try:
            effects = self.net.feed(self.link, frame)
        except RemoteProtocolError:
            after = self.snapshot()
            assert after.keys() == before.keys(), f"a refused frame created {sorted(after.keys() - before.keys())}"
            for name, (text, digest, _) in before.items():
                assert after[name][:2] == (text, digest), f"a refused frame changed document {name!r}"
            self.reconnect()
            return
        msg = pw.decode(frame)  # it was accepted, so it decodes
        target = msg.name if isinstance(msg, (pw.Update, pw.SyncStep2)) else None
        created = {e.name for e in effects if isinstance(e, DocCreated)}
        assert set(self.node.documents) - set(before) == created, (created, sorted(self.node.documents))
        assert not created & set(before), f"DocCreated for a document that existed: {created & set(before)}"
        for name in created:
            self.log[name] = []
        for effect in effects:
            if isinstance(effect, DocChanged):
                assert effect.name == target, f"{type(msg).__name__} changed document {effect.name!r}"
                try:
                    parse_update(effect.update)  # what every other peer will do with it
                except RemoteProtocolError as exc:
                    raise AssertionError(
                        f"the node stores and pushes to its peers an update they refuse ({exc}): {effect.update.hex()}"
                    ) from None
                self.log[effect.name].append(effect.update)
        for name, doc in self.node.documents.items():
            old = before.get(name)
            if name != target:
                assert old is None or (doc.text, doc.digest()) == old[:2], f"{type(msg).__name__} changed {name!r}"
                continue
            replica = Document(name, 1)
            try:
                replica.load(self.log[name])  # what the store replays after a restart
            except BaseException as exc:  # pycrdt's PanicException is a BaseException
                raise AssertionError(
                    f"the updates reported for {name!r} cannot be loaded back: {type(exc).__name__}: {exc}"
                ) from None
            assert (doc.text, doc.digest()) == (replica.text, replica.digest()), (
                f"document {name!r} differs from what its DocChanged effects describe: {doc.text!r} != {replica.text!r}"
            )
        if any(isinstance(e, CloseLink) and e.link == self.link for e in effects):
            self.reconnect()  # BYE, a HELLO from itself: the network closed the link


def hello(peer_id: bytes = REMOTE_ID, nonce: int = 3) -> bytes:
    return pw.encode(pw.Hello(pw.VERSION, peer_id, "", nonce))


def gen_case(entropy: bytes) -> tuple[int, bool, list[bytes]]:
    """Seed, whether the channel authenticated the peer, and 1-6 frames: random
    bytes, valid messages of every type (real updates, state vectors and
    awareness for the node's document and others) and mutations of them,
    inside and outside. Choices are read from the hypothesis-drawn bytes."""
    rng = mf.ByteRandom(entropy)
    seed = rng.randrange(4)
    authenticated = rng.random() < 0.5
    frames = []
    for _ in range(1 + rng.randrange(6)):
        if rng.random() < 0.2:  # a genuine update of the node's document (in order or not)
            frames.append(pw.encode(pw.Update(mf.DOC_NAME, rng.choice(mf.text_updates() + mf.rich_updates()))))
        else:
            frames.append(mf.gen_peer_frame(rng, REMOTE_ID, doc_only=rng.random() < 0.6))
    return seed, authenticated, frames


def run(entropy: bytes, send_hello: bool) -> Harness:
    seed, authenticated, sequence = gen_case(entropy)
    note(f"seed={seed} authenticated={authenticated} send_hello={send_hello}\nframes = {mf.describe(sequence)}")
    h = Harness(seed, authenticated)
    for frame in sequence:
        if send_hello and not h.node.links[h.link].ready:
            h.feed(hello())
        h.feed(frame)
    return h


# 2,200 + 900 = 3,100 cases


@settings(FUZZ, max_examples=2200)
@given(st.binary(min_size=8, max_size=400))
def test_node_receive_after_hello(entropy):
    run(entropy, True)


@settings(FUZZ, max_examples=900)
@given(st.binary(min_size=8, max_size=400))
def test_node_receive_without_hello(entropy):
    """Before HELLO only a HELLO is accepted; whatever else arrives is refused."""
    run(entropy, False)


@settings(FUZZ, max_examples=300)
@given(st.binary(min_size=2, max_size=40))
def test_node_receive_equivocating_updates(entropy):
    """Valid updates from one client id that reused its id on two replicas
    (see ``meshfuzz.equivocating_updates``), in any order. Each update is
    well-formed; the node must either refuse one or stay consistent: what
    it reports (stores, pushes) must describe its document and be accepted
    by its peers."""
    rng = mf.ByteRandom(entropy)
    sequence = [
        pw.encode(pw.Update(mf.DOC_NAME, rng.choice(mf.equivocating_updates()))) for _ in range(2 + rng.randrange(4))
    ]
    note(f"frames = {mf.describe(sequence)}")
    h = Harness(0, authenticated=False)
    h.feed(hello())
    for frame in sequence:
        h.feed(frame)


# The smallest case test_node_receive_equivocating_updates finds: client 6006
# writes "—" (one UTF-16 unit) at clock 0, then, reusing its id, "😀" (two
# units) at clock 0. Both are well-formed and ready.
REUSED_ID_DASH = bytes.fromhex("0101f62e00c4e90718e9071903e2809400")
REUSED_ID_EMOJI = bytes.fromhex("0101f62e00c4e9070be9070c04f09f988000")


def test_reused_client_id_does_not_make_the_node_push_what_peers_refuse():
    """Node A takes the two updates from one link; whatever it integrates it
    pushes to its other links. Peer B must accept what A pushes: if B
    refuses it, B closes its link to A (an honest peer) and counts a strike
    against it, on every anti-entropy round, until A is banned."""
    a = Harness(0, authenticated=False)
    a.feed(hello())
    # A's neighbour B on the network, which fails the test if B refuses a frame from A.
    b = a.net.add("127.0.0.1:2", seed=1, documents={mf.DOC_NAME: mf.fresh_document()})
    a.net.link(a.node.listen, b.listen)
    a.net.sent.clear()
    for update in (REUSED_ID_DASH, REUSED_ID_EMOJI):
        try:
            a.net.feed(a.link, pw.encode(pw.Update(mf.DOC_NAME, update)))
        except RemoteProtocolError:
            break  # refusing the second update is a fine answer
    pushed = [m for frm, to, m in a.net.sent if (frm, to) == (a.node.listen, b.listen)]
    assert pushed, "A pushed nothing to its neighbour"


def test_hello_with_another_id_than_authenticated_is_refused():
    h = Harness(0, authenticated=True)
    before = h.snapshot()
    h.net.now = 0.1
    try:
        h.net.feed(h.link, hello(peer_id=b"\x09" * 16))
    except RemoteProtocolError:
        pass
    else:
        raise AssertionError("a HELLO naming another peer than the channel authenticated was accepted")
    assert h.snapshot() == before


def test_memory_stays_bounded_under_garbage():
    """Thousands of garbage frames and orphan updates on one link: the
    documents, the causal buffer and the known peers stay bounded, and so
    does the memory allocated while feeding them (tracemalloc sees Python
    allocations only; pycrdt's Rust heap is bounded by the structural counts)."""
    rng = random.Random(1234)
    h = Harness(0, authenticated=False)
    node = h.node
    doc = node.documents[mf.DOC_NAME]
    h.net.feed(h.link, hello())
    # Orphans: updates whose causes never arrive (the second and later of a
    # causal chain from clients the document has never seen).
    chain = mf.edits_on(mf.base_state(), 777_777, random.Random(5), 60, insert_only=True)
    orphans = chain[1:]
    seeds = [pw.encode(m) for m in mf.one_of_each_type()]
    named: set[str] = set()
    tracemalloc.start()
    try:
        for i in range(6000):
            h.net.now += 0.001
            r = rng.random()
            if r < 0.3:
                frame = pw.encode(pw.Update(mf.DOC_NAME, rng.choice(orphans)))
            elif r < 0.5:
                frame = rng.randbytes(rng.randint(0, 80))
            elif r < 0.8:
                base = rng.choice(seeds)
                frame = mf.mutate(base, mf.random_ops(rng), mf.peer_offsets(base))
            else:
                update = rng.choice(mf.all_updates())
                bad = mf.mutate(update, mf.random_ops(rng, allow_type=False), mf.update_offsets(update))
                frame = pw.encode(pw.Update(mf.DOC_NAME, bad))
            try:
                msg = pw.decode(frame)
            except RemoteProtocolError:
                msg = None
            if isinstance(msg, (pw.Update, pw.SyncStep1, pw.SyncStep2)):
                named.add(msg.name)
            elif isinstance(msg, pw.DocDigests):
                named.update(name for name, _ in msg.entries)
            try:
                h.net.feed(h.link, frame)
            except RemoteProtocolError:
                h.reconnect(say_hello=True)
            if h.link not in h.net.routes:  # the node closed it (BYE, a HELLO from itself)
                h.reconnect(say_hello=True)
            assert doc.pending_count() <= MAX_PENDING_UPDATES
            assert doc._pending_bytes <= MAX_PENDING_BYTES
            if i % 500 == 0:
                assert len(node.documents) <= 1 + len(named)
                assert len(node.known.by_address) <= node.config.known_limit
                assert len(node.links) == 1
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(node.documents) <= 1 + len(named)
    assert len(node.documents) <= 50, sorted(node.documents)
    assert peak < 64 * 1024 * 1024, f"{peak / 2**20:.1f} MiB allocated at the peak"


def test_orphan_flood_fills_the_buffer_then_asks_for_a_resync():
    """More distinct orphans than the buffer holds: the buffer stops at its
    bound, and the node answers with a SyncStep1 (not an error, not growth)."""
    h = Harness(0, authenticated=False)
    node = h.node
    h.net.feed(h.link, hello())
    doc = node.documents[mf.DOC_NAME]
    chain = mf.edits_on(mf.base_state(), 888_888, random.Random(9), MAX_PENDING_UPDATES + 20, insert_only=True)
    resyncs = 0
    for i, update in enumerate(chain[1:]):
        h.net.now = i * 0.001
        effects = h.net.feed(h.link, pw.encode(pw.Update(mf.DOC_NAME, update)))
        assert doc.pending_count() <= MAX_PENDING_UPDATES
        for effect in effects:
            if hasattr(effect, "data") and isinstance(pw.decode(effect.data), pw.SyncStep1):
                resyncs += 1
    assert resyncs >= 1
    assert doc.text == mf.BASE_TEXT


def test_malformed_awareness_is_refused_by_the_node():
    """``Node.receive`` is where a peer's message is validated
    (docs/security.md): an AWARENESS whose payload is not an awareness update
    must raise RemoteProtocolError (so the shell counts a strike), not be
    passed on to the shell as an ``AwarenessIn`` effect."""
    h = Harness(0, authenticated=False)
    h.net.feed(h.link, hello())
    h.net.now = 0.1
    for payload in (b"\xba\x06", b"\x01\x0b\x01\x05{", b"\x01", b"\x00trailing"):
        try:
            effects = h.net.feed(h.link, pw.encode(pw.Awareness(mf.DOC_NAME, payload)))
        except RemoteProtocolError:
            h.reconnect(say_hello=True)
            continue
        raise AssertionError(f"malformed awareness {payload!r} accepted, effects {effects!r}")
