"""Fixtures of the fuzz tests: one app (a whole peer, through the factory)
per endpoint test, reused by all the cases of that test."""

import pytest

from server.app import create_app
from server.settings import Settings


@pytest.fixture
def settings(tmp_path):
    return Settings(host="127.0.0.1", port=0, data_dir=tmp_path / "data")


@pytest.fixture
async def client(aiohttp_client, settings):
    return await aiohttp_client(create_app(settings))
