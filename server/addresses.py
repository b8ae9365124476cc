"""Addresses people type and invites they pass on, checked in one place for
the command line, the environment, the API and the Peers page.

* A peer address is ``HOST:PORT``: an IPv4 address, a bracketed IPv6 address
  or a host name, and a port from 1 to 65535.
* An invite is ``meshpad://HOST:PORT#KEY``: where to dial, and the network key.
* :func:`invite_for` answers "what must someone on another machine dial to
  reach this peer?" from how the peer listens, and says plainly when the
  answer is "nobody can".
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field

from crdt.secure import network_key_from_text

INVITE_PREFIX = "meshpad://"
ADDRESS_RULE = "a peer address is HOST:PORT, for example 192.0.2.7:7400 or [2001:db8::7]:7400"
INVITE_RULE = "an invite looks like meshpad://HOST:PORT#KEY (as `meshpad invite` prints it)"
_HOSTNAME = re.compile(r"(?=.{1,253}\.?$)(?!-)[A-Za-z0-9-]{1,63}(?<!-)(\.(?!-)[A-Za-z0-9-]{1,63}(?<!-))*\.?")
WILDCARD_HOSTS = {"0.0.0.0", "::", ""}


def parse_port(text: object) -> int:
    """A TCP port as typed; raises ValueError with the rule."""
    raw = str(text).strip()
    if not raw.isdigit() or not 0 < int(raw) < 65536:
        raise ValueError(f"{raw!r} is not a port: a whole number from 1 to 65535")
    return int(raw)


def parse_listen_port(text: object) -> int:
    """A port to listen on: 1 to 65535, or 0 for any free one."""
    if str(text).strip() == "0":
        return 0
    try:
        return parse_port(text)
    except ValueError:
        rule = "a whole number from 1 to 65535 (0: any free port)"
        raise ValueError(f"{str(text).strip()!r} is not a port: {rule}") from None


def parse_address(raw: object) -> str:
    """A peer address ``HOST:PORT`` as typed by a person (``http://``,
    ``https://``, ``ws://``, ``wss://`` and a trailing ``/`` are forgiven: the
    dialer finds out whether the peer serves TLS). Raises ValueError with the rule."""
    if not isinstance(raw, str) or len(raw) > 300:
        raise ValueError(ADDRESS_RULE)
    address = raw.strip()
    for prefix in ("http://", "https://", "ws://", "wss://"):
        if address.startswith(prefix):
            address = address[len(prefix) :].rstrip("/")
    host, sep, port = address.rpartition(":")
    if not sep or not host:
        raise ValueError(f"{raw!r}: {ADDRESS_RULE}")
    try:
        parse_port(port)
        _check_host(host)
    except ValueError as exc:
        raise ValueError(f"{raw!r}: {ADDRESS_RULE}") from exc
    return address


def _check_host(host: str) -> None:
    if host.startswith("[") and host.endswith("]"):
        if not isinstance(ipaddress.ip_address(host[1:-1]), ipaddress.IPv6Address):
            raise ValueError("not an IPv6 address")
        return
    try:
        if isinstance(ipaddress.ip_address(host), ipaddress.IPv6Address):
            raise ValueError("an IPv6 address goes in brackets")
        return
    except ValueError:
        if ":" in host or _HOSTNAME.fullmatch(host) is None or host.replace(".", "").isdigit():
            raise ValueError("not a host name") from None


def host_of(address: str) -> str:
    """The host of ``HOST:PORT``, without IPv6 brackets."""
    return address.rpartition(":")[0].strip("[]")


def is_loopback_host(host: str) -> bool:
    if host.lower().rstrip(".") in ("localhost", "ip6-localhost"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]").split("%")[0]).is_loopback
    except ValueError:
        return False


def parse_invite(text: str) -> tuple[str, str]:
    """``meshpad://HOST:PORT#KEY`` -> (address, network key). Raises ValueError."""
    text = text.strip()
    if not text.startswith(INVITE_PREFIX) or "#" not in text:
        raise ValueError(INVITE_RULE)
    address, key = text[len(INVITE_PREFIX) :].split("#", 1)
    try:
        address = parse_address(address.rstrip("/"))
        network_key_from_text(key)
    except ValueError as exc:
        raise ValueError(f"{INVITE_RULE}: {exc}") from exc
    return address, key.strip()


def parse_join(text: str) -> tuple[str, str | None]:
    """What ``--join`` and the Peers page's form take: an invite, or a
    ``HOST:PORT`` of a peer that shares this peer's key. Returns (address,
    the invite's key or None). Raises ValueError with both rules."""
    if text.strip().startswith(INVITE_PREFIX):
        where = text.strip()[len(INVITE_PREFIX) :].split("#", 1)[0].rstrip("/")
        if "/" in where:  # a space's invite (server.spaces): the whole text travels on
            from server.spaces import parse_space_invite

            found = parse_space_invite(text)
            if found is None:
                raise ValueError(f"{INVITE_RULE}, or meshpad://HOST:PORT/SPACE#KEY.TOKEN for a space")
            return found.address, text.strip()
        return parse_invite(text)
    try:
        return parse_address(text), None
    except ValueError:
        raise ValueError(f"{text!r} is neither an invite nor a peer address: {INVITE_RULE}; or {ADDRESS_RULE}") from (
            None
        )


def make_invite(address: str, key: str) -> str:
    return f"{INVITE_PREFIX}{address}#{key}"


def bracket(host: str) -> str:
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


# -- which address others can dial ------------------------------------------------

# Interfaces of containers and virtual machines on this host: others cannot
# reach this peer through them.
_VIRTUAL = ("docker", "br-", "veth", "virbr", "vmnet", "vboxnet", "lxc", "lxd", "cni", "flannel", "podman")


def machine_addresses() -> list[str]:
    """This machine's addresses that other machines may reach: not loopback,
    not link-local, not a container bridge; private IPv4 first."""
    import ifaddr  # here: only the invite needs it

    found: list[tuple[int, str]] = []
    for adapter in ifaddr.get_adapters():
        name = adapter.nice_name or adapter.name
        if any(str(name).startswith(prefix) for prefix in _VIRTUAL):
            continue
        for ip in adapter.ips:
            raw = ip.ip[0] if isinstance(ip.ip, tuple) else ip.ip
            try:
                addr = ipaddress.ip_address(raw)
            except ValueError:
                continue
            if addr.is_loopback or addr.is_link_local or addr.is_multicast or addr.is_unspecified:
                continue
            rank = (0 if addr.is_private else 1) if addr.version == 4 else (2 if addr.is_global else 3)
            found.append((rank, str(addr)))
    return [a for _, a in sorted(set(found), key=lambda r: (r[0], ipaddress.ip_address(r[1]).packed))]


@dataclass(frozen=True, slots=True)
class Reach:
    """Where others should dial this peer, and whether anyone can."""

    address: str | None  # None: nobody can dial this peer
    reachable: bool  # False: only this machine can (loopback), or nobody
    warning: str | None = None  # what to tell a person, when not plainly fine
    others: tuple[str, ...] = field(default=())  # further addresses of this machine


def reach(host: str, port: int, advertise: str | None, addresses: list[str] | None = None) -> Reach:
    """How a peer bound to *host*:*port*, advertising *advertise* (None:
    not set; "none": dial-out only), can be reached from other machines.
    *addresses* are this machine's addresses (found when not given)."""
    if advertise is not None:
        if advertise.lower() == "none":
            return Reach(None, False, "this peer only dials out (--advertise none): nobody can join through it")
        loop = is_loopback_host(host_of(advertise))
        return Reach(advertise, not loop, _LOOPBACK_ONLY.format(address=advertise) if loop else None)
    if host in WILDCARD_HOSTS:
        found = machine_addresses() if addresses is None else addresses
        if not found:
            return Reach(
                f"127.0.0.1:{port}",
                False,
                "this machine has no network address other machines could dial (no interface but loopback is up)",
            )
        first, *rest = (f"{bracket(a)}:{port}" for a in found)
        return Reach(first, True, None, tuple(rest))
    address = f"{bracket(host)}:{port}"
    if is_loopback_host(host):
        return Reach(address, False, _LOOPBACK_ONLY.format(address=address))
    return Reach(address, True)


_LOOPBACK_ONLY = (
    "this peer listens on {address}, which only this machine can reach: nobody else can join. "
    "Restart it with `meshpad serve --host 0.0.0.0` (and let its port through the firewall)"
)
