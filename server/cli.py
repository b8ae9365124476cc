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
import json
import logging
import os
import socket
import sys
import urllib.parse
import urllib.request
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
    )
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
        "--address", type=_typed(addresses.parse_address), default=None,
        help="HOST:PORT others should dial (default: what the running peer advertises, else this machine's "
        "addresses)",
    )  # fmt: skip
    return parser


def main(argv: list[str] | None = None) -> int:
    try:
        args = _parser().parse_args(argv)
        if args.command == "invite":
            return _invite(args)
        return _serve(args)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else EXIT_FAILED


# -- serve ---------------------------------------------------------------------


def _serve(args: argparse.Namespace) -> int:
    try:
        settings = Settings.resolve({opt.name: getattr(args, opt.name) for opt in OPTIONS})
    except SettingError as exc:
        _fail(str(exc))
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
        return _run(settings, sock, lock)
    finally:
        lock.release()


def _run(settings: Settings, sock: socket.socket, lock: Any) -> int:
    from server.app import create_app

    try:
        app = create_app(settings)
    except (StoreError, ValueError) as exc:
        sock.close()
        _fail(str(exc), EXIT_FAILED)
    app.on_startup.append(_settle_heap)
    local = _local_url(settings)
    lock.announce({"pid": os.getpid(), "api": local})
    ready = _ready_message(app, settings, local)
    try:
        web.run_app(app, sock=sock, print=lambda _: print(ready, flush=True), access_log=None)
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
    return f"http://{host}:{settings.port}"


def _ready_message(app: web.Application, settings: Settings, local: str) -> str:
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
            f"A browser on another machine opens http://{shown}/?token={app[BROWSER_TOKEN]} "
            "(plain HTTP: the token and the text cross the network unencrypted; see docs/security.md)."
        )
    if reach.warning and not addresses.is_loopback_host(settings.host):
        lines.append(f"Note: {reach.warning}.")
    return "\n".join(lines)


async def _settle_heap(app: web.Application) -> None:
    """What starting made (modules, the loaded documents) lives as long as the
    process: move it out of the collector's reach, so that a full collection
    scans only what came later instead of pausing the peer for tens of ms."""
    gc.collect()
    gc.freeze()


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


def _ask(running: dict[str, Any], data_dir: Path, path: str) -> dict[str, Any]:
    """GET *path* from the peer running on *data_dir*, with its token."""
    from server.security import TOKEN_FILE

    try:
        token = (data_dir / TOKEN_FILE).read_text().strip()
    except OSError as exc:
        _fail(f"cannot read the peer's token in {data_dir}: {exc.strerror}", EXIT_FAILED)
    url = f"{running.get('api')}{path}"
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
    try:
        with urllib.request.urlopen(request, timeout=10) as resp:
            answer = json.loads(resp.read())
    except (OSError, ValueError) as exc:
        _fail(f"the peer running on {data_dir} does not answer at {url}: {exc}", EXIT_FAILED)
    if not isinstance(answer, dict):
        _fail(f"the peer running on {data_dir} gave an unexpected answer", EXIT_FAILED)
    return answer


if __name__ == "__main__":
    sys.exit(main())
