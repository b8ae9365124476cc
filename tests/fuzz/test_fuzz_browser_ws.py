"""Fuzz target 4: the browser endpoint ``WS /ws/{name}``, through the app factory.

One app and one well-behaved *observer* (``tests/yclient.py``, pycrdt's own
y-protocols code) stay up for the whole test; each case opens a new
connection, sends one fuzz frame (random bytes, y-websocket messages of type
0/1/3 and others with random or mutated payloads, real Yjs updates made on
top of the current document and mutated, text frames), then a probe (sync
step 1 with an empty state vector), and waits until the server either
answers the probe or closes the connection.

Invariants after every case:

* ``GET /healthz`` answers 200, and only the observer stays connected once
  the fuzz connection is gone (nothing leaks); the document list is the same.
* A refused frame (the server closed with 1008 POLICY_VIOLATION) changed
  nothing: the text served by ``GET /api/docs/{name}`` and the observer's
  replica are as before.
* An accepted frame may change the document, but only visibly: the
  observer, which receives every change the server integrates, converges to
  exactly the text the API serves (a change applied without being broadcast,
  or half applied, fails this).
* The observer's own connection is never closed by someone else's frames.

Cases are generated from one master seed (deterministic); a failure names
the case, its seed and the frame in hex.
"""

from __future__ import annotations

import contextlib
import logging
import random
from typing import Any

import aiohttp
import meshfuzz as mf
from hypothesis import HealthCheck, given, note, settings
from hypothesis import strategies as st
from pycrdt import Doc
from waiting import wait_for
from yclient import YClient, awareness_frame

from crdt import yupdate, ywire
from crdt.document import Document
from crdt.errors import RemoteProtocolError
from crdt.lib0 import encode_varuint
from crdt.session import Changed, DocumentSession, Send
from crdt.yupdate import parse_update
from server.app import create_app

DOC = "fuzzdoc"
CASES = 400
MASTER_SEED = 20_240_611
OBSERVER_ID = 424_242
PROBE = ywire.encode_sync_step1(b"\x00")


def current_state(observer: YClient) -> bytes:
    return bytes(observer.doc.get_update())


def fresh_edits(state: bytes, client_id: int, rng: random.Random) -> list[bytes]:
    return mf.edits_on(state, client_id, rng, 1 + rng.randrange(3))


def gen_frame(rng: random.Random, state: bytes, case: int) -> tuple[str, bytes | str]:
    """(what it is, the frame) — a str frame is sent as a text frame."""
    r = rng.random()
    if r < 0.04:
        return "text", rng.randbytes(rng.randrange(20)).decode("latin-1")
    if r < 0.14:
        return "random", rng.randbytes(rng.randrange(64))
    if r < 0.24:
        kind = rng.choice([0, 1, 2, 3, 4, 100, 127, 128])
        return "typed garbage", bytes([kind]) + rng.randbytes(rng.randrange(40))
    # A valid y-websocket message, built on the current document.
    edits = fresh_edits(state, 100_000 + case, rng)
    choice = rng.random()
    if choice < 0.25:
        update = edits[0]
        base = ywire.encode_sync_update(update) if rng.random() < 0.6 else ywire.encode_sync_step2(update)
        inner, inner_offsets = update, mf.update_offsets(update)
    elif choice < 0.35:
        update = edits[-1]  # an orphan when there are several: waits for its causes
        base = ywire.encode_sync_update(update)
        inner, inner_offsets = update, mf.update_offsets(update)
    elif choice < 0.5:
        update = rng.choice(mf.all_updates())
        base = ywire.encode_sync_update(update)
        inner, inner_offsets = update, mf.update_offsets(update)
    elif choice < 0.65:
        doc: Doc[Any] = Doc()
        doc.apply_update(state)
        sv = bytes(doc.get_state()) if rng.random() < 0.5 else rng.choice(mf.state_vectors())
        base = ywire.encode_sync_step1(sv)
        inner, inner_offsets = sv, mf.varuint_offsets(yupdate, yupdate.decode_state_vector, sv)
    elif choice < 0.9:
        aw = rng.choice(mf.awareness_updates())
        base = ywire.encode_awareness(ywire.decode_awareness(aw))
        inner, inner_offsets = aw, mf.varuint_offsets(ywire, ywire.decode_awareness, aw)
    else:
        base, inner, inner_offsets = ywire.encode_query_awareness(), b"", ()
    how = rng.random()
    if how < 0.2:
        return "valid", base
    if how < 0.6 and inner:
        bad = mf.mutate(inner, mf.random_ops(rng, allow_type=False), inner_offsets)
        return "inner mutated", base[: len(base) - len(inner) - len(encode_varuint(len(inner)))] + (
            encode_varuint(len(bad)) + bad
        )
    return "frame mutated", mf.mutate(base, mf.random_ops(rng), mf.ywire_offsets(base))


def probe_answers_expected(frame: bytes | str) -> int:
    """Sync step 2 frames the server sends back if it accepts *frame* and the
    probe: one per sync step 1."""
    if isinstance(frame, str):
        return 1
    try:
        message = ywire.decode_message(frame)
    except RemoteProtocolError:
        return 1
    return 2 if isinstance(message, ywire.SyncStep1) else 1


@settings(deadline=None, derandomize=True, database=None, max_examples=800, suppress_health_check=list(HealthCheck))
@given(st.binary(min_size=4, max_size=200))
def test_session_receive(entropy):
    """The same frames, many more of them, straight into the sans-IO core of
    the endpoint (``DocumentSession.receive``), two to a connection: only
    RemoteProtocolError escapes; a refused frame changes nothing; the
    document is exactly what its ``Changed`` effects say (what is stored and
    sent to the other browsers), and each of those is a valid update."""
    rng = mf.ByteRandom(entropy)
    session = DocumentSession(mf.fresh_document(DOC, 99))
    session.connect(1)
    session.connect(2)
    log = [mf.base_state()]
    doc = session.document
    for k in range(2):
        kind, frame = gen_frame(rng, doc.encode_state(), 10 * k + rng.randrange(10))
        if isinstance(frame, str):
            continue
        note(f"frame {k} ({kind}) = bytes.fromhex({frame.hex()!r})")
        before = (doc.text, doc.digest(), sorted(session.connections))
        try:
            effects = session.receive(1, frame)
        except RemoteProtocolError:
            assert (doc.text, doc.digest(), sorted(session.connections)) == before, "a refused frame changed things"
            session.disconnect(1)
            session.connect(1)
            continue
        for effect in effects:
            if isinstance(effect, Changed):
                parse_update(effect.update)
                log.append(effect.update)
            elif isinstance(effect, Send):
                ywire.decode_message(effect.data)  # what the other browsers get is valid y-websocket
        replica = Document(DOC, 5)
        replica.load(log)
        assert (replica.text, replica.digest()) == (doc.text, doc.digest())


async def run_case(client: Any, frame: bytes | str) -> tuple[bool, int | None]:
    """Send *frame* and the probe on a new connection; return (refused, close code)."""
    ws = await client.ws_connect(f"/ws/{DOC}")
    try:
        if isinstance(frame, str):
            await ws.send_str(frame)
        else:
            await ws.send_bytes(frame)
        with contextlib.suppress(ConnectionError, RuntimeError):  # closed already
            await ws.send_bytes(PROBE)
        wanted = probe_answers_expected(frame)
        answers = 0
        while True:
            msg = await ws.receive(timeout=10)
            if msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.CLOSING):
                return True, ws.close_code
            if msg.type == aiohttp.WSMsgType.ERROR:
                raise AssertionError(f"WebSocket error: {ws.exception()!r}")
            if msg.type == aiohttp.WSMsgType.BINARY and msg.data[:2] == b"\x00\x01":
                answers += 1
                if answers >= wanted:
                    return False, None
    finally:
        await ws.close()


async def api_text(client: Any) -> str:
    resp = await client.get(f"/api/docs/{DOC}")
    assert resp.status == 200
    return str((await resp.json())["text"])


async def doc_names(client: Any) -> list[str]:
    return [d["name"] for d in await (await client.get("/api/docs")).json()]


async def test_browser_ws_fuzz(client, caplog):
    caplog.set_level(logging.ERROR, logger="server.browser_ws")  # one warning per refused frame is noise here
    from server.keys import RUNTIME

    runtime = client.app[RUNTIME]
    observer = await YClient.connect(client, f"/ws/{DOC}", OBSERVER_ID)
    await wait_for(lambda: observer.synced, what="observer synced")
    await observer.insert(0, mf.BASE_TEXT)
    await observer.send(awareness_frame([(OBSERVER_ID, 1, {"user": {"name": "observer"}})]))
    await wait_for(lambda: OBSERVER_ID in observer.present(), what="observer's awareness echo")
    names = await doc_names(client)
    master = random.Random(MASTER_SEED)
    stats = {"refused": 0, "accepted": 0, "changed": 0}
    for case in range(CASES):
        seed = master.randrange(2**32)
        rng = random.Random(seed)
        before = await api_text(client)
        assert observer.content == before
        kind, frame = gen_frame(rng, current_state(observer), case)
        where = f"case {case} (seed {seed}, {kind}): frame = {frame!r}" + (
            f" = bytes.fromhex({frame.hex()!r})" if isinstance(frame, bytes) else ""
        )
        refused, code = await run_case(client, frame)
        if refused:
            stats["refused"] += 1
            assert code == aiohttp.WSCloseCode.POLICY_VIOLATION, f"closed with {code}, not 1008: {where}"
        else:
            stats["accepted"] += 1
        health = await client.get("/healthz")
        assert health.status == 200, where
        after = await api_text(client)
        if refused:
            assert after == before, f"a refused frame changed the document: {before!r} -> {after!r}: {where}"
        elif after != before:
            stats["changed"] += 1
        # The observer sees exactly what the server holds, and only itself stays connected.
        await wait_for(
            lambda after=after: observer.content == after and len(runtime.connections) == 1,
            5,
            what=lambda after=after, where=where: (
                f"observer {observer.content!r} / server {after!r}, {len(runtime.connections)} connections: {where}"
            ),
            interval=0.005,
        )
        assert not observer.ws.closed and not observer.closed.is_set(), f"the observer was disconnected: {where}"
        assert await doc_names(client) == names, where
    print(f"browser ws fuzz: {CASES} cases, {stats}")
    # The generator must reach both outcomes, or it tests nothing.
    assert stats["refused"] > CASES // 5 and stats["accepted"] > CASES // 10 and stats["changed"] > 5, stats
    await observer.close()


# Found by test_fuzz_node.py::test_node_receive_equivocating_updates: two
# well-formed updates from one client id (6006) that reused its id. The first
# writes "xyz" at clocks 0-2, the second "🙂🙂" at clocks 0-3; pycrdt takes
# clock 3 of the second, half of a surrogate pair, as an empty string.
REUSED_ID_XYZ = bytes.fromhex("0101f62e00c4e90700e907010378797a00")
REUSED_ID_EMOJI = bytes.fromhex("0101f62e00c4e90715e9071608f09f9982f09f998200")


async def test_reused_client_id_then_restart(aiohttp_client, settings):
    """Nothing acknowledged is lost, and a peer always starts again: after a
    browser sent the two updates above (refusing either is fine), the peer is
    restarted on its data dir and must serve the same text."""
    first = await aiohttp_client(create_app(settings))
    outcomes = []
    for update in (mf.base_state(), REUSED_ID_XYZ, REUSED_ID_EMOJI):
        refused, _ = await run_case(first, ywire.encode_sync_update(update))
        outcomes.append("refused" if refused else "accepted")
    text = await api_text(first)
    await first.close()  # a clean shutdown: every write is flushed
    try:
        second = await aiohttp_client(create_app(settings))
    except BaseException as exc:  # pycrdt's PanicException is a BaseException
        raise AssertionError(
            f"updates {outcomes}; the peer cannot start again on its data dir: {type(exc).__name__}: {exc}"
        ) from None
    assert await api_text(second) == text
