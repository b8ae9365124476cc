"""Finding peers of this network on the local network: mDNS/DNS-SD through
python-zeroconf, around the sans-IO hint of ``crdt.lanhint``.

:class:`Discovery` runs on the peer's event loop (``AsyncZeroconf`` attaches
to the running loop; its browser calls back on it). It

* announces ``_meshpad._tcp.local.`` with this peer's port and hint, on the
  interfaces the peer listens on only (:func:`plan`), and announces it again
  with a fresh nonce every ANNOUNCE_EVERY seconds;
* browses for the same service, resolves what it hears (at most RESOLVING at
  once), and hands each announcement to a ``crdt.lanhint.Finder``; what the
  Finder says to dial goes to ``Runtime.found_on_lan``, which dials it as
  ``POST /api/peers`` would and marks the peer as found on the LAN.

A peer listening on loopback only never opens an mDNS socket: nobody on the
network could reach it. A peer that only dials out (``--advertise none``)
browses but does not announce. An error of the mDNS machinery is logged and
turns discovery off; it never stops the peer.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import secrets
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from zeroconf import Error as ZeroconfError
from zeroconf import IPVersion, ServiceStateChange, Zeroconf
from zeroconf.asyncio import AsyncServiceBrowser, AsyncServiceInfo, AsyncZeroconf

from crdt import lanhint
from server import addresses
from server.runtime import Runtime

log = logging.getLogger(__name__)

ANNOUNCE_EVERY = 60.0  # seconds between announcements, each with a new nonce
RESOLVE_TIMEOUT_MS = 3000
RESOLVING = 4  # announcements resolved at once
WAITING = 64  # announcements waiting to be resolved; more are dropped until heard again
LOG_EVERY = 60.0  # an ignored announcement is logged at most this often per reason
# Reasons to ignore an announcement that a person may want to know of (the others are routine).
NOTEWORTHY = (lanhint.OTHER_NETWORK, lanhint.MALFORMED, lanhint.NO_ADDRESS, lanhint.RATE)


@dataclass(frozen=True, slots=True)
class Plan:
    """Where discovery runs: *interfaces* (addresses) to browse and announce
    on; *announce* False for a dial-out-only peer; *off* says why it does not
    run at all (None: it runs)."""

    interfaces: tuple[str, ...] = ()
    announce: bool = True
    ip_version: IPVersion = IPVersion.V4Only
    off: str | None = None


def plan(enabled: bool, host: str, advertise: str | None, machine: list[str] | None = None) -> Plan:
    """How discovery runs for a peer listening on *host* (*machine*: this
    machine's addresses, found when needed and not given)."""
    if not enabled:
        return Plan(off="--no-discovery or MESHPAD_DISCOVERY=0")
    if addresses.is_loopback_host(host):
        return Plan(off=f"this peer listens on {host} only, which nobody on the network can reach")
    announce = not (advertise is not None and advertise.lower() == "none")
    if host in addresses.WILDCARD_HOSTS:
        found = addresses.machine_addresses() if machine is None else machine
        v4 = tuple(a for a in found if ipaddress.ip_address(a).version == 4)
        if not v4:
            return Plan(off="this machine has no IPv4 network address to announce on")
        return Plan(v4, announce)
    version = IPVersion.V6Only if ipaddress.ip_address(host).version == 6 else IPVersion.V4Only
    return Plan((host,), announce, version)


@dataclass
class Status:
    """What ``GET /api/discovery`` and the Peers page show."""

    state: str = "off"  # off, on, browsing (dial-out only: not announcing)
    reason: str | None = None
    interfaces: list[str] = field(default_factory=list)
    heard: int = 0


class Discovery:
    def __init__(self, runtime: Runtime, network_key: bytes, peer_id: bytes, port: int, where: Plan) -> None:
        self.runtime = runtime
        self.peer_id = peer_id
        self.port = port
        self.where = where
        self.key = lanhint.discovery_key(network_key)
        self.finder = lanhint.Finder(self.key, peer_id)
        self.status = Status(reason=where.off)
        self.name = f"meshpad-{peer_id.hex()[:16]}.{lanhint.SERVICE_TYPE}"
        self._zc: AsyncZeroconf | None = None
        self._browser: AsyncServiceBrowser | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._resolving: set[str] = set()
        self._waiting: OrderedDict[str, str] = OrderedDict()  # name -> service type, to resolve next
        self._logged: dict[str, float] = {}
        self._info: AsyncServiceInfo | None = None
        self._announcing: asyncio.Task[None] | None = None
        self._others: OrderedDict[str, None] = OrderedDict()  # names of other peers' announcements heard

    # -- life cycle --------------------------------------------------------

    async def start(self) -> None:
        """Open the mDNS sockets, start browsing and announcing. Returns at
        once (announcing probes for a second or so in the background)."""
        if self.where.off is not None:
            log.debug("finding peers on the local network is off: %s", self.where.off)  # said at start
            return
        try:
            self._zc = AsyncZeroconf(interfaces=list(self.where.interfaces), ip_version=self.where.ip_version)
            self._browser = AsyncServiceBrowser(self._zc.zeroconf, lanhint.SERVICE_TYPE, handlers=[self._on_change])
        except (OSError, ValueError, ZeroconfError) as exc:
            await self._close()
            self.status = Status(reason=f"mDNS unavailable: {exc}")
            log.warning("cannot find peers on the local network: %s", exc)
            return
        self.status = Status("on" if self.where.announce else "browsing", None, list(self.where.interfaces))
        if self.where.announce:
            self._announcing = self._spawn(self._announce())
        log.debug(
            "finding peers on the local network (%s) on %s",
            "announcing this peer" if self.where.announce else "not announcing: --advertise none",
            ", ".join(self.where.interfaces),
        )

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._close()

    async def _close(self) -> None:
        zc, self._zc = self._zc, None
        browser, self._browser = self._browser, None
        if browser is not None:
            await browser.async_cancel()
        if zc is not None:
            await zc.async_close()  # says goodbye for the announced service

    def _spawn(self, coro: Any) -> asyncio.Task[None]:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._done)
        return task

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("LAN discovery task failed", exc_info=task.exception())
            if task is self._announcing and self.status.state == "on":  # this peer is no longer announced
                self.status.state = "browsing"
                self.status.reason = f"announcing failed: {task.exception()}"

    # -- announcing ----------------------------------------------------------

    def service_info(self) -> AsyncServiceInfo:
        """This peer's announcement, with a fresh nonce."""
        properties = lanhint.announcement(self.key, self.peer_id, self.port, secrets.token_bytes(lanhint.NONCE_BYTES))
        return AsyncServiceInfo(
            lanhint.SERVICE_TYPE,
            self.name,
            port=self.port,
            properties=properties,
            server=f"meshpad-{self.peer_id.hex()[:16]}.local.",
            parsed_addresses=list(self.where.interfaces),
        )

    async def _announce(self) -> None:
        assert self._zc is not None
        self._info = self.service_info()
        await self._zc.async_register_service(self._info, allow_name_change=True)
        while True:
            await asyncio.sleep(ANNOUNCE_EVERY)
            fresh = self.service_info()
            fresh = AsyncServiceInfo(
                fresh.type, self._info.name, port=fresh.port, properties=fresh.properties,
                server=fresh.server, parsed_addresses=fresh.parsed_addresses(),
            )  # fmt: skip
            self._info = fresh
            await self._zc.async_update_service(fresh)

    # -- listening -------------------------------------------------------------

    def _on_change(self, zeroconf: Zeroconf, service_type: str, name: str, state_change: ServiceStateChange) -> None:
        """The browser's callback, on the loop: resolve what was added or
        changed, RESOLVING at a time; the others wait their turn (at most
        WAITING; beyond that they are dropped until announced again)."""
        if state_change is ServiceStateChange.Removed or name in self._resolving or self._zc is None:
            return
        if len(self._resolving) >= RESOLVING:
            if name not in self._waiting and len(self._waiting) < WAITING:
                self._waiting[name] = service_type
            return
        self._resolving.add(name)
        self._spawn(self._resolve(service_type, name))

    def _next(self) -> None:
        while self._waiting and len(self._resolving) < RESOLVING and self._zc is not None:
            name, service_type = self._waiting.popitem(last=False)
            if name not in self._resolving:
                self._resolving.add(name)
                self._spawn(self._resolve(service_type, name))

    async def _resolve(self, service_type: str, name: str) -> None:
        try:
            if self._zc is None:
                return
            try:
                info = AsyncServiceInfo(service_type, name)
                if not await info.async_request(self._zc.zeroconf, RESOLVE_TIMEOUT_MS):
                    return
            except (ZeroconfError, ValueError) as exc:  # a name or record zeroconf cannot take
                self.finder.ignored[lanhint.MALFORMED] = self.finder.ignored.get(lanhint.MALFORMED, 0) + 1
                log.debug("cannot resolve the LAN announcement %r: %s", name, exc)
                return
            self.heard(info)
        finally:
            self._resolving.discard(name)
            self._next()

    def heard(self, info: AsyncServiceInfo) -> None:
        """Hand one resolved announcement to the Finder, and what it finds to the runtime."""
        self.status.heard += 1
        connected = {link.peer_id for link in self.runtime.gossip.table.ready() if link.peer_id is not None}
        port = info.port or 0
        decision = self.finder.heard(
            info.properties, len(info.text), port, info.parsed_addresses(), connected, self.runtime.now()
        )
        if decision != lanhint.OWN:
            self._others[info.name] = None
            self._others.move_to_end(info.name)
            while len(self._others) > lanhint.MAX_TRACKED:
                self._others.popitem(last=False)
        if isinstance(decision, lanhint.Found):
            log.info("found peer %s on the local network at %s", decision.peer_id.hex()[:12], decision.address)
            self.runtime.found_on_lan(decision.peer_id, decision.address)
            return
        if decision in (lanhint.CONNECTED, lanhint.REPLAYED, lanhint.RECENT) and self.finder.last is not None:
            self.runtime.found_on_lan(self.finder.last.peer_id, None)  # a member on the LAN: marked, not dialled
        now = self.runtime.now()
        if decision in NOTEWORTHY and now - self._logged.get(decision, -LOG_EVERY) >= LOG_EVERY:
            self._logged[decision] = now
            where = ", ".join(info.parsed_addresses()[: lanhint.MAX_ADDRESSES]) or "no address"
            log.info("ignored a LAN announcement from %s: %s", where, decision)

    def snapshot(self) -> dict[str, Any]:
        return {
            "peer_id": self.peer_id.hex(),
            "state": self.status.state,
            "reason": self.status.reason,
            "interfaces": self.status.interfaces,
            "announcing": self.status.state == "on",
            "heard": self.status.heard,
            "others_heard": len(self._others),
            "dialled": self.finder.found,
            "ignored": dict(self.finder.ignored),
        }


DISCOVERY = web.AppKey("discovery", Discovery)
