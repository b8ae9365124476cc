import os
import re
import shutil
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from playwright.async_api import async_playwright
from processes import Peer

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]


@asynccontextmanager
async def chromium(*extra: str):
    assert Path(CHROMIUM).exists(), "Debian's chromium package is required (tests/run installs it)"
    async with async_playwright() as pw:
        b = await pw.chromium.launch(executable_path=CHROMIUM, args=[*ARGS, *extra])
        try:
            yield b
        finally:
            await b.close()


# Screenshots the tests take (light, dark and 390 px wide, into ``screenshots/``
# of the test's tmp dir) are kept after the run for a person to review, here
# or where MESHPAD_ARTIFACTS says: one folder per test.
ARTIFACTS = Path(os.environ.get("MESHPAD_ARTIFACTS", Path(__file__).resolve().parents[1] / "artifacts"))


@pytest.fixture(autouse=True)
def keep_screenshots(request, tmp_path):
    yield
    taken = tmp_path / "screenshots"
    if taken.is_dir() and any(taken.iterdir()):
        folder = ARTIFACTS / "screenshots" / re.sub(r"[^\w.-]+", "_", request.node.nodeid.split("/")[-1])
        shutil.rmtree(folder, ignore_errors=True)
        shutil.copytree(taken, folder)


@pytest.fixture
async def browser():
    async with chromium() as b:
        yield b


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


@pytest.fixture
def two_peers(tmp_path):
    """Peer A, and peer B joined to it."""
    a = Peer(tmp_path / "a").start()
    b = Peer(tmp_path / "b", args=["--join", a.address]).start()
    yield a, b
    b.stop()
    a.stop()


@pytest.fixture
async def browser_foreign():
    """A Chromium in which the site http://evil.test resolves to this machine,
    so a page can come from a truly foreign origin without leaving loopback."""
    async with chromium("--host-resolver-rules=MAP evil.test 127.0.0.1") as b:
        yield b
