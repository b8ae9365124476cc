"""Spaces with real ``meshpad serve`` processes on loopback (issue 15):

* A shares space S with B and space T with C: C never receives a byte of
  S (its API, its data dir, its log, its links), nor B of T;
* a reader's peer that sends edits through the raw protocol (a test client
  holding its keys, ``tests/spaceclient.py``) changes no replica, and the
  attempts are logged and counted;
* a removed member, online or offline at the removal, is refused, gets no
  new change, keeps what it had and is told; a removed peer takes no change
  from a member that missed the removal; a member restarted where nobody
  can dial it dials back at once.

Each peer has a network key of its own, so the first spaces (``main``) of
the three peers are three different spaces, and every link between them is
a link of S or T."""

from __future__ import annotations

import asyncio
import base64
import json
import re
import secrets
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import aiohttp
import pycrdt
import pytest
from processes import Peer
from spaceclient import PeerKeys, RawLink
from waiting import wait_for, wait_for_blocking
from yclient import YClient

from crdt import peerwire as pw

pytestmark = pytest.mark.slow


def call(peer: Peer, method: str, path: str, body: dict | None = None) -> tuple[int, Any]:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(
        peer.url + path, data=data, method=method, headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            raw = resp.read()
            return resp.status, json.loads(raw) if raw[:1] in (b"{", b"[") else raw.decode()
    except urllib.error.HTTPError as err:
        raw = err.read()
        try:
            return err.code, json.loads(raw)
        except ValueError:
            return err.code, raw.decode(errors="replace")


def ok(peer: Peer, method: str, path: str, body: dict | None = None, status: int = 200) -> Any:
    got, answer = call(peer, method, path, body)
    assert got == status, f"{method} {path} on {peer.address}: {got} {answer}"
    return answer


def q(text: str) -> str:
    return urllib.parse.quote(text, safe="@")


def start(tmp_path: Path, name: str) -> Peer:
    """A peer whose first space is its own (a network key nobody else has)."""
    env = {"MESHPAD_NETWORK_KEY": f"net-{name}-{secrets.token_hex(8)}", "MESHPAD_NAME": name}
    return Peer(tmp_path / name, env=env).start()


def text_of(peer: Peer, ref: str) -> str | None:
    status, body = call(peer, "GET", f"/api/docs/{q(ref)}")
    return body["text"] if status == 200 else None


def space_of(peer: Peer, name: str) -> dict:
    return ok(peer, "GET", f"/api/spaces/{q(name)}")


def create_space(peer: Peer, name: str) -> dict:
    return ok(peer, "POST", "/api/spaces", {"name": name}, status=201)


def invite(admin: Peer, space: str, joiner: Peer, role: str = "writer") -> None:
    text = ok(admin, "POST", f"/api/spaces/{q(space)}/invites", {"role": role}, status=201)["invite"]
    ok(joiner, "POST", "/api/peers", {"address": text}, status=202)


def member_row(peer: Peer, space: str, member: str) -> dict | None:
    return next((m for m in space_of(peer, space)["members"] if m["peer"] == member), None)


def wait_member(admin: Peer, space: str, joiner: Peer, role: str) -> str:
    """Until *joiner* is a member of *space* with *role* on both sides; its peer id."""

    def joined() -> str | None:
        mine = next((s for s in ok(joiner, "GET", "/api/spaces") if s["id"] == space_of(admin, space)["id"]), None)
        if mine is None or mine["status"] != "member" or mine["role"] != role:
            return None
        me = space_of(joiner, mine["id"])["you"]
        row = member_row(admin, space, me)
        return me if row is not None and row["role"] == role else None

    return wait_for_blocking(joined, 30, what=lambda: f"{joiner.address} a {role} of {space}:\n{joiner.log()}")


def wait_text(peer: Peer, ref: str, expected: str) -> None:
    wait_for_blocking(
        lambda: text_of(peer, ref) == expected,
        30,
        what=lambda: f"{ref} on {peer.address} = {expected!r}: {text_of(peer, ref)!r}",
    )


def data_files(root: Path) -> dict[Path, bytes]:
    return {path: path.read_bytes() for path in sorted(root.rglob("*")) if path.is_file()}


def leaks(root: Path, log: Path, secrets_: dict[str, bytes]) -> list[str]:
    """Which of *secrets_* appear in any file under *root* or in *log*."""
    files = data_files(root)
    files[log] = log.read_bytes()
    return [f"{what} in {path}" for path, data in files.items() for what, needle in secrets_.items() if needle in data]


def space_secrets(admin: Peer, space: str, names: list[str], texts: list[str]) -> dict[str, bytes]:
    """What of *space* must not reach a peer outside it: its name, id, key,
    its documents' names and texts, in every encoding a file could hold."""
    summary = space_of(admin, space)
    found: dict[str, bytes] = {"space name": space.encode(), "space id hex": summary["id"].encode()}
    found["space id"] = bytes.fromhex(summary["id"])
    keys = PeerKeys.read(admin.data_dir, bytes.fromhex(summary["id"]))
    found["space key"] = keys.space_key
    found["space key b64url"] = base64.urlsafe_b64encode(keys.space_key).rstrip(b"=")
    found["space key b64"] = base64.b64encode(keys.space_key).rstrip(b"=")
    for n, name in enumerate(names):
        found[f"document name {n}"] = name.encode()
    for n, text in enumerate(texts):
        found[f"document text {n}"] = text.encode()
        found[f"document text {n} utf-16"] = text.encode("utf-16-le")
    return found


def refused(peer: Peer, space: str) -> dict[str, int]:
    return dict(space_of(peer, space)["refused"])


def metric(peer: Peer, name: str, labels: str) -> float:
    with urllib.request.urlopen(peer.url + "/metrics", timeout=10) as resp:
        body = resp.read().decode()
    match = re.search(rf"^{re.escape(name)}\{{{re.escape(labels)}\}} (\S+)$", body, re.M)
    return float(match.group(1)) if match else 0.0


async def type_into(peer: Peer, ref: str, text: str) -> None:
    """Append *text* to *ref* on *peer* as a browser does, until stored."""
    async with aiohttp.ClientSession() as http:
        y = await YClient.connect(http, f"{peer.url}/ws/{q(ref)}?acks=1", secrets.randbelow(2**31) + 1)
        await wait_for(lambda: y.synced, timeout=15, what="the browser connection synced")
        last = await y.insert(len(y.content), text)
        await wait_for(lambda: y.saved >= last, timeout=15, what="the change stored")
        await y.close()


# -- 1. a space's bytes reach its members only ----------------------------------------------


def test_a_space_reaches_its_members_and_nobody_else(tmp_path):
    tag = secrets.token_hex(6)
    a, b, c = start(tmp_path, "a"), start(tmp_path, "b"), start(tmp_path, "c")
    try:
        s, t = f"sp-{tag}", f"tp-{tag}"
        s_id = create_space(a, s)["id"]
        t_id = create_space(a, t)["id"]
        s_docs = {f"s-secret-{tag}-{n}": f"s-text-{tag}-{n} only for B\n" for n in range(2)}
        t_docs = {f"t-open-{tag}-{n}": f"t-text-{tag}-{n} for C\n" for n in range(2)}
        for space, docs in ((s, s_docs), (t, t_docs)):
            for name, text in docs.items():
                ok(a, "POST", "/api/docs", {"name": name, "text": text, "space": space}, status=201)
        invite(a, s, b)
        invite(a, t, c)
        b_id = wait_member(a, s, b, "writer")
        c_id = wait_member(a, t, c, "writer")

        def a_s_links_without_c() -> None:
            members = {m["peer"]: m for m in space_of(a, s)["members"]}
            assert c_id not in members, members
            assert all(not m["connected"] for p, m in members.items() if p != b_id), members
            assert all(row.get("id") != c_id for row in ok(a, "GET", "/api/peers"))

        a_s_links_without_c()
        # Positive controls: each got its own space's documents, whole.
        for name, text in s_docs.items():
            wait_text(b, f"{name}@{s}", text)
        for name, text in t_docs.items():
            wait_text(c, f"{name}@{t}", text)
        # One more document in each space, now that both links are up: S's
        # reaches B, T's (made after it) reaches C.
        for space, docs in ((s, s_docs), (t, t_docs)):
            late = f"{space}-late"
            docs[late] = f"{late} text {tag}\n"
            ok(a, "POST", "/api/docs", {"name": late, "text": docs[late], "space": space}, status=201)
        for space, docs, peer in ((s, s_docs, b), (t, t_docs, c)):
            wait_text(peer, f"{space}-late@{space}", docs[f"{space}-late"])
        a_s_links_without_c()
        assert space_of(a, s)["members"] and member_row(a, s, b_id)["connected"]
        assert member_row(a, t, c_id)["connected"]
        c.wait_durable()
        b.wait_durable()

        # C's API: S does not exist for it.
        c_spaces = ok(c, "GET", "/api/spaces")
        assert t_id in {x["id"] for x in c_spaces} and s_id not in {x["id"] for x in c_spaces}
        listing = ok(c, "GET", "/api/docs")
        assert set(t_docs) <= {d["name"] for d in listing}
        for needle in (s, s_id, *s_docs, *s_docs.values()):
            assert needle not in json.dumps(c_spaces) and needle not in json.dumps(listing)
        for name in s_docs:
            for ref in (f"{name}@{s}", f"{name}@{s_id}", name):
                assert call(c, "GET", f"/api/docs/{q(ref)}")[0] == 404, ref
        for ref in (s, s_id, s_id[:8]):
            assert call(c, "GET", f"/api/spaces/{q(ref)}")[0] == 404, ref

        # C's disk and log: not one byte of S. (Positive control: T's are there.)
        s_secret = space_secrets(a, s, list(s_docs), list(s_docs.values()))
        t_secret = space_secrets(a, t, list(t_docs), list(t_docs.values()))
        assert leaks(c.data_dir, c.log_path, s_secret) == []
        assert {"space id hex", "space key b64url", "document name 0"} <= {
            w.split(" in ")[0] for w in leaks(c.data_dir, c.log_path, t_secret)
        }
        # The reverse: B learns nothing of T, not even that it exists.
        b_spaces = ok(b, "GET", "/api/spaces")
        assert t_id not in {x["id"] for x in b_spaces} and t not in json.dumps(b_spaces)
        assert leaks(b.data_dir, b.log_path, t_secret) == []
        assert "space id hex" in {w.split(" in ")[0] for w in leaks(b.data_dir, b.log_path, s_secret)}

        # On the wire: C's bytes are all on T's links (C has no link for S,
        # and its own first space has none at all).
        wires = {x["id"]: x["wire"] for x in ok(c, "GET", "/api/spaces")}
        assert wires[t_id]["in"] > 0 and wires[t_id]["out"] > 0, wires
        assert all(w == {"in": 0, "out": 0} for sid, w in wires.items() if sid != t_id), wires
        b_wires = {x["id"]: x["wire"] for x in ok(b, "GET", "/api/spaces")}
        assert b_wires[s_id]["in"] > 0
        assert all(w == {"in": 0, "out": 0} for sid, w in b_wires.items() if sid != s_id), b_wires
        a_s_links_without_c()
        # A's counters too: B and C dialled A, each for its space, and A's
        # first space has no link at all, so not a byte is counted there.
        a_wires = {x["id"]: x["wire"] for x in ok(a, "GET", "/api/spaces")}
        assert a_wires[s_id]["in"] > 0 and a_wires[t_id]["in"] > 0, a_wires
        assert all(w == {"in": 0, "out": 0} for sid, w in a_wires.items() if sid not in (s_id, t_id)), a_wires
    finally:
        for peer in (c, b, a):
            peer.stop()


# -- 2. a reader's edits, sent by hand, change nothing -----------------------------------------


def test_edits_a_reader_sends_on_the_raw_protocol_change_no_replica(tmp_path):
    tag = secrets.token_hex(6)
    a, b, r = start(tmp_path, "a"), start(tmp_path, "b"), start(tmp_path, "r")
    try:
        s = f"sp-{tag}"
        s_id = bytes.fromhex(create_space(a, s)["id"])
        doc = f"notes-{tag}"
        ref = f"{doc}@{s}"
        original = f"written by a writer {tag}\n"
        ok(a, "POST", "/api/docs", {"name": doc, "text": original, "space": s}, status=201)
        invite(a, s, b)
        invite(a, s, r, role="reader")
        wait_member(a, s, b, "writer")
        r_id = wait_member(a, s, r, "reader")
        wait_member(b, s, r, "reader")  # B knows R is a reader: the roster reached it
        wait_text(b, ref, original)
        wait_text(r, ref, original)
        r.stop()
        for peer in (a, b):
            wait_for_blocking(lambda p=peer: not member_row(p, s, r_id)["connected"], what="R's links gone")
        keys = PeerKeys.read(r.data_dir, s_id)
        assert keys.peer_id.hex() == r_id
        before = {peer.address: refused(peer, s) for peer in (a, b)}
        forged = [f"READER-EDIT-{tag}-{n}" for n in range(3)]
        sent = asyncio.run(_send_reader_edits(a, b, keys, doc, forged))
        for peer in (a, b):
            was = before[peer.address]
            wait_for_blocking(
                lambda p=peer, w=was: (
                    refused(p, s).get("edit", 0) >= w.get("edit", 0) + sent["edit"]
                    and refused(p, s).get("answer", 0) >= w.get("answer", 0) + sent["answer"]
                ),
                what=lambda p=peer: f"{p.address} counts the refused edits: {refused(p, s)}",
            )
        # A writer's change after them: once B has it, B has all A had.
        mark = f"writer-mark-{tag}"
        asyncio.run(type_into(a, ref, mark))
        wait_for_blocking(lambda: mark in (text_of(b, ref) or ""), what="B has A's change")
        wait_for_blocking(lambda: text_of(a, ref) == text_of(b, ref), what="B at A's state")
        for peer in (a, b):
            text = text_of(peer, ref)
            assert text is not None and text.startswith(original.rstrip("\n")) and mark in text
            assert not any(f in text for f in forged), text
            peer.wait_durable()
            assert leaks(peer.data_dir, peer.log_path, {f: f.encode() for f in forged}) == []
            log = peer.log_path.read_text(errors="replace")
            assert re.search(rf"refused from peer {r_id}: UPDATE from a reader", log), log[-3000:]
            assert metric(peer, "meshpad_rights_refused_total", 'what="edit"') >= sent["edit"]
        # Positive control for the file scan: the writer's mark is stored.
        assert any(mark.encode() in data for data in data_files(a.data_dir).values())
    finally:
        for peer in (r, b, a):
            peer.stop()


async def _send_reader_edits(a: Peer, b: Peer, keys: PeerKeys, doc: str, forged: list[str]) -> dict[str, int]:
    """On a raw link with R's keys to each of A and B: fetch *doc*'s state,
    then send each of *forged* inserted as its own UPDATE, and the whole
    edited state as a SYNC_STEP2. Returns how many of each were sent to each."""
    async with aiohttp.ClientSession() as http:
        for peer in (a, b):
            link = await RawLink.open(http, peer.url, keys, name="r")
            await link.ready()
            ydoc: pycrdt.Doc = pycrdt.Doc()
            ydoc.apply_update(await link.sync(doc, ydoc.get_state()))
            text = ydoc.get("content", type=pycrdt.Text)
            assert "written by a writer" in str(text)
            for edit in forged:
                state = ydoc.get_state()
                text.insert(0, edit)
                await link.send(pw.Update(doc, ydoc.get_update(state)))
            text.insert(len(str(text)), forged[0])
            await link.send(pw.SyncStep2(doc, ydoc.get_update()))
            # A PING round trip: everything sent before it was read.
            await link.send(pw.Ping(4242))
            await wait_for(lambda lk=link: any(getattr(m, "nonce", None) == 4242 for m in lk.of(pw.Pong)), 15)
            assert link.closed is None, f"{peer.address} closed the reader's link: {link.closed}"
            await link.close()
    return {"edit": len(forged), "answer": 1}


# -- 3. a removed member --------------------------------------------------------------------


def _space_with(tmp_path: Path, tag: str, names: list[str]) -> tuple[Peer, str, bytes, dict[str, str], list[Peer]]:
    """A's space S with documents, and writers *names* that have them all."""
    a = start(tmp_path, "a")
    members = [start(tmp_path, name) for name in names]
    s = f"sp-{tag}"
    s_id = bytes.fromhex(create_space(a, s)["id"])
    kept = {f"kept-{tag}-{n}": f"what the members keep {tag} {n}\n" for n in range(2)}
    for name, text in kept.items():
        ok(a, "POST", "/api/docs", {"name": name, "text": text, "space": s}, status=201)
    for peer in members:
        invite(a, s, peer)
        wait_member(a, s, peer, "writer")
    for peer in members:
        for name, text in kept.items():
            wait_text(peer, f"{name}@{s}", text)
        peer.wait_durable()
    return a, s, s_id, kept, members


def _status(peer: Peer, space_id: bytes) -> str:
    return next(x for x in ok(peer, "GET", "/api/spaces") if x["id"] == space_id.hex())["status"]


def _changes_after_removal(a: Peer, s: str, kept: dict[str, str], tag: str) -> dict[str, bytes]:
    """A new document of S and an edit to a kept one, made on A."""
    fresh = f"after-{tag}"
    ok(a, "POST", "/api/docs", {"name": fresh, "text": f"{fresh} text\n", "space": s}, status=201)
    edited, edit = next(iter(kept)), f"edit-after-removal-{tag}"
    asyncio.run(type_into(a, f"{edited}@{s}", edit))
    assert edit in (text_of(a, f"{edited}@{s}") or "")
    return {"new document": fresh.encode(), "edit": edit.encode()}


def _has_nothing_new(peer: Peer, s: str, kept: dict[str, str], new: dict[str, bytes]) -> None:
    """*peer* has what it had of S, and none of *new*."""
    fresh = new["new document"].decode()
    assert call(peer, "GET", f"/api/docs/{q(fresh)}@{q(s)}")[0] == 404
    listing = {x["name"] for x in ok(peer, "GET", "/api/docs")}
    assert fresh not in listing and set(kept) <= listing, listing
    for name, text in kept.items():
        assert text_of(peer, f"{name}@{s}") == text
    peer.wait_durable()
    assert leaks(peer.data_dir, peer.log_path, new) == []


def test_a_member_removed_while_online_is_refused_and_gets_nothing_new(tmp_path):
    tag = secrets.token_hex(6)
    a, s, s_id, kept, (b,) = _space_with(tmp_path, tag, ["b"])
    try:
        b_keys = PeerKeys.read(b.data_dir, s_id)
        b_id = b_keys.peer_id.hex()
        ok(a, "DELETE", f"/api/spaces/{q(s)}/members/{b_id}")
        # B gets the op that removed it, and says so.
        wait_for_blocking(lambda: _status(b, s_id) == "removed", what=lambda: f"B told it was removed:\n{b.log()}")
        assert "this peer was removed from the space" in b.log_path.read_text(errors="replace")
        assert space_of(a, s)["epoch"] == 1
        assert member_row(a, s, b_id) is None
        new = _changes_after_removal(a, s, kept, tag)
        b.stop()
        b.start()
        assert _status(b, s_id) == "removed"
        # B's link to A, dialled by hand with B's keys (B's own process dials
        # no member of S any more): A refuses it, and counts and logs that.
        links_refused = refused(a, s).get("link", 0)
        reason = asyncio.run(_dial_refused(a, b_keys))
        assert "removed from this space" in reason, reason
        assert refused(a, s).get("link", 0) == links_refused + 1
        assert "removed from this space" in a.log_path.read_text(errors="replace")
        _has_nothing_new(b, s, kept, new)
        assert member_row(a, s, b_id) is None
    finally:
        for peer in (b, a):
            peer.stop()


def test_a_member_removed_while_offline_is_refused_gets_nothing_new_and_is_told(tmp_path):
    tag = secrets.token_hex(6)
    a, s, s_id, kept, (d,) = _space_with(tmp_path, tag, ["d"])
    try:
        d_id = PeerKeys.read(d.data_dir, s_id).peer_id.hex()
        d.stop()
        wait_for_blocking(lambda: not member_row(a, s, d_id)["connected"], what="D's link gone")
        ok(a, "DELETE", f"/api/spaces/{q(s)}/members/{d_id}")
        assert space_of(a, s)["epoch"] == 1
        new = _changes_after_removal(a, s, kept, tag)
        links_refused = refused(a, s).get("link", 0)
        d.start()
        # D dials A with the key it had: A refuses it as removed.
        wait_for_blocking(
            lambda: refused(a, s).get("link", 0) > links_refused,
            what=lambda: f"A refuses D's link: {refused(a, s)}\nD:\n{d.log()}\nA:\n{a.log()}",
        )
        _has_nothing_new(d, s, kept, new)
        # "What it already had stays with it, and the UI says so plainly":
        # D learns that it was removed, as a peer online at its removal does.
        wait_for_blocking(
            lambda: _status(d, s_id) == "removed",
            what=lambda: f"D told it was removed (its status: {_status(d, s_id)!r}):\n{d.log()}",
        )
        assert "removed from this space" in d.log_path.read_text(errors="replace")
    finally:
        for peer in (d, a):
            peer.stop()


def test_a_member_restarted_where_nobody_can_dial_it_dials_back_at_once(tmp_path):
    """B comes back on another port, so A cannot dial it: B must dial the
    peers it remembers of S itself, as soon as it starts (as a peer did
    before spaces), not when its first roster timer fires."""
    tag = secrets.token_hex(6)
    a, s, s_id, _, (b,) = _space_with(tmp_path, tag, ["b"])
    try:
        b_id = PeerKeys.read(b.data_dir, s_id).peer_id.hex()
        b.stop()
        wait_for_blocking(lambda: not member_row(a, s, b_id)["connected"], what="B's link gone")
        b = Peer(b.data_dir, env=b.env).start()  # a new port
        wait_for_blocking(
            lambda: member_row(a, s, b_id)["connected"],
            10,
            what=lambda: f"B back on a link of S:\nB:\n{b.log()}\nA:\n{a.log()}",
        )
        # And the link carries S: a change on A reaches B.
        new = f"back-{tag}"
        ok(a, "POST", "/api/docs", {"name": new, "text": f"{new}\n", "space": s}, status=201)
        wait_text(b, f"{new}@{s}", f"{new}\n")
    finally:
        for peer in (b, a):
            peer.stop()


def test_a_removed_peer_takes_no_change_from_a_member_that_missed_the_removal(tmp_path):
    """E was away when B was removed, and comes back knowing B's address:
    B must not take E's new changes (a removed peer receives no new change)."""
    tag = secrets.token_hex(6)
    a, s, s_id, kept, (b, e) = _space_with(tmp_path, tag, ["b", "e"])
    try:
        doc = next(iter(kept))
        ref = f"{doc}@{s}"
        e_keys = PeerKeys.read(e.data_dir, s_id)
        b_id = PeerKeys.read(b.data_dir, s_id).peer_id.hex()
        e.stop()
        wait_for_blocking(lambda: not member_row(a, s, e_keys.peer_id.hex())["connected"], what="E's link gone")
        # Positive control: E's change, sent by hand on E's link to B, gets in.
        before = f"e-before-{tag}"
        taken = asyncio.run(_member_edit(b, e_keys, doc, before))
        assert taken is not None and before in taken
        wait_for_blocking(lambda: before in (text_of(b, ref) or ""), what="B takes E's change")
        ok(a, "DELETE", f"/api/spaces/{q(s)}/members/{b_id}")
        wait_for_blocking(lambda: _status(b, s_id) == "removed", what=lambda: f"B told it was removed:\n{b.log()}")
        after = f"e-after-{tag}"
        taken = asyncio.run(_member_edit(b, e_keys, doc, after))
        assert taken is None or after not in taken, "B, removed, took a new change on a link it accepted"
        assert after not in (text_of(b, ref) or "")
    finally:
        for peer in (e, b, a):
            peer.stop()


async def _member_edit(peer: Peer, keys: PeerKeys, doc: str, insert: str) -> str | None:
    """On a raw link with *keys* to *peer*: fetch *doc*, send *insert* as an
    UPDATE, then ask for the document again. Returns the text *peer* answers
    with, or None when it refuses the link."""
    async with aiohttp.ClientSession() as http:
        link = await RawLink.open(http, peer.url, keys, name="e")
        if isinstance(await link.admitted_or_closed(), str):
            return None
        ydoc: pycrdt.Doc = pycrdt.Doc()
        try:
            ydoc.apply_update(await link.sync(doc, ydoc.get_state()))
            text = ydoc.get("content", type=pycrdt.Text)
            state = ydoc.get_state()
            text.insert(0, insert)
            await link.send(pw.Update(doc, ydoc.get_update(state)))
            answer: pycrdt.Doc = pycrdt.Doc()
            answer.apply_update(await link.sync(doc, answer.get_state()))
        except AssertionError:
            if link.closed is not None:
                return None
            raise
        await link.close()
        return str(answer.get("content", type=pycrdt.Text))


async def _dial_refused(peer: Peer, keys: PeerKeys) -> str:
    async with aiohttp.ClientSession() as http:
        link = await RawLink.open(http, peer.url, keys, name="b")
        reason = await link.refused()
        assert not link.of(pw.Update) and not link.of(pw.SyncStep2), "a refused link got changes"
        await link.close()
        return reason
