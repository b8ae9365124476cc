"""The LAN announcement's hint (crdt.lanhint) and what a listener does with
it, without sockets; where discovery runs for a given --host (server.discovery.plan);
the setting; and the Peers page's mark."""

from __future__ import annotations

import secrets

import pytest

from crdt import lanhint
from crdt.secure import network_key_from_text
from server import discovery
from server.settings import Settings

KEY = lanhint.discovery_key(network_key_from_text("lan-hint-network-one"))
OTHER = lanhint.discovery_key(network_key_from_text("lan-hint-network-two"))
ME, PEER = b"\x01" * 16, b"\x02" * 16
PORT = 7400


def txt(props: dict[str, str]) -> tuple[dict[bytes, bytes | None], int]:
    """Properties as zeroconf hands them over, and their size on the wire."""
    raw = {k.encode(): v.encode() for k, v in props.items()}
    return raw, sum(1 + len(k) + 1 + len(v) for k, v in raw.items())


def announced(key: bytes = KEY, peer: bytes = PEER, port: int = PORT) -> tuple[dict[bytes, bytes | None], int]:
    return txt(lanhint.announcement(key, peer, port, secrets.token_bytes(lanhint.NONCE_BYTES)))


def test_the_hint_carries_no_key_and_verifies_only_with_the_same_network_key():
    network_key = network_key_from_text("lan-hint-network-one")
    props = lanhint.announcement(KEY, PEER, PORT, b"\x07" * 16)
    assert set(props) == {"v", "id", "n", "mac"}
    assert network_key != KEY and network_key.hex() not in "".join(props.values())
    assert KEY.hex() not in "".join(props.values())
    raw, size = txt(props)
    assert size < lanhint.MAX_TXT_BYTES
    hint = lanhint.verify(KEY, raw, PORT, size)
    assert (hint.peer_id, hint.nonce, hint.port) == (PEER, b"\x07" * 16, PORT)
    with pytest.raises(lanhint.HintError, match="MAC"):
        lanhint.verify(OTHER, raw, PORT, size)


def test_every_field_is_covered_by_the_mac():
    props = lanhint.announcement(KEY, PEER, PORT, b"\x07" * 16)
    for field, value in (("id", (b"\x03" * 16).hex()), ("n", (b"\x08" * 16).hex()), ("mac", "00" * 32)):
        raw, size = txt({**props, field: value})
        with pytest.raises(lanhint.HintError, match="MAC"):
            lanhint.verify(KEY, raw, PORT, size)
    raw, size = txt(props)
    with pytest.raises(lanhint.HintError, match="MAC"):
        lanhint.verify(KEY, raw, PORT + 1, size)  # a replay pointing at another port


@pytest.mark.parametrize(
    "change",
    [
        {"v": "2"},
        {"v": ""},
        {"id": "zz" * 16},
        {"id": "ab"},
        {"n": "é" * 32},
        {"mac": "00" * 33},
        {"junk": "x" * 600},
        {f"k{i}": "1" for i in range(10)},
    ],
)
def test_malformed_or_oversized_announcements_are_refused(change):
    props = {**lanhint.announcement(KEY, PEER, PORT, b"\x07" * 16), **change}
    raw, size = txt(props)
    with pytest.raises(lanhint.HintError):
        lanhint.verify(KEY, raw, PORT, size)
    raw.pop(b"mac", None)
    with pytest.raises(lanhint.HintError):
        lanhint.verify(KEY, raw, PORT, size)


def test_a_finder_dials_a_member_once_and_ignores_the_rest():
    finder = lanhint.Finder(KEY, ME)
    raw, size = announced()
    found = finder.heard(raw, size, PORT, ["10.1.2.3"], connected=(), now=0.0)
    assert found == lanhint.Found(PEER, "10.1.2.3:7400")
    # The same announcement heard again from the same address: no new dial.
    assert finder.heard(raw, size, PORT, ["10.1.2.3"], (), 1.0) == lanhint.REPLAYED
    # Replayed by an outsider from its own address: dialled once there (the
    # handshake refuses it), and again only with a nonce not seen there.
    assert finder.heard(raw, size, PORT, ["10.6.6.6"], (), 1.0) == lanhint.Found(PEER, "10.6.6.6:7400")
    assert finder.heard(raw, size, PORT, ["10.6.6.6"], (), 1.5) == lanhint.REPLAYED
    # A fresh announcement soon after: dialled already.
    raw2, size2 = announced()
    assert finder.heard(raw2, size2, PORT, ["10.1.2.3"], (), 2.0) == lanhint.RECENT
    raw3, size3 = announced()
    assert finder.heard(raw3, size3, PORT, ["10.1.2.3"], (), 2.0 + lanhint.REDIAL_AFTER) == lanhint.Found(
        PEER, "10.1.2.3:7400"
    )
    # Connected: not dialled.
    raw4, size4 = announced()
    assert finder.heard(raw4, size4, PORT, ["10.1.2.3"], {PEER}, 500.0) == lanhint.CONNECTED
    # Its own announcement, another network's, nothing usable.
    own, own_size = announced(peer=ME)
    assert finder.heard(own, own_size, PORT, ["10.1.2.4"], (), 501.0) == lanhint.OWN
    theirs, their_size = announced(key=OTHER, peer=b"\x09" * 16)
    assert finder.heard(theirs, their_size, PORT, ["10.1.2.9"], (), 501.0) == lanhint.OTHER_NETWORK
    bad, bad_size = txt({"v": "1"})
    assert finder.heard(bad, bad_size, PORT, ["10.1.2.9"], (), 501.0) == lanhint.MALFORMED
    far, far_size = announced(peer=b"\x0a" * 16)
    assert finder.heard(far, far_size, PORT, ["127.0.0.1", "224.0.0.251", "0.0.0.0"], (), 501.0) == lanhint.NO_ADDRESS
    assert finder.found == 3
    assert finder.ignored == {
        lanhint.REPLAYED: 2, lanhint.RECENT: 1, lanhint.CONNECTED: 1, lanhint.OWN: 1,
        lanhint.OTHER_NETWORK: 1, lanhint.MALFORMED: 1, lanhint.NO_ADDRESS: 1,
    }  # fmt: skip


def test_a_finder_bounds_what_it_tracks_and_how_often_it_dials():
    finder = lanhint.Finder(KEY, ME)
    results = []
    for i in range(lanhint.DIALS_PER_MINUTE + 5):
        raw, size = announced(peer=i.to_bytes(16, "big"))
        results.append(finder.heard(raw, size, PORT, [f"10.0.{i // 250}.{i % 250 + 1}"], (), 10.0))
    assert sum(isinstance(r, lanhint.Found) for r in results) == lanhint.DIALS_PER_MINUTE
    assert results[-5:] == [lanhint.RATE] * 5
    raw, size = announced(peer=b"\xff" * 16)
    assert isinstance(finder.heard(raw, size, PORT, ["10.9.9.9"], (), 70.0), lanhint.Found)  # a minute later
    for i in range(3 * lanhint.MAX_TRACKED):
        raw, size = announced(peer=(1000 + i).to_bytes(16, "big"))
        finder.heard(raw, size, PORT, ["10.8.0.1"], (), 1000.0 + i)
    assert len(finder._tracked) == lanhint.MAX_TRACKED


def test_ipv4_is_preferred_and_ipv6_bracketed():
    assert lanhint.dial_address(["fd00::5", "192.168.1.5"], 7401) == "192.168.1.5:7401"
    assert lanhint.dial_address(["fe80::1", "fd00::5"], 7401) == "[fd00::5]:7401"
    assert lanhint.dial_address(["::1", "nonsense"], 7401) is None


def test_where_discovery_runs():
    off = discovery.plan(False, "10.0.0.5", None)
    assert off.off and "--no-discovery" in off.off
    loop = discovery.plan(True, "127.0.0.1", None)
    assert loop.off and "127.0.0.1" in loop.off and "nobody" in loop.off
    assert discovery.plan(True, "::1", None).off
    one = discovery.plan(True, "10.0.0.5", None)
    assert (one.off, one.interfaces, one.announce) == (None, ("10.0.0.5",), True)
    every = discovery.plan(True, "0.0.0.0", None, machine=["192.168.1.5", "10.0.0.5", "fd00::5"])
    assert every.interfaces == ("192.168.1.5", "10.0.0.5")
    assert discovery.plan(True, "0.0.0.0", None, machine=[]).off
    quiet = discovery.plan(True, "10.0.0.5", "none")
    assert quiet.off is None and not quiet.announce


def test_the_setting():
    assert Settings.from_env({}).discovery is True
    assert Settings.from_env({"MESHPAD_DISCOVERY": "0"}).discovery is False
    assert Settings.from_env({"MESHPAD_DISCOVERY": "off"}).discovery is False
    assert Settings.resolve({"discovery": False}, {"MESHPAD_DISCOVERY": "1"}).discovery is False
    with pytest.raises(ValueError, match="on or off"):
        Settings.from_env({"MESHPAD_DISCOVERY": "maybe"})


def test_the_cli_flag():
    from server.cli import _parser

    assert _parser().parse_args(["serve", "--no-discovery"]).discovery is False
    assert _parser().parse_args(["serve", "--discovery", "off"]).discovery is False
    assert _parser().parse_args(["serve"]).discovery is None


async def test_the_peers_page_marks_a_peer_found_on_the_lan(client):
    """The loopback test peer never runs discovery; a peer the runtime is
    told of is dialled like POST /api/peers and marked."""
    from server.discovery import DISCOVERY
    from server.keys import RUNTIME

    app = client.server.app
    assert (await (await client.get("/api/discovery")).json())["state"] == "off"
    app[RUNTIME].found_on_lan(PEER, "127.0.0.1:9")
    rows = await (await client.get("/api/peers")).json()
    assert [(r["address"], r["found"]) for r in rows] == [("127.0.0.1:9", "lan")]
    html = await (await client.get("/peers/table")).text()
    assert 'class="state found-lan"' in html and "Finding peers on the local network: off" in html
    assert app[DISCOVERY].snapshot()["reason"].startswith("this peer listens on 127.0.0.1 only")


def test_every_announcement_has_a_fresh_nonce_and_verifies():
    where = discovery.plan(True, "10.0.0.5", None)
    lan = discovery.Discovery(None, network_key_from_text("lan-hint-network-one"), PEER, PORT, where)  # type: ignore[arg-type]
    first, second = lan.service_info(), lan.service_info()
    assert first.name == second.name and first.port == PORT and first.parsed_addresses() == ["10.0.0.5"]
    assert first.properties[b"n"] != second.properties[b"n"]
    for info in (first, second):
        assert lanhint.verify(KEY, info.properties, PORT, len(info.text)).peer_id == PEER
