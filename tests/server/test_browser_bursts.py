"""Frames a browser sends in a burst are handled together (server.runtime):
one stored update, one frame to the other browsers, acknowledgements that
still count every frame, and nothing lost when the connection closes with
frames read but not yet handled."""

from __future__ import annotations

from pycrdt import Doc, Text
from waiting import wait_for

from crdt import ywire
from crdt.browsers import INBOX_BATCH
from crdt.session import merge_update_frames
from crdt.yupdate import parse_update
from server.keys import RUNTIME
from server.outbox import Outbox
from server.runtime import OUTBOX_LIMIT


def typing(n: int) -> tuple[list[bytes], str]:
    source = Doc(client_id=9)
    text = source.get("content", type=Text)
    log: list[bytes] = []
    source.observe(lambda event: log.append(bytes(event.update)))
    for i in range(n):
        text.insert(i, "xyz"[i % 3])
    return [ywire.encode_sync_update(u) for u in log], str(text)


async def test_a_burst_is_stored_and_sent_on_as_one_update(client):
    runtime = client.app[RUNTIME]
    session = await runtime.session("burst")
    writer = runtime.attach("burst", wants_acks=True)
    reader = runtime.attach("burst", wants_acks=False)
    reader.outbox.frames.clear()  # its handshake
    frames, final = typing(INBOX_BATCH - 1)
    for frame in frames:  # no await between: all of them were read together
        runtime.receive(writer, frame)
    assert session.document.text == ""  # handled once the reader yields
    await wait_for(lambda: writer.acked == len(frames), what="every frame acknowledged")
    assert session.document.text == final
    # The keystrokes are one update, stored once and sent once; besides
    # it goes the record of who client 9 is (once, for a new author).
    sent = [_update(f) for f in reader.outbox.frames]
    assert all(f[:2] == b"\x00\x02" for f in reader.outbox.frames)
    assert len([u for u in sent if u is not None and 9 in parse_update(u).ranges]) == 1
    assert len(sent) == 2
    stored = await runtime.store.call(lambda s: s.load("burst"))
    assert len([u for u in stored if 9 in parse_update(u).ranges]) == 1
    assert len(stored) == 2
    runtime.detach(writer)
    runtime.detach(reader)


async def test_frames_read_before_a_close_still_count(client):
    runtime = client.app[RUNTIME]
    session = await runtime.session("closing")
    conn = runtime.attach("closing", wants_acks=False)
    frames, final = typing(20)
    for frame in frames:
        runtime.receive(conn, frame)
    runtime.detach(conn)
    assert session.document.text == final
    stored = await runtime.store.call(lambda s: s.load("closing"))
    doc = Doc()
    text = doc.get("content", type=Text)
    for update in stored:
        doc.apply_update(update)
    assert str(text) == final


async def test_a_bad_frame_in_a_burst_keeps_the_frames_before_it(client):
    runtime = client.app[RUNTIME]
    session = await runtime.session("bad")
    conn = runtime.attach("bad", wants_acks=True)
    frames, _ = typing(10)
    for frame in [*frames[:6], b"\x00\x02\x05\x01", *frames[6:]]:
        runtime.receive(conn, frame)
    await wait_for(lambda: conn.close_reason is not None, what="the connection closed")
    assert conn.close_reason.startswith("protocol error")
    assert session.document.text == "xyzxyz"
    assert runtime.frames_refused == 1
    runtime.detach(conn)
    assert session.document.text == "xyzxyz"


class _Recorder:
    """Stands in for a WebSocket: records what the outbox writes."""

    def __init__(self) -> None:
        self.sent: list[bytes] = []
        self.closed = False

    async def send_bytes(self, data: bytes) -> None:
        self.sent.append(data)

    async def close(self, **_: object) -> None:
        self.closed = True


async def test_a_browser_that_fell_behind_gets_one_merged_frame():
    frames, final = typing(50)
    outbox = Outbox(max_frames=OUTBOX_LIMIT, coalesce=merge_update_frames)
    for frame in frames:
        outbox.put(frame)
    outbox.close("done")
    ws = _Recorder()
    await outbox.pump(ws)
    assert len(ws.sent) == 1 and ws.closed
    doc = Doc()
    text = doc.get("content", type=Text)
    doc.apply_update(ywire.decode_message(ws.sent[0]).update)
    assert str(text) == final
    assert outbox.queued_bytes == 0


async def test_changes_from_many_browsers_make_one_push_per_document(client, monkeypatch):
    runtime = client.app[RUNTIME]
    await runtime.session("many")
    pushed: list[tuple[str, bytes]] = []

    def local_change(name: str, update: bytes, origin: object, now: float) -> list:
        pushed.append((name, update))
        return []

    monkeypatch.setattr(runtime.gossip, "local_change", local_change)
    writers = [runtime.attach("many", wants_acks=True) for _ in range(3)]
    sources = []
    for i, conn in enumerate(writers):
        source = Doc(client_id=100 + i)
        text = source.get("content", type=Text)
        log: list[bytes] = []
        source.observe(lambda event, log=log: log.append(bytes(event.update)))
        text.insert(0, f"writer {i} ")
        for update in log:
            runtime.receive(conn, ywire.encode_sync_update(update))
        sources.append(source)
    await wait_for(lambda: all(c.acked == 1 for c in writers), what="every frame handled")
    await wait_for(lambda: len(pushed) == 1, what="the push")
    assert pushed[0][0] == "many"
    replica = Doc()
    merged_text = replica.get("content", type=Text)
    replica.apply_update(pushed[0][1])
    assert str(merged_text) == runtime.sessions["many"].document.text
    assert all(f"writer {i} " in str(merged_text) for i in range(3))
    for conn in writers:
        runtime.detach(conn)


def _update(frame: bytes) -> bytes | None:
    message = ywire.decode_message(frame)
    return message.update if isinstance(message, ywire.SyncUpdate) else None
