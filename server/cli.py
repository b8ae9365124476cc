"""The ``meshpad`` command."""

from __future__ import annotations

import argparse
import gc
import logging
import sys
from dataclasses import replace
from pathlib import Path

from aiohttp import web

from crdt.errors import StoreError
from server.settings import OPTIONS, Settings


def _parser(defaults: Settings) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="meshpad",
        description="Meshpad: a local-first, peer-to-peer collaborative document editor.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    serve = commands.add_parser(
        "serve",
        help="run this machine's peer: the editor, the API and the store",
        description="Run the peer. It is ready when GET /healthz answers 200. "
        "Each option defaults to its environment variable, then to the built-in default.",
    )
    for opt in OPTIONS:
        kwargs: dict[str, object] = {"help": f"{opt.help}; env {opt.env}", "default": getattr(defaults, opt.name)}
        if opt.name == "port":
            kwargs["type"] = int
        if opt.name == "data_dir":
            kwargs["type"] = Path
        if opt.name == "join":
            kwargs["action"] = "append"
            kwargs["default"] = None
        serve.add_argument(opt.flag, dest=opt.name, **kwargs)  # type: ignore[arg-type]
    serve.add_argument(
        "--log-level", default="info", choices=["debug", "info", "warning", "error"], help="logging detail"
    )
    invite = commands.add_parser(
        "invite",
        help="print an invite to this peer's network (its address and the network key)",
        description="Print meshpad://HOST:PORT#KEY. Whoever has it can join the network and read and "
        "write every document: send it only to people you trust, over a private channel.",
    )
    invite.add_argument("--data-dir", dest="data_dir", type=Path, default=defaults.data_dir, help="the peer's data dir")
    invite.add_argument(
        "--address", default=None, help="HOST:PORT others should dial (default: --advertise, else --host:--port)"
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    try:
        defaults = Settings.from_env()
    except ValueError as exc:
        print(f"meshpad: bad environment variable: {exc}", file=sys.stderr)
        return 2
    args = _parser(defaults).parse_args(argv)
    if args.command == "invite":
        return _invite(defaults, args)
    logging.basicConfig(
        level=getattr(logging, args.log_level.upper()),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    settings = replace(
        defaults,
        host=args.host,
        port=args.port,
        data_dir=args.data_dir,
        join=tuple(args.join) if args.join else defaults.join,
        advertise=args.advertise,
        network_key=args.network_key,
    )
    from server import security
    from server.app import create_app
    from server.keys import BROWSER_TOKEN

    try:
        app = create_app(settings)
        app.on_startup.append(_settle_heap)
        ready = f"Meshpad peer: open http://{_url_host(settings.host)}:{settings.port}/ (data in {settings.data_dir})"
        if not security.is_loopback(settings.host) and settings.host not in ("localhost",):
            token = app[BROWSER_TOKEN]
            ready += (
                f"\nOther machines can reach this peer. In a browser elsewhere, open"
                f" http://{_url_host(settings.host, public=True)}:{settings.port}/?token={token}"
            )
        web.run_app(
            app,
            host=settings.host,
            port=settings.port,
            print=lambda _: print(ready, flush=True),
            access_log=None,
        )
    except (StoreError, ValueError) as exc:
        print(f"meshpad: {exc}", file=sys.stderr)
        return 1
    return 0


async def _settle_heap(app: web.Application) -> None:
    """What starting made (modules, the loaded documents) lives as long as the
    process: move it out of the collector's reach, so that a full collection
    scans only what came later instead of pausing the peer for tens of ms."""
    gc.collect()
    gc.freeze()


def _invite(defaults: Settings, args: argparse.Namespace) -> int:
    from server import identity

    try:
        key = identity.network_key_text(args.data_dir, defaults.network_key)
    except (StoreError, ValueError) as exc:
        print(f"meshpad: {exc}", file=sys.stderr)
        return 1
    address = args.address or defaults.listen_address()
    print(identity.make_invite(address, key))
    return 0


def _url_host(host: str, public: bool = False) -> str:
    if host in ("0.0.0.0", "", "::"):
        return "THIS-MACHINE" if public else "127.0.0.1"
    return f"[{host}]" if ":" in host else host


if __name__ == "__main__":
    sys.exit(main())
