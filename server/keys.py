"""Typed keys of the application's state."""

from __future__ import annotations

import jinja2
from aiohttp import web

from server.assets import StaticFiles
from server.peering import PEERING as PEERING
from server.runtime import Runtime
from server.settings import Settings

SETTINGS = web.AppKey("settings", Settings)
RUNTIME = web.AppKey("runtime", Runtime)
STATIC = web.AppKey("static", StaticFiles)
TEMPLATES = web.AppKey("templates", jinja2.Environment)
BROWSER_SOCKETS = web.AppKey("browser_sockets", set[web.WebSocketResponse])
BROWSER_TOKEN = web.AppKey("browser_token", str)
NETWORK_KEY = web.AppKey("network_key", str)  # as people type it, for invites
