"""Fixtures shared by the suites: a whole peer through the app factory, on a
fresh data dir, and a test client for it."""

import sys
from pathlib import Path

import pytest

# Test helpers (yclient, processes, waiting; the simulated networks in sim/)
# are imported as top-level modules.
sys.path.insert(0, str(Path(__file__).parent / "sim"))
sys.path.insert(0, str(Path(__file__).parent))

from server.app import create_app
from server.settings import Settings


@pytest.fixture
def settings(tmp_path):
    return Settings(host="127.0.0.1", port=0, data_dir=tmp_path / "data")


@pytest.fixture
async def client(aiohttp_client, settings):
    return await aiohttp_client(create_app(settings))
