"""The ``meshpad`` command.

Everything a person types (flags, environment variables, files they name) is
checked, and the port is bound, before anything is created on disk: a
mistake gets one line on standard error and exit code 2, and leaves the data
dir as it was. Errors found later (a store that cannot be read) exit with 1.
"""

from __future__ import annotations

import argparse
import errno
import gc
import logging
import os
import socket
import ssl
import sys
import urllib.parse
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any, NoReturn

from aiohttp import web

from crdt.errors import StoreError
from server import addresses
from server.settings import OPTION, OPTIONS, SettingError, Settings

EXIT_USAGE = 2
EXIT_FAILED = 1


def _fail(message: str, code: int = EXIT_USAGE) -> NoReturn:
    print(f"meshpad: {message}", file=sys.stderr, flush=True)
    raise SystemExit(code)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        _fail(f"{message} (see `{self.prog} --help`)")


def _typed(parse: Callable[[str], Any]) -> Callable[[str], Any]:
    """An argparse type from one of the settings' checks, keeping its message."""

    def convert(text: str) -> Any:
        try:
            return parse(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    convert.__name__ = parse.__name__
    return convert


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="meshpad",
        description="Meshpad: a local-first, peer-to-peer collaborative document editor.",
        epilog=EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"meshpad {_version()}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    serve = commands.add_parser(
        "serve",
        help="run this machine's peer: the editor, the API and the store",
        description="Run the peer. It is ready when GET /healthz answers 200. Each option defaults to its "
        "environment variable, then to the built-in default. The first peer of a network needs "
        "--host 0.0.0.0 for other machines to reach it.",
    )
    for opt in OPTIONS:
        kwargs: dict[str, Any] = {"help": f"{opt.help}; env {opt.env}", "default": None, "type": _typed(opt.parse)}
        if opt.many:
            kwargs["action"] = "append"
        serve.add_argument(opt.flag, dest=opt.name, **kwargs)
    serve.add_argument(
        "--no-discovery", dest="discovery", action="store_const", const=False,
        help="do not find peers on the local network, nor announce this one (same as --discovery off)",
    )  # fmt: skip
    serve.add_argument(
        "--log-level", default="info", choices=["debug", "info", "warning", "error"], help="logging detail"
    )
    invite = commands.add_parser(
        "invite",
        help="print an invite to this peer's network (its address and the network key)",
        description="Print meshpad://HOST:PORT#KEY for the peer running on the data dir: the address other "
        "machines can dial, and the network key. Whoever has it can join the network and read and write every "
        "document: send it only to people you trust, over a private channel.",
    )
    invite.add_argument(
        "--data-dir", dest="data_dir", type=_typed(OPTION["data_dir"].parse), default=None,
        help=f"the peer's data dir; env {OPTION['data_dir'].env}",
    )  # fmt: skip
    invite.add_argument(
        "--space", default=None,
        help="invite to this space only (its name or id): a one-time invite, valid 7 days; the person who joins "
        "with it gets that space's documents and nothing of the others",
    )  # fmt: skip
    invite.add_argument(
        "--read-only", dest="read_only", action="store_true",
        help="with --space: the person who joins reads the documents and sees edits live, but cannot change them",
    )  # fmt: skip
    invite.add_argument(
        "--address", type=_typed(addresses.parse_address), default=None,
        help="HOST:PORT others should dial (default: what the running peer advertises, else this machine's "
        "addresses)",
    )  # fmt: skip
    _client_commands(commands)
    return parser


EXIT_CODES = """exit codes:
  0  done
  1  failed (the peer refused or failed, a file could not be read or written, some files were not imported)
  2  usage: a mistake in the command line or a setting (one line on standard error says which)
  3  no peer is running on the data dir (docs, status, export, import)

docs, status, export and import talk to the peer running on the data dir, with its token.
--json prints one JSON document on standard output; messages for people go to standard error."""


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("meshpad")
    except PackageNotFoundError:
        return "(not installed)"


def _client_commands(commands: Any) -> None:
    """docs, status, export, import: the commands that ask the running peer."""

    def add(name: str, help: str, description: str) -> argparse.ArgumentParser:
        sub: argparse.ArgumentParser = commands.add_parser(
            name, help=help, description=f"{description}\n\n{EXIT_CODES}",
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )  # fmt: skip
        sub.add_argument(
            "--data-dir", dest="data_dir", type=_typed(OPTION["data_dir"].parse), default=None,
            help=f"the running peer's data dir; env {OPTION['data_dir'].env}",
        )  # fmt: skip
        sub.add_argument("--json", action="store_true", help="print JSON on standard output, for scripts")
        return sub

    add("docs", "list the documents of the running peer", "List every document: name, length, last change.")
    add(
        "status", "show the running peer's health, peers, documents and sync state",
        "Show the running peer's health (GET /healthz), its peers with their state and how many documents were "
        "in sync with each at the last check (GET /api/peers), and its documents. Exit code 1 when the store "
        "has failed.",
    )  # fmt: skip
    export = add(
        "export", "write every document as DIR/{name}.md (a backup readable without Meshpad)",
        "Write every document to DIR as {name}.md, UTF-8, dated as its last change (DIR is created if needed). "
        "When one of those files exists already, nothing is written unless --force is given; other files in "
        "DIR are left alone. A progress bar shows on standard error when it is a terminal.",
    )  # fmt: skip
    export.add_argument("directory", metavar="DIR", type=Path, help="where to write the .md files")
    export.add_argument("--force", action="store_true", help="overwrite {name}.md files that exist in DIR")
    imp = add(
        "import", "make a new document of each file (and of the .md, .markdown, .txt files of each DIR)",
        "Import each FILE, and each .md, .markdown or .txt file directly inside each DIR, as a new document. "
        "The name is the file's name without its extension when that is a valid document name (so an export "
        "imports back as it was), else one made from it as the documents page does (`My Notes (v2).md` becomes "
        "My-Notes-v2). A name that exists, or that an earlier file takes, is skipped with a message: nothing "
        "is overwritten. A file that cannot be imported (not UTF-8, over 8 MiB) is reported and the rest go on; "
        "the exit code is then 1. A progress bar shows on standard error when it is a terminal.",
    )  # fmt: skip
    imp.add_argument("paths", metavar="DIR|FILE", type=Path, nargs="+", help="files, or directories of files")


def main(argv: list[str] | None = None) -> int:
    try:
        args = _parser().parse_args(argv)
        if args.command == "invite":
            return _invite(args)
        if args.command in _CLIENTS:
            return _client(args)
        return _serve(args)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else EXIT_FAILED


# -- serve ---------------------------------------------------------------------


def _serve(args: argparse.Namespace) -> int:
    try:
        settings = Settings.resolve({opt.name: getattr(args, opt.name) for opt in OPTIONS})
        tls = settings.tls_context()
    except SettingError as exc:
        _fail(str(exc))
    if settings.tls_cert is not None:
        _warn_of_expiry(settings.tls_cert)
    if settings.data_dir.exists() and not settings.data_dir.is_dir():
        _fail(f"--data-dir {settings.data_dir}: not a directory")
    sock = _listen(settings.host, settings.port)
    settings = replace(settings, port=sock.getsockname()[1])

    from server import identity

    lock = identity.DataDirLock(settings.data_dir)
    try:
        lock.acquire()
    except (StoreError, OSError) as exc:
        sock.close()
        _fail(str(exc))
    logging.basicConfig(
        level=getattr(logging, args.log_level.upper()),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if args.network_key is not None or any(key for _, key in args.join or ()):
        print(
            "meshpad: warning: the network key given on the command line is visible to other users of this "
            "machine (ps); --network-key-file and --join-file keep it out of sight",
            file=sys.stderr,
        )
    try:
        return _run(settings, sock, lock, tls)
    finally:
        lock.release()


EXPIRY_WARNING_DAYS = 14


def _warn_of_expiry(cert: Path) -> None:
    """A certificate past its date (or close to it) still starts the peer,
    but browsers refuse it: say so now rather than in every browser."""
    from datetime import UTC, datetime

    from cryptography import x509

    until = x509.load_pem_x509_certificate(cert.read_bytes()).not_valid_after_utc
    days = (until - datetime.now(UTC)).days
    if days < EXPIRY_WARNING_DAYS:
        when = until.strftime("%Y-%m-%d %H:%M UTC")
        state = f"expired on {when}" if days < 0 else f"expires on {when}"
        print(f"meshpad: warning: the certificate {cert} {state}: browsers refuse an expired certificate; "
              "renew it and restart the peer", file=sys.stderr)  # fmt: skip


def _run(settings: Settings, sock: socket.socket, lock: Any, tls: ssl.SSLContext | None = None) -> int:
    from server.app import create_app

    try:
        app = create_app(settings)
    except (StoreError, ValueError) as exc:
        sock.close()
        _fail(str(exc), EXIT_FAILED)
    app.on_startup.append(_settle_heap)
    local = _local_url(settings)
    # Local commands pin the certificate the peer serves (it is often
    # self-signed, and names the machine, not 127.0.0.1).
    lock.announce({"pid": os.getpid(), "api": local, "tls_sha256": settings.certificate_fingerprint()})
    ready = _ready_message(app, settings, local)
    try:
        web.run_app(
            app, sock=sock, ssl_context=tls, print=lambda _: print(ready, flush=True), access_log=None
        )  # fmt: skip
    except (StoreError, ValueError) as exc:
        _fail(str(exc), EXIT_FAILED)
    return 0


def _listen(host: str, port: int) -> socket.socket:
    """Bind the peer's port now, so that a taken port is found before
    anything is created."""
    where = f"{addresses.bracket(host)}:{port}"
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        _fail(f"--host {host}: cannot resolve it ({exc.strerror})")
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6 and host == "::":
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        sock.bind(address)
        sock.listen(128)
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            _fail(f"cannot listen on {where}: the port is in use (another Meshpad peer?); choose another with --port")
        if exc.errno == errno.EADDRNOTAVAIL:
            _fail(f"cannot listen on {where}: {host} is not an address of this machine (--host)")
        if exc.errno == errno.EACCES:
            _fail(f"cannot listen on {where}: permission denied (ports below 1024 need root); choose --port 7400")
        _fail(f"cannot listen on {where}: {exc.strerror}")
    return sock


def _local_url(settings: Settings) -> str:
    """Where this machine reaches the peer's API."""
    if settings.host in addresses.WILDCARD_HOSTS:
        host = "[::1]" if settings.host == "::" else "127.0.0.1"
    else:
        host = addresses.bracket(settings.host)
    return f"{_scheme(settings)}://{host}:{settings.port}"


def _scheme(settings: Settings) -> str:
    return "https" if settings.tls_cert is not None else "http"


def _ready_message(app: web.Application, settings: Settings, local: str) -> str:
    from server.discovery import DISCOVERY
    from server.keys import BROWSER_TOKEN

    lines = [f"Meshpad peer: open {local}/ (data in {settings.data_dir})"]
    reach = addresses.reach(settings.host, settings.port, settings.advertise)
    if addresses.is_loopback_host(settings.host):
        lines.append(
            "Only this machine can reach this peer. For other machines to join, restart it with --host 0.0.0.0."
        )
    else:
        shown = reach.address or f"{addresses.bracket(settings.host)}:{settings.port}"
        lines.append(
            f"Other machines can reach this peer at {shown}: `meshpad invite` prints what they join with. "
            f"A browser on another machine opens {_scheme(settings)}://{shown}/?token={app[BROWSER_TOKEN]}"
            + (" (HTTPS)." if settings.tls_cert is not None else ".")
        )
        if settings.tls_cert is None:
            lines.append(
                "WARNING: plain HTTP on a network address: the browser token and the documents' text travel "
                "UNENCRYPTED between a browser on another machine and this peer, and anyone on the network path "
                "can read them and take over the session. Serve HTTPS with --tls-cert FILE --tls-key FILE, or "
                "keep --host 127.0.0.1 and reach the editor through an SSH tunnel "
                "(ssh -L 7400:127.0.0.1:7400 this-host). Links between peers are encrypted either way."
            )
    lan = app[DISCOVERY].where
    if not addresses.is_loopback_host(settings.host):
        if lan.off is None:
            lines.append(
                f"Peers of this network on the local network find this one through mDNS ({', '.join(lan.interfaces)}"
                f"{'; looking only, not announcing' if not lan.announce else ''}); --no-discovery turns it off."
            )
        else:
            lines.append(f"Finding peers on the local network: off ({lan.off}).")
    if reach.warning and not addresses.is_loopback_host(settings.host):
        lines.append(f"Note: {reach.warning}.")
    if settings.metrics_address is not None:
        host, port = settings.metrics_address
        lines.append(
            f"Metrics: http://{addresses.bracket(host)}:{port}/metrics, without the browser token"
            + ("." if addresses.is_loopback_host(host) else ": whoever can reach that address can read them.")
        )
    return "\n".join(lines)


async def _settle_heap(app: web.Application) -> None:
    """What starting made (modules, the loaded documents) lives as long as the
    process: move it out of the collector's reach, so that a full collection
    scans only what came later instead of pausing the peer for tens of ms."""
    gc.collect()
    gc.freeze()


# -- docs, status, export, import ----------------------------------------------

_CLIENTS = ("docs", "status", "export", "import")


def _client(args: argparse.Namespace) -> int:
    from server import commands

    try:
        data_dir: Path = Settings.resolve({"data_dir": args.data_dir}, _only(OPTION["data_dir"].env)).data_dir
    except SettingError as exc:
        _fail(str(exc))
    run = {"docs": commands.docs, "status": commands.status, "export": commands.export, "import": commands.import_}
    return run[args.command](args, data_dir)


# -- invite --------------------------------------------------------------------


def _invite(args: argparse.Namespace) -> int:
    from server import identity

    try:
        data_dir: Path = Settings.resolve({"data_dir": args.data_dir}, _only(OPTION["data_dir"].env)).data_dir
    except SettingError as exc:
        _fail(str(exc))
    if not data_dir.is_dir():
        _fail(f"no Meshpad peer data in {data_dir}: start a peer there first (`meshpad serve --data-dir {data_dir}`)")
    running = identity.running_peer(data_dir)
    if args.read_only and args.space is None:
        _fail("--read-only needs --space NAME: read-only members are per space")
    if args.space is not None:
        if running is None:
            _fail(f"no peer is running with the data dir {data_dir}: start it first, then invite", 3)
        body: dict[str, Any] = {"role": "reader" if args.read_only else "writer"}
        if args.address is not None:
            body["address"] = args.address
        space = urllib.parse.quote(args.space, safe="")
        answer = _ask(running, data_dir, f"/api/spaces/{space}/invites", body)
        _print_invite(answer["invite"], answer["address"])
        return 0
    if running is None:
        if args.address is None:
            _fail(
                f"no peer is running with the data dir {data_dir}: start it first (`meshpad serve --host 0.0.0.0` "
                "lets other machines reach it), or give the address others should dial with --address HOST:PORT"
            )
        key = os.environ.get("MESHPAD_NETWORK_KEY", "").strip() or identity.stored_network_key(data_dir)
        if key is None:
            _fail(f"no network key in {data_dir}: start the peer once (`meshpad serve`) to create its network")
        _print_invite(addresses.make_invite(args.address, key), args.address)
        return 0
    if args.address is not None:
        answer = _ask(running, data_dir, "/api/invite?" + urllib.parse.urlencode({"address": args.address}))
        _print_invite(answer["invite"], args.address)
        return 0
    answer = _ask(running, data_dir, "/api/invite")
    if answer["invite"] is None:
        _fail(answer["warning"] or "nobody can join through this peer", EXIT_FAILED)
    print(answer["invite"], flush=True)
    if answer["warning"]:
        print(f"meshpad: {answer['warning']}", file=sys.stderr)
    if answer["other_addresses"]:
        print(
            f"meshpad: this machine has other addresses too ({', '.join(answer['other_addresses'])}); "
            "for a network behind one of them use `meshpad invite --address HOST:PORT`",
            file=sys.stderr,
        )
    return 0


def _only(name: str) -> dict[str, str]:
    return {name: os.environ[name]} if name in os.environ else {}


def _print_invite(invite: str, address: str) -> None:
    print(invite, flush=True)
    reach = addresses.reach(addresses.host_of(address), 0, address)
    if reach.warning:
        print(f"meshpad: {reach.warning}", file=sys.stderr)


def _ask(running: dict[str, Any], data_dir: Path, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
    """GET *path* (POST *body* to it) from the peer running on *data_dir*, with its token."""
    from server.commands import ApiError, RunningPeer

    peer = RunningPeer.find(data_dir)
    try:
        answer = peer.request("GET", path) if body is None else peer.request("POST", path, body)
    except ApiError as exc:
        _fail(f"the peer running on {data_dir} answered {exc.status}: {exc}", EXIT_FAILED)
    finally:
        peer.close()
    if not isinstance(answer, dict):
        _fail(f"the peer running on {data_dir} gave an unexpected answer", EXIT_FAILED)
    return answer


if __name__ == "__main__":
    sys.exit(main())
