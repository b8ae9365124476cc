import shutil
from pathlib import Path

import pytest
from playwright.async_api import async_playwright
from processes import Peer

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]


@pytest.fixture
async def browser():
    assert Path(CHROMIUM).exists(), "Debian's chromium package is required (tests/run installs it)"
    async with async_playwright() as pw:
        b = await pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            yield b
        finally:
            await b.close()


@pytest.fixture
def peer(tmp_path):
    p = Peer(tmp_path / "data").start()
    yield p
    p.stop()


@pytest.fixture
def page_errors():
    errors: list[str] = []
    yield errors
    assert not errors, f"errors in the page: {errors}"
