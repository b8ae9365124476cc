"""Fuzz target 5: the peer endpoint ``WS /peer``, through the app factory.

Each case opens a link and misbehaves at one point of it:

* ``pre``: the first frame is random, a text frame, the right magic with
  a wrong version or garbage, or a mutated genuine Noise message 1;
* ``mid``: a genuine message 1, then anything but the genuine message 3
  (a mutated message 3, random bytes, message 1 replayed);
* ``raw``: a complete handshake, then bytes that are not a transport frame
  of this session (a mutated genuine frame, random bytes);
* ``plain``: a complete handshake, then well-encrypted frames whose plaintext
  is random or a mutated peer message (the first must be a HELLO naming the
  authenticated peer);
* ``hello``: a complete handshake and a valid HELLO, then encrypted mutated
  document messages (updates, sync, awareness, digests) and a PING probe.

Invariants: the server either keeps serving the link (the probe is
answered) or closes it with 1008 POLICY_VIOLATION, where the frame is
predictably invalid it closes it, every frame it sends authenticates, it
counts one refusal per closed link, ``GET /healthz`` answers 200, and the
document list does not change (unless an accepted, authenticated message
named a new document, which peers may do).

Refusals from one address lead to a ban: the fuzz loop forgets its strikes
between cases; ``test_three_refusals_ban_the_address`` checks the ban itself.
"""

from __future__ import annotations

import contextlib
import logging
import random
from typing import Any

import aiohttp
import meshfuzz as mf
from waiting import wait_for

from crdt import peerwire as pw
from crdt.errors import RemoteProtocolError
from crdt.lib0 import Reader, encode_varuint
from crdt.limits import STRIKES_BEFORE_BAN
from crdt.roster import legacy_space_id
from crdt.secure import MAGIC, VERSION, Identity, SecureChannel
from crdt.yupdate import decode_state_vector, parse_update
from server.keys import PEERING

CASES = 400
MASTER_SEED = 7_000_007
PROBE_NONCE = 0xC0FFEE
CLOSING = (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.CLOSING)


class Refused(Exception):
    pass


class Link:
    """Our side of one link, speaking through a real SecureChannel."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse, identity: Identity) -> None:
        self.ws = ws
        self.identity = identity
        self.channel = SecureChannel(identity, initiator=True)
        self.received: list[pw.Message] = []

    async def send(self, frame: bytes | str) -> None:
        with contextlib.suppress(ConnectionError, RuntimeError):  # the server closed first: the reader sees it
            if isinstance(frame, str):
                await self.ws.send_str(frame)
            else:
                await self.ws.send_bytes(frame)

    async def next_frame(self) -> bytes:
        msg = await self.ws.receive(timeout=10)
        if msg.type in CLOSING:
            raise Refused(self.ws.close_code, msg.extra if msg.type == aiohttp.WSMsgType.CLOSE else None)
        assert msg.type == aiohttp.WSMsgType.BINARY, f"unexpected {msg.type} from the server"
        return bytes(msg.data)

    async def handshake(self) -> tuple[bytes, bytes]:
        (m1,) = self.channel.start()
        await self.send(m1)
        m2 = await self.next_frame()
        (m3,) = self.channel.receive(m2)[0]
        return m1, m3

    async def next_message(self) -> pw.Message:
        frame = await self.next_frame()
        _, plain = self.channel.receive(frame)  # every frame of the server authenticates
        assert plain is not None
        message = pw.decode(plain)
        self.received.append(message)
        return message

    async def until_pong(self) -> None:
        while True:
            message = await self.next_message()
            if isinstance(message, pw.Pong) and message.nonce == PROBE_NONCE:
                return


def is_genuine_first(frame: bytes, genuine: bytes) -> bool:
    r = Reader(frame)
    try:
        if r.read_bytes(len(MAGIC)) != MAGIC or r.read_varuint() != VERSION:
            return False
    except RemoteProtocolError:
        return False
    return frame[r.pos :] == genuine[len(MAGIC) + 1 :]


def hello(identity: Identity) -> bytes:
    return pw.encode(pw.Hello(pw.VERSION, identity.peer_id, "", 1, legacy_space_id(identity.network_key)))


def creates_documents(plaintexts: list[bytes]) -> bool:
    """Whether one of these messages may rightly create a document: a digest
    list, or an update / sync request whose payload is valid."""
    for plain in plaintexts:
        try:
            msg = pw.decode(plain)
            if isinstance(msg, (pw.Update, pw.SyncStep2)):
                parse_update(msg.update)
            elif isinstance(msg, pw.SyncStep1):
                decode_state_vector(msg.state_vector)
            elif not isinstance(msg, pw.DocDigests):
                continue
        except RemoteProtocolError:
            continue
        return True
    return False


async def run_case(
    client: Any, network_key: bytes, rng: random.Random
) -> tuple[str, bool, bool, list[bytes], str | None]:
    """Returns (kind, refused, must_refuse, plaintexts sent after HELLO, close reason)."""
    kind = rng.choice(["pre", "pre", "mid", "raw", "plain", "hello", "hello", "hello"])
    identity = Identity(rng.randbytes(32), network_key)
    ws = await client.ws_connect("/peer")
    link = Link(ws, identity)
    sent: list[bytes] = []
    must_refuse = True
    try:
        if kind == "pre":
            (genuine,) = SecureChannel(identity, initiator=True).start()
            r = rng.random()
            if r < 0.1:
                frame: bytes | str = rng.randbytes(rng.randrange(30)).decode("latin-1")
            elif r < 0.35:
                frame = rng.randbytes(rng.randrange(100))
            elif r < 0.55:
                frame = MAGIC + encode_varuint(rng.choice([0, 2, 255, 2**32])) + genuine[len(MAGIC) + 1 :]
            else:
                frame = mf.mutate(genuine, mf.random_ops(rng, allow_type=False), (len(MAGIC),))
            # A version written non-canonically is still version 1: such a frame is a valid message 1.
            must_refuse = isinstance(frame, str) or not is_genuine_first(frame, genuine)
            await link.send(frame)
            await link.next_frame()  # message 2: the server accepted our first frame
            return kind, False, must_refuse, sent, None
        m1, m3 = await link.handshake()
        if kind == "mid":
            r = rng.random()
            if r < 0.2:
                frame = rng.choice([m1, rng.randbytes(rng.randrange(100))])
            else:
                frame = mf.mutate(m3, mf.random_ops(rng, allow_type=False))
            await link.send(frame)
            must_refuse = frame != m3
            await link.next_message()  # the server's HELLO: it completed the handshake
            return kind, False, must_refuse, sent, None
        await link.send(m3)
        if kind == "raw":
            genuine = link.channel.encrypt(hello(identity))
            frame = genuine if rng.random() < 0.05 else mf.mutate(genuine, mf.random_ops(rng, allow_type=False))
            if rng.random() < 0.2:
                frame = rng.randbytes(rng.randrange(100))
            must_refuse = frame != genuine
            await link.send(frame)
        elif kind == "plain":
            base = hello(identity)
            r = rng.random()
            if r < 0.3:
                plain = rng.randbytes(rng.randrange(60))
            elif r < 0.5:
                plain = mf.gen_peer_frame(rng, identity.peer_id, doc_only=True)
            else:
                plain = mf.mutate(base, mf.random_ops(rng), mf.peer_offsets(base))
            try:
                msg = pw.decode(plain)
                must_refuse = not (isinstance(msg, pw.Hello) and msg.peer_id == identity.peer_id)
            except RemoteProtocolError:
                must_refuse = True
            await link.send(link.channel.encrypt(plain))
        else:
            must_refuse = False
            await link.send(link.channel.encrypt(hello(identity)))
            for _ in range(1 + rng.randrange(3)):
                if rng.random() < 0.4:
                    plain = pw.encode(mf.gen_message(rng, identity.peer_id, doc_only=True))
                else:
                    plain = mf.gen_peer_frame(rng, identity.peer_id, doc_only=True)
                sent.append(plain)
                await link.send(link.channel.encrypt(plain))
        await link.send(link.channel.encrypt(pw.encode(pw.Ping(PROBE_NONCE))))
        await link.until_pong()
        return kind, False, must_refuse, sent, None
    except Refused as closed:
        assert closed.args[0] == aiohttp.WSCloseCode.POLICY_VIOLATION, f"closed with {closed.args}, not 1008"
        return kind, True, must_refuse, sent, closed.args[1]
    finally:
        await ws.close()


def describe_messages(plaintexts: list[bytes]) -> str:
    out = []
    for plain in plaintexts:
        try:
            out.append(repr(pw.decode(plain)))
        except RemoteProtocolError as exc:
            out.append(f"<undecodable: {exc}>")
    return "; ".join(out)


async def health(client: Any) -> dict[str, Any]:
    resp = await client.get("/healthz")
    assert resp.status == 200
    return dict(await resp.json())


async def doc_names(client: Any) -> list[str]:
    return [d["name"] for d in await (await client.get("/api/docs")).json()]


async def wait_links_gone(peering: Any) -> None:
    await wait_for(lambda: not peering.links, what="every closed link unregistered", interval=0.002)


async def test_peer_ws_fuzz(client, caplog):
    caplog.set_level(logging.ERROR, logger="server.peering")  # one warning per refused link is noise here
    peering = client.app[PEERING]
    network_key = peering.identity.network_key
    await client.post("/api/docs", json={"name": mf.DOC_NAME, "text": mf.BASE_TEXT})
    names = await doc_names(client)
    master = random.Random(MASTER_SEED)
    stats: dict[str, int] = {}
    refusals = 0
    uncounted: list[str] = []
    for case in range(CASES):
        seed = master.randrange(2**32)
        try:
            kind, refused, must_refuse, sent, reason = await run_case(client, network_key, random.Random(seed))
        except Exception as exc:
            raise AssertionError(f"case {case} (seed {seed}): {exc!r}") from exc
        where = f"case {case} (seed {seed}, {kind})"
        stats[f"{kind} {'refused' if refused else 'accepted'}"] = (
            stats.get(f"{kind} {'refused' if refused else 'accepted'}", 0) + 1
        )
        assert refused or not must_refuse, f"an invalid frame was accepted: {where}"
        await wait_links_gone(peering)
        # A HELLO of another protocol version is refused with its reason but is
        # no strike (docs/protocol.md, at the top): it is not misbehaviour.
        refusals += refused and "upgrade Meshpad" not in (reason or "")
        h = await health(client)
        if h["peer_links_refused"] != refusals:
            # Checked at the end, so that one kind of miscount does not hide the rest.
            uncounted.append(
                f"{where}: closed with 1008 ({reason!r}) but not counted as a refusal (no strike); "
                f"sent after HELLO: {describe_messages(sent)}"
            )
            refusals = h["peer_links_refused"]
        assert h["peer_links_banned"] == 0, where
        now_names = await doc_names(client)
        if not creates_documents(sent):
            assert now_names == names, f"documents changed: {names} -> {now_names}: {where}"
        names = now_names
        # Forget this address's strikes, or the fourth case would be banned
        # (the ban is tested on its own below).
        peering.bans.records.clear()
    print(f"peer ws fuzz: {CASES} cases, {dict(sorted(stats.items()))}")
    assert sum(v for k, v in stats.items() if k.endswith("refused")) > CASES // 3, stats
    assert sum(v for k, v in stats.items() if k.endswith("accepted")) > CASES // 10, stats
    assert not uncounted, f"{len(uncounted)} refused links were not counted:\n" + "\n".join(uncounted)


async def test_three_refusals_ban_the_address(client):
    peering = client.app[PEERING]
    rng = random.Random(3)
    for attempt in range(STRIKES_BEFORE_BAN):
        ws = await client.ws_connect("/peer")
        link = Link(ws, Identity(rng.randbytes(32), peering.identity.network_key))
        await link.send(b"not a Meshpad peer" + bytes([attempt]))
        try:
            await link.next_frame()
        except Refused as closed:
            assert closed.args[0] == aiohttp.WSCloseCode.POLICY_VIOLATION
        else:
            raise AssertionError("garbage was answered")
        await ws.close()
        await wait_links_gone(peering)
    # The next attempt is turned away before the upgrade.
    try:
        ws = await client.ws_connect("/peer")
    except aiohttp.WSServerHandshakeError as exc:
        assert exc.status == 429
    else:
        await ws.close()
        raise AssertionError("a banned address was let in")
    resp = await client.get("/peer")
    assert resp.status == 429
    h = await health(client)
    assert h["peer_links_refused"] == STRIKES_BEFORE_BAN
    assert h["peer_links_banned"] == 2
    # Only /peer is refused: the browser side still works.
    resp = await client.post("/api/docs", json={"name": "still-here"})
    assert resp.status == 201


async def test_malformed_awareness_from_a_peer_is_a_strike(client):
    """A malformed AWARENESS payload is a protocol error like any other
    (docs/protocol.md §8 and §10: "Every such refusal is a strike"): three
    links that send one are three strikes, and the address is then banned."""
    peering = client.app[PEERING]
    await client.post("/api/docs", json={"name": mf.DOC_NAME, "text": mf.BASE_TEXT})
    rng = random.Random(4)
    for _ in range(STRIKES_BEFORE_BAN):
        identity = Identity(rng.randbytes(32), peering.identity.network_key)
        ws = await client.ws_connect("/peer")
        link = Link(ws, identity)
        _, m3 = await link.handshake()
        await link.send(m3)
        await link.send(link.channel.encrypt(hello(identity)))
        # an awareness update announcing 826 entries and holding none
        await link.send(link.channel.encrypt(pw.encode(pw.Awareness(mf.DOC_NAME, b"\xba\x06"))))
        try:
            await link.until_pong()
        except Refused as closed:
            assert closed.args[0] == aiohttp.WSCloseCode.POLICY_VIOLATION
        else:  # pragma: no cover - until_pong only returns on a probe's answer
            raise AssertionError
        await ws.close()
        await wait_links_gone(peering)
    h = await health(client)
    assert h["peer_links_refused"] == STRIKES_BEFORE_BAN, h
    resp = await client.get("/peer")
    assert resp.status == 429, "three links closed for malformed awareness did not lead to a ban"
