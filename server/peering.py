"""Peer links: ``WS /peer`` for inbound links, and a dialer for outbound ones.

Every link starts with the Noise handshake of ``crdt.secure`` (within
HANDSHAKE_TIMEOUT); only then does the engine hear of it, with the peer id
the handshake authenticated, and from then on every frame is encrypted.
What the engine answers goes through the runtime's one ``perform``, which
calls back here only to send, dial and close (:class:`Peering` is its
``Network``). A remote
address whose links keep failing (handshake or protocol errors) is banned for
a growing while (``crdt.limits.BanList``), and no address may hold more than
CONNECTIONS_PER_ADDRESS links at once.

Each link has a bounded outbox drained by its writer task. Overflow policy:
a link whose outbox passes OUTBOX_BYTES is closed with a reason; the node
redials and anti-entropy repairs whatever the dropped frames carried. Frames
from a link enter the core through exactly one call (``Engine.peer_frame``);
whatever they hold, the worst outcome is that this link closes.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import socket
from collections.abc import Callable
from dataclasses import dataclass, field

import aiohttp
from aiohttp import WSMsgType, web

from crdt import peerwire
from crdt import peerwire as pw
from crdt.errors import RemoteProtocolError
from crdt.limits import CONNECTIONS_PER_ADDRESS, BanList
from crdt.secure import CHUNK, TAG, HandshakeRefused, Identity, SecureChannel
from server.outbox import AnyWebSocket, Outbox
from server.runtime import Runtime
from server.spaces import SPACES

log = logging.getLogger(__name__)

# A largest peer message, encrypted: one 17-byte overhead per 65,535-byte chunk.
MAX_WIRE_FRAME = peerwire.MAX_FRAME_BYTES + (peerwire.MAX_FRAME_BYTES // CHUNK + 1) * (TAG + 1)
OUTBOX_BYTES = 32 * 1024 * 1024  # queued for one peer before the link is dropped
DIAL_TIMEOUT = 5.0  # seconds to open a link, TCP and WebSocket handshake included
GOOD_LINK_SECONDS = 60.0  # a link this long without a refusal clears its address's strikes
HANDSHAKE_TIMEOUT = 5.0  # seconds for the Noise handshake once the WebSocket is open


def _not_binary(msg: aiohttp.WSMessage) -> str:
    if msg.type == WSMsgType.ERROR:
        return f"WebSocket error: {msg.data}"  # e.g. a frame above MAX_WIRE_FRAME
    return "binary frames only"


def _ws_header(size: int, masked: bool) -> int:
    """RFC 6455 frame header length for a payload of *size* bytes."""
    return 2 + (2 if 125 < size <= 0xFFFF else 8 if size > 0xFFFF else 0) + (4 if masked else 0)


@dataclass(slots=True)
class Traffic:
    """Peer-protocol traffic since start, for ``server.metrics``: messages
    and wire bytes (encryption and WebSocket framing included) by
    (direction, message type); the Noise handshake counts as type
    ``handshake``. The keys are a bounded set (``peerwire.TYPE_NAMES``)."""

    messages: dict[tuple[str, str], int] = field(default_factory=dict)
    bytes: dict[tuple[str, str], int] = field(default_factory=dict)

    def count(self, direction: str, kind: str, size: int) -> None:
        key = (direction, kind)
        self.messages[key] = self.messages.get(key, 0) + 1
        self.bytes[key] = self.bytes.get(key, 0) + size


@dataclass(eq=False)
class PeerLink:
    id: int
    address: str
    channel: SecureChannel
    outbox: Outbox = field(default_factory=lambda: Outbox(max_bytes=OUTBOX_BYTES))
    refused: bool = False  # closed for invalid data (a strike)
    masked: bool = False  # client-to-server frames carry a 4-byte mask
    wire_out: int = 0  # bytes on the wire, WebSocket framing included
    traffic: Traffic | None = None  # the peering's counters
    # Cleared while the engine waits for the causes of this link's updates (backpressure).
    readable: asyncio.Event = field(default_factory=asyncio.Event)

    def __post_init__(self) -> None:
        self.readable.set()

    def send(self, message: bytes) -> None:
        """Queue one peer-protocol message (encrypted now, so that nonces
        follow the order of the queue)."""
        if self.close_reason is not None:
            return
        self.send_raw(self.channel.encrypt(message), pw.type_name(message))

    def send_raw(self, data: bytes, kind: str = "handshake") -> None:
        if self.outbox.put(data):
            size = len(data) + _ws_header(len(data), masked=self.masked)
            self.wire_out += size
            if self.traffic is not None:
                self.traffic.count("out", kind, size)

    def close(self, reason: str) -> None:
        self.outbox.close(reason)

    @property
    def close_reason(self) -> str | None:
        return self.outbox.close_reason


class Peering:
    def __init__(self, runtime: Runtime, identity: Identity) -> None:
        self.runtime = runtime
        self.identity = identity
        self.bans = BanList()
        self._per_address: dict[str, int] = {}
        self.links: dict[int, PeerLink] = {}
        self._next_link = 0
        self._tasks: asyncio.TaskGroup | None = None
        self._client: aiohttp.ClientSession | None = None
        self._stopping = False
        self.refused = 0
        # Links refused, by a reason from a bounded set (server.metrics):
        # wrong_key, not_meshpad, version, malformed, timeout (the
        # handshake), invalid_data (after it), banned, too_many_links.
        self.refusals: dict[str, int] = {}
        self.bans_started = 0
        self.traffic = Traffic()
        self.wire_in = 0  # bytes received on peer links, WebSocket framing included
        self._wire_out_closed = 0  # bytes sent on links that have closed
        self._dial_errors: dict[str, str] = {}  # the last failure logged, per address
        self._stop_future: asyncio.Future[None] | None = None
        self._tls: set[str] = set()  # addresses last reached over TLS
        self.enabled = True  # False once this peer was removed from the space: nothing is dialled
        self.closed_by_peer: Callable[[str], None] = lambda reason: None  # server.spaces: "removed from this space"
        runtime.network = self

    # -- life cycle --------------------------------------------------------

    async def run(self, started: asyncio.Future[None], joins: list[str]) -> None:
        """Owns every dial task; *started* is set once the joins are under
        way. Returns when :meth:`stop` is called."""
        async with aiohttp.ClientSession() as client, asyncio.TaskGroup() as tasks:
            self._client = client
            self._tasks = tasks
            engine = self.runtime.core
            now = self.runtime.now()
            for address in joins:
                self.runtime.perform(engine.join(address, now))
            self.runtime.perform(engine.tick(now))
            self._stop_future = asyncio.get_running_loop().create_future()
            started.set_result(None)
            await self._stop_future
        self._tasks = None

    def stop(self) -> None:
        self._stopping = True
        for link in list(self.links.values()):
            link.close("peer shutting down")
        if self._stop_future is not None and not self._stop_future.done():
            self._stop_future.set_result(None)

    # -- the runtime's network ---------------------------------------------

    def send(self, link_id: int, data: bytes) -> None:
        link = self.links.get(link_id)
        if link is not None:
            link.send(data)

    def dial(self, address: str) -> None:
        if self._tasks is not None and not self._stopping and self.enabled:
            self._tasks.create_task(self._dial(address))

    def close(self, link_id: int, reason: str) -> None:
        link = self.links.get(link_id)
        if link is not None:
            if reason.startswith("protocol error") and not link.refused:
                # The core found invalid data it could answer without raising
                # (a HELLO for another space, a roster op that does not verify,
                # a cursor it cannot read): a strike like any other.
                self._refuse(link, link.address, reason.removeprefix("protocol error: "))
                return
            log.info("closing link to %s: %s", link.address, reason)
            link.close(reason)

    def pause(self, link_id: int, paused: bool) -> None:
        link = self.links.get(link_id)
        if link is not None:
            (link.readable.clear if paused else link.readable.set)()

    # -- links -------------------------------------------------------------

    async def _dial(self, address: str) -> None:
        """Open a link to *address*, over TLS if it serves HTTPS: first in
        the scheme that last worked there (plain at first), then, when the
        answer shows that the other side speaks the other one, in that one.
        The certificate is not verified: Noise authenticates the peer and
        encrypts everything inside (docs/security.md)."""
        assert self._client is not None
        tls = address in self._tls
        try:
            async with asyncio.timeout(DIAL_TIMEOUT):
                try:
                    ws = await self._connect(address, tls)
                except (aiohttp.ClientError, OSError, ValueError) as exc:
                    if not _other_scheme(exc, tls):
                        raise
                    tls = not tls
                    try:
                        ws = await self._connect(address, tls)
                    except (aiohttp.ClientError, OSError, ValueError) as second:
                        raise (exc if _other_scheme(second, tls) else second) from None
        except (aiohttp.ClientError, OSError, TimeoutError, ValueError) as exc:
            self._dial_failed(address, dial_error(exc))
            return
        (self._tls.add if tls else self._tls.discard)(address)
        await self.serve(ws, outbound=True, address=address, host=address.rpartition(":")[0])

    async def _connect(self, address: str, tls: bool) -> aiohttp.ClientWebSocketResponse:
        assert self._client is not None
        url = f"{'https' if tls else 'http'}://{address}/peer"
        return await self._client.ws_connect(url, max_msg_size=MAX_WIRE_FRAME, compress=0, ssl=False)

    def _dial_failed(self, address: str, reason: str) -> None:
        """Tell the node, and the person: a failure is logged as a warning
        when it is new for this address (not at every retry)."""
        if self._stopping:
            return
        previous = self._dial_errors.get(address)
        if reason == REFUSED_FOR_NOW and previous and REFUSED_FOR_NOW not in previous:
            reason = f"{previous}; {reason}"  # a ban hides the cause: keep it in view
        if previous != reason:
            self._dial_errors[address] = reason
            log.warning("cannot connect to %s: %s (retrying)", address, reason)
        else:
            log.debug("cannot connect to %s: %s", address, reason)
        self.runtime.perform(self.runtime.core.dial_failed(address, self.runtime.now(), reason))

    @property
    def wire_out(self) -> int:
        """Bytes sent on peer links, WebSocket framing included."""
        return self._wire_out_closed + sum(link.wire_out for link in self.links.values())

    def admit(self, host: str) -> str | None:
        """Why a new link from *host* is refused, or None to admit it."""
        if self.bans.is_banned(host, self.runtime.now()):
            self.bans.refused += 1
            self._count_refusal("banned")
            return "banned for repeated invalid data"
        if self._per_address.get(host, 0) >= CONNECTIONS_PER_ADDRESS:
            self._count_refusal("too_many_links")
            return f"more than {CONNECTIONS_PER_ADDRESS} links from one address"
        return None

    async def serve(
        self, ws: AnyWebSocket, outbound: bool, address: str, host: str,
        channel: SecureChannel | None = None, replies: list[bytes] | None = None,
    ) -> None:  # fmt: skip
        """Run one link. An inbound link whose first frame was already read
        (to find its space: :func:`handle`) comes with its *channel* and the
        *replies* to send."""
        self._next_link += 1
        link = PeerLink(
            self._next_link, address, channel or SecureChannel(self.identity, initiator=outbound), masked=outbound,
            traffic=self.traffic,
        )  # fmt: skip
        self.links[link.id] = link
        self._per_address[host] = self._per_address.get(host, 0) + 1
        engine = self.runtime.core
        opened = False
        failure: str | None = "closed before the handshake"
        started = self.runtime.now()
        try:
            async with asyncio.TaskGroup() as tasks:
                tasks.create_task(link.outbox.pump(ws))
                for frame in [*link.channel.start(), *(replies or [])]:
                    link.send_raw(frame)
                failure = await self._handshake(ws, link, outbound, host)
                opened = failure is None
                if opened:
                    self._dial_errors.pop(address, None)
                    now = self.runtime.now()
                    self.runtime.perform(engine.link_opened(link.id, outbound, address, now, link.channel.remote_id))
                    await self._read(ws, link, host)
                link.close(link.close_reason or "closed")
        finally:
            del self.links[link.id]
            self._wire_out_closed += link.wire_out
            self._per_address[host] -= 1
            if not self._per_address[host]:
                del self._per_address[host]
            if opened:
                if not link.refused and self.runtime.now() - started > GOOD_LINK_SECONDS:
                    self.bans.forgive(host)  # a long, clean link clears earlier strikes
                if not self._stopping:
                    self.runtime.perform(engine.link_closed(link.id, self.runtime.now(), link.close_reason))
            elif outbound:
                self._dial_failed(address, failure or "closed")

    async def _handshake(self, ws: AnyWebSocket, link: PeerLink, outbound: bool, host: str) -> str | None:
        """Run the Noise handshake; None once it is done, else why it failed."""
        try:
            async with asyncio.timeout(HANDSHAKE_TIMEOUT):
                while True:
                    msg = await ws.receive()
                    if msg.type in (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED):
                        return closed_in_handshake(msg.extra if msg.type == WSMsgType.CLOSE else None)
                    if msg.type != WSMsgType.BINARY:
                        raise RemoteProtocolError(_not_binary(msg))
                    size = len(msg.data) + _ws_header(len(msg.data), masked=not outbound)
                    self.wire_in += size
                    self.traffic.count("in", "handshake", size)
                    replies, _ = link.channel.receive(msg.data)
                    for frame in replies:
                        link.send_raw(frame)
                    if link.channel.established:
                        return None
        except (RemoteProtocolError, TimeoutError) as exc:
            reason = str(exc) or "the handshake timed out"
            kind = "timeout" if isinstance(exc, TimeoutError) else "malformed"
            kind = exc.kind if isinstance(exc, HandshakeRefused) else kind
            self._refuse(link, host, f"handshake refused: {reason}", kind)
            return reason

    def hold(self, host: str, delta: int) -> None:
        count = self._per_address.get(host, 0) + delta
        if count > 0:
            self._per_address[host] = count
        else:
            self._per_address.pop(host, None)

    def refuse_unrouted(self, host: str, reason: str, kind: str) -> None:
        """A link refused before it was known which space it is for."""
        self.refused += 1
        self._count_refusal(kind)
        until = self.bans.strike(host, self.runtime.now())
        if until:
            self.bans_started += 1
        log.warning("refused link from %s (handshake refused: %s)", host, reason)

    def _count_refusal(self, kind: str) -> None:
        self.refusals[kind] = self.refusals.get(kind, 0) + 1

    def _refuse(self, link: PeerLink, host: str, reason: str, kind: str = "invalid_data") -> None:
        self.refused += 1
        self._count_refusal(kind)
        until = self.bans.strike(host, self.runtime.now())
        if until:
            self.bans_started += 1
        log.warning(
            "refused link %s %s (%s)%s",
            "to" if link.channel.initiator else "from",
            link.address,
            reason,
            f"; {host} banned for {until - self.runtime.now():.0f}s" if until else "",
        )
        link.refused = True
        link.close(f"protocol error: {reason}")

    async def _read(self, ws: AnyWebSocket, link: PeerLink, host: str) -> None:
        engine = self.runtime.core
        while link.close_reason is None:
            await link.readable.wait()  # cleared while its updates wait for causes coming on other links
            msg = await ws.receive()
            if msg.type in (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED):
                reason = msg.extra if msg.type == WSMsgType.CLOSE and isinstance(msg.extra, str) else ""
                if reason:
                    # Why the other side closed (not authenticated: shown, never acted on).
                    link.close(f"closed by the peer: {reason[:200]}")
                    self.closed_by_peer(reason)
                return
            if link.close_reason is not None:
                return
            try:
                if msg.type != WSMsgType.BINARY:
                    raise RemoteProtocolError(_not_binary(msg))
                size = len(msg.data) + _ws_header(len(msg.data), masked=not link.masked)
                self.wire_in += size
                _, message = link.channel.receive(msg.data)
                assert message is not None
                self.traffic.count("in", pw.type_name(message), size)
                effects = engine.peer_frame(link.id, message, self.runtime.now())
            except pw.VersionMismatch as exc:
                # A peer of another version is told why, and not banned: it is not misbehaving.
                log.warning("link %s %s: %s", "to" if link.channel.initiator else "from", link.address, exc)
                self._count_refusal("version")
                link.close(f"protocol error: {exc}")
                return
            except RemoteProtocolError as exc:
                self._refuse(link, host, str(exc))
                return
            self.runtime.perform(effects)


REFUSED_FOR_NOW = "the peer refuses this address for a while (too many failed attempts, or too many links)"


def _other_scheme(exc: BaseException, tls: bool) -> bool:
    """Whether a dial's failure shows that the peer speaks the other scheme:
    a TLS listener hangs up on a plain HTTP request without answering it; a
    plain one answers a TLS hello with bytes that are not TLS."""
    if tls:
        return isinstance(exc, aiohttp.ClientConnectorSSLError)  # (the certificate is not checked)
    return isinstance(exc, aiohttp.ServerDisconnectedError)


def dial_error(exc: BaseException) -> str:
    """Why a dial failed, as a person reads it."""
    if isinstance(exc, TimeoutError):
        return f"timed out (no answer within {DIAL_TIMEOUT:.0f} s)"
    if isinstance(exc, aiohttp.WSServerHandshakeError):
        if exc.status == 429:
            return REFUSED_FOR_NOW
        return f"not a Meshpad peer (it answered HTTP {exc.status} to the peer protocol's upgrade)"
    error = exc.os_error if isinstance(exc, aiohttp.ClientConnectorError) else exc
    if isinstance(error, socket.gaierror):
        return "unknown host (the name does not resolve)"
    code = getattr(error, "errno", None)
    if code == errno.ECONNREFUSED:
        return "refused (nothing listens on that port)"
    if code in (errno.EHOSTUNREACH, errno.ENETUNREACH):
        return "unreachable (no route to that host)"
    if code == errno.ETIMEDOUT:
        return "timed out"
    return str(getattr(error, "strerror", None) or error or type(error).__name__)


def closed_in_handshake(reason: str | None) -> str:
    """Why a peer closed a link we dialled before the handshake finished."""
    if reason and "handshake failed" in reason:
        return "wrong network key (the peer refused the handshake)"
    if reason and "unsupported protocol version" in reason:
        return "the peer runs another version of Meshpad: " + reason.removeprefix("protocol error: ")
    return f"the peer closed the link during the handshake{': ' + reason if reason else ''}"


async def handle(request: web.Request) -> web.StreamResponse:
    """``WS /peer``: a link opened by another peer, for one of this peer's
    spaces: its first frame is tried with every space's keys, and the link
    goes to the space whose key it holds (``server.spaces``)."""
    peering = request.app[PEERING]
    spaces = request.app[SPACES]
    host = request.remote or ""
    refusal = peering.admit(host)
    if refusal is not None:
        log.warning("refused link from %s: %s", host, refusal)
        raise web.HTTPTooManyRequests(text=refusal)
    ws = web.WebSocketResponse(max_msg_size=MAX_WIRE_FRAME, compress=False)
    await ws.prepare(request)
    peering.hold(host, 1)  # counts against the host's links until its space is known
    try:
        async with asyncio.timeout(HANDSHAKE_TIMEOUT):
            msg = await ws.receive()
    except TimeoutError:
        peering.refuse_unrouted(host, "handshake timed out", "timeout")
        await ws.close(code=1008, message=b"protocol error: handshake refused: handshake timed out")
        return ws
    finally:
        peering.hold(host, -1)
    if msg.type != WSMsgType.BINARY:
        if msg.type == WSMsgType.TEXT:
            peering.refuse_unrouted(host, _not_binary(msg), "malformed")
            await ws.close(code=1008, message=f"protocol error: {_not_binary(msg)}".encode())
        return ws
    candidates = spaces.handshake_keys()
    channel = SecureChannel(peering.identity, initiator=False, keys=[key for _, key in candidates])
    try:
        replies, _ = channel.receive(msg.data)
    except RemoteProtocolError as exc:
        kind = exc.kind if isinstance(exc, HandshakeRefused) else "malformed"
        peering.refuse_unrouted(host, str(exc), kind)
        await ws.close(code=1008, message=f"protocol error: handshake refused: {exc}".encode()[:120])
        return ws
    space = candidates[channel.chosen or 0][0]
    if space.peering is not peering:
        refusal = space.peering.admit(host)  # its own links from that address count too
        if refusal is not None:
            log.warning("refused link from %s: %s", host, refusal)
            await ws.close(code=1008, message=f"protocol error: {refusal}".encode()[:120])
            return ws
    size = len(msg.data) + _ws_header(len(msg.data), masked=True)
    space.peering.wire_in += size
    space.peering.traffic.count("in", "handshake", size)
    await space.peering.serve(ws, outbound=False, address=host, host=host, channel=channel, replies=replies)
    return ws


PEERING = web.AppKey("peering", Peering)
