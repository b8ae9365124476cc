"""Settings of a peer. One table drives the command line, the environment
variables and the README: each setting has a flag, a variable, a default,
and the function that checks what a person typed.

Every value is checked before the peer touches the disk or the network, and
a bad one is a :class:`SettingError` that names where it came from (the
flag or the variable) and the rule it broke.
"""

from __future__ import annotations

import hashlib
import os
import ssl
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from crdt.secure import network_key_from_text
from server import addresses


def default_data_dir() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "meshpad"


class SettingError(ValueError):
    """A setting that cannot be used; the message names it and says why."""


def _host(text: str) -> str:
    host = text.strip()
    if host in addresses.WILDCARD_HOSTS:
        return host or "0.0.0.0"
    try:
        addresses.parse_address(f"{addresses.bracket(host)}:1")
    except ValueError:
        raise ValueError(f"{text!r} is not an address to listen on (for example 127.0.0.1, 0.0.0.0 or ::)") from None
    return host.strip("[]")


def _advertise(text: str) -> str:
    if text.strip().lower() == "none":
        return "none"
    address = addresses.parse_address(text)
    if addresses.host_of(address) in addresses.WILDCARD_HOSTS:
        raise ValueError(f"{text!r}: other peers cannot dial 0.0.0.0 or ::; give this machine's address")
    return address


def _network_key(text: str) -> str:
    network_key_from_text(text)
    return text.strip()


def _data_dir(text: str) -> Path:
    if not text.strip():
        raise ValueError("an empty path")
    return Path(text).expanduser()


def _file(text: str) -> Path:
    if not text.strip():
        raise ValueError("an empty path")
    return Path(text).expanduser()


def _member_name(text: str) -> str:
    name = text.strip()
    if not name or len(name.encode()) > 64 or any(ord(c) < 32 for c in name):
        raise ValueError("a name has 1 to 64 bytes of UTF-8 and no control characters")
    return name


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"{text!r} is not a number of seconds") from None
    if not 0.1 <= value <= 86400:
        raise ValueError(f"{text!r}: give between 0.1 and 86400 seconds")
    return value


@dataclass(frozen=True, slots=True)
class Option:
    name: str
    flag: str
    env: str
    help: str
    parse: Callable[[str], Any]
    many: bool = False  # repeatable flag; comma-separated variable


OPTIONS: tuple[Option, ...] = (
    Option(
        "host",
        "--host",
        "MESHPAD_HOST",
        "address to listen on (default 127.0.0.1: only this machine can connect; 0.0.0.0 to let other machines in)",
        _host,
    ),
    Option(
        "port",
        "--port",
        "MESHPAD_PORT",
        "TCP port for the editor, the API and the WebSockets (default 7400; 0: any free port, printed at start)",
        addresses.parse_listen_port,
    ),
    Option(
        "data_dir",
        "--data-dir",
        "MESHPAD_DATA_DIR",
        "directory of the store and the keys (default $XDG_DATA_HOME/meshpad)",
        _data_dir,
    ),
    Option(
        "join",
        "--join",
        "MESHPAD_JOIN",
        "an invite (meshpad://HOST:PORT#KEY) or the HOST:PORT of a peer of "
        "this network; repeat for several (env: comma-separated). Visible to other users in `ps`: "
        "prefer --join-file",
        addresses.parse_join,
        many=True,
    ),
    Option(
        "name",
        "--name",
        "MESHPAD_NAME",
        "the name this peer goes by in the member lists of its spaces (default: your login name)",
        _member_name,
    ),
    Option(
        "join_file",
        "--join-file",
        "MESHPAD_JOIN_FILE",
        "a file holding invites or HOST:PORTs, one per line "
        "('-': read them from standard input); keeps the network key out of `ps`",
        _file,
    ),
    Option(
        "network_key",
        "--network-key",
        "MESHPAD_NETWORK_KEY",
        "the network's shared key (default: the one in "
        "the data dir, created on first start). Visible to other users in `ps`: prefer --network-key-file",
        _network_key,
    ),
    Option(
        "network_key_file",
        "--network-key-file",
        "MESHPAD_NETWORK_KEY_FILE",
        "a file holding the network key ('-': read it from standard input)",
        _file,
    ),
    Option(
        "advertise",
        "--advertise",
        "MESHPAD_ADVERTISE",
        "HOST:PORT other peers should dial to reach this one "
        "(default: --host:--port, or this machine's addresses when listening on 0.0.0.0); "
        "'none' for a peer that only dials out",
        _advertise,
    ),
)
OPTIONS += (
    Option(
        "session_gap",
        "--session-gap",
        "MESHPAD_SESSION_GAP",
        "seconds without an edit that end an editing session, which then becomes a version in the history (default 60)",
        _seconds,
    ),
)


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise ValueError(f"{text!r}: give a whole number") from None
    if not 1 <= value <= 10_000_000:
        raise ValueError(f"{text!r}: give between 1 and 10000000")
    return value


OPTIONS += (
    Option(
        "unload_after",
        "--unload-after",
        "MESHPAD_UNLOAD_AFTER",
        "seconds a document with no editor open and no traffic stays in memory (default 300); "
        "it is loaded again when needed",
        _seconds,
    ),
    Option(
        "max_loaded",
        "--max-loaded",
        "MESHPAD_MAX_LOADED",
        "documents held in memory at most, besides those in use (default 1000): the least recently used go first",
        _count,
    ),
)
OPTIONS += (
    Option(
        "tls_cert",
        "--tls-cert",
        "MESHPAD_TLS_CERT",
        "a PEM certificate (chain) to serve everything over HTTPS, with --tls-key (default: plain HTTP)",
        _file,
    ),
    Option(
        "tls_key",
        "--tls-key",
        "MESHPAD_TLS_KEY",
        "the PEM private key of --tls-cert (unencrypted)",
        _file,
    ),
)


def _switch(text: str) -> bool:
    value = text.strip().lower()
    if value in ("1", "on", "yes", "true"):
        return True
    if value in ("0", "off", "no", "false"):
        return False
    raise ValueError(f"{text!r}: give on or off (1 or 0)")


OPTIONS += (
    Option(
        "discovery",
        "--discovery",
        "MESHPAD_DISCOVERY",
        "find peers of this network on the local network and be found by them, through mDNS "
        "(on or off; default on when listening on a network address; a peer on 127.0.0.1 never uses it). "
        "--no-discovery turns it off",
        _switch,
    ),
)


def _metrics_address(text: str) -> tuple[str, int]:
    """``HOST:PORT`` to serve /metrics on (port 0: any free one)."""
    host, sep, port = text.strip().rpartition(":")
    if not sep:
        raise ValueError(f"{text!r}: give HOST:PORT, for example 127.0.0.1:9400")
    return _host(host), addresses.parse_listen_port(port)


OPTIONS += (
    Option(
        "metrics_address",
        "--metrics-address",
        "MESHPAD_METRICS_ADDRESS",
        "HOST:PORT where GET /metrics is served alone, without the browser token, for a monitoring system "
        "(default: only on the main port, protected like the API)",
        _metrics_address,
    ),
)
OPTION = {opt.name: opt for opt in OPTIONS}


@dataclass(frozen=True, slots=True)
class Settings:
    host: str = "127.0.0.1"
    port: int = 7400
    data_dir: Path = field(default_factory=default_data_dir)
    # Each entry is (address, the invite's network key or None).
    join: tuple[tuple[str, str | None], ...] = ()
    advertise: str | None = None
    network_key: str | None = None
    join_file: Path | None = None
    network_key_file: Path | None = None
    session_gap: float = 60.0
    unload_after: float | None = None  # None: crdt.config's default
    max_loaded: int | None = None
    discovery: bool = True  # LAN discovery (server.discovery); never on a loopback-only peer
    tls_cert: Path | None = None
    tls_key: Path | None = None
    metrics_address: tuple[str, int] | None = None  # (host, port): /metrics alone, unauthenticated
    name: str | None = None  # in the spaces' member lists (None: the login name)

    def listen_address(self) -> str:
        """What this peer tells others to dial ("" when it accepts no links)."""
        if self.advertise is not None:
            return "" if self.advertise.lower() == "none" else self.advertise
        return f"{addresses.bracket(self.host)}:{self.port}"

    @property
    def invited_key(self) -> str | None:
        """The network key of the invites given to join with, if any."""
        keys = {key for _, key in self.join if key is not None and not key.startswith(addresses.INVITE_PREFIX)}
        if len(keys) > 1:
            raise SettingError("--join: the invites are for different networks (their keys differ)")
        return next(iter(keys), None)

    @classmethod
    def resolve(cls, given: Mapping[str, Any], environ: Mapping[str, str] | None = None) -> Settings:
        """Settings from values given on the command line (already parsed;
        None where a flag was not given), then the environment, then the
        defaults. Files named by --join-file and --network-key-file are read
        here. Raises SettingError."""
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for opt in OPTIONS:
            value = given.get(opt.name)
            if value is None and env.get(opt.env, "").strip():
                raw = env[opt.env]
                items = [r for r in raw.split(",") if r.strip()] if opt.many else [raw]
                try:
                    parsed = [opt.parse(item) for item in items]
                except ValueError as exc:
                    raise SettingError(f"{opt.env}: {exc}") from None
                value = tuple(parsed) if opt.many else parsed[0]
            if value is not None:
                values[opt.name] = tuple(value) if opt.many else value
        settings = replace(cls(), **values)
        return settings._read_files()

    def _read_files(self) -> Settings:
        settings = self
        if self.network_key_file is not None:
            text = _read(self.network_key_file, "--network-key-file")
            try:
                settings = replace(settings, network_key=_network_key(text))
            except ValueError as exc:
                raise SettingError(f"--network-key-file {self.network_key_file}: {exc}") from None
        if self.join_file is not None:
            text = _read(self.join_file, "--join-file")
            try:
                more = tuple(addresses.parse_join(line) for line in text.splitlines() if line.strip())
            except ValueError as exc:
                raise SettingError(f"--join-file {self.join_file}: {exc}") from None
            settings = replace(settings, join=settings.join + more)
        settings.invited_key  # noqa: B018 - checks that the invites agree
        settings.tls_context()  # checks that the certificate and key load
        return settings

    def tls_context(self) -> ssl.SSLContext | None:
        """The server's TLS context from --tls-cert and --tls-key, or None
        for plain HTTP. Raises SettingError when only one is given, or when
        they cannot be read or do not match."""
        if (self.tls_cert is None) != (self.tls_key is None):
            given, missing = ("--tls-cert", "--tls-key") if self.tls_key is None else ("--tls-key", "--tls-cert")
            raise SettingError(f"{given} needs {missing} too (a certificate and its private key)")
        if self.tls_cert is None or self.tls_key is None:
            return None
        for flag, path in (("--tls-cert", self.tls_cert), ("--tls-key", self.tls_key)):
            try:
                if str(path) == "-":
                    raise OSError(0, "give a file, not '-'")
                with path.open("rb") as f:
                    f.read(1)
            except OSError as exc:
                raise SettingError(f"{flag}: cannot read {path}: {exc.strerror or exc}") from None
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        try:
            # A key protected by a passphrase is refused rather than prompted for.
            context.load_cert_chain(self.tls_cert, self.tls_key, password=_no_passphrase)
        except ssl.SSLError as exc:
            raise SettingError(_tls_problem(self.tls_cert, self.tls_key, exc)) from None
        return context

    def certificate_fingerprint(self) -> str | None:
        """SHA-256 of the certificate served (hex), which local commands pin."""
        if self.tls_cert is None:
            return None
        pem = self.tls_cert.read_text()
        start = pem.index("-----BEGIN CERTIFICATE-----")
        end = pem.index("-----END CERTIFICATE-----", start) + len("-----END CERTIFICATE-----")
        return hashlib.sha256(ssl.PEM_cert_to_DER_cert(pem[start:end])).hexdigest()

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        return cls.resolve({}, environ)


def _tls_problem(cert: Path, key: Path, exc: ssl.SSLError) -> str:
    """Why OpenSSL refused a certificate and key, as a person reads it."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    try:
        certificate = x509.load_pem_x509_certificate(cert.read_bytes())
    except ValueError:
        return f"--tls-cert {cert}: not a PEM certificate (-----BEGIN CERTIFICATE-----)"
    try:
        private = serialization.load_pem_private_key(key.read_bytes(), password=None)
    except (ValueError, TypeError):
        return f"--tls-key {key}: not an unencrypted PEM private key (-----BEGIN PRIVATE KEY-----)"
    public = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    if private.public_key().public_bytes(*public) != certificate.public_key().public_bytes(*public):
        return f"--tls-key {key} is not the private key of --tls-cert {cert} (they do not match)"
    return f"--tls-cert {cert} / --tls-key {key}: refused by OpenSSL ({exc.reason or exc})"


def _no_passphrase() -> bytes:
    raise SettingError("--tls-key: the key is protected by a passphrase; give an unencrypted key (mode 0600)")


def _read(path: Path, flag: str) -> str:
    try:
        if str(path) == "-":
            return sys.stdin.read()
        return path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise SettingError(f"{flag}: cannot read {path}: {getattr(exc, 'strerror', None) or exc}") from None
