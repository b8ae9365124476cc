"""Profile the peer's ingest path: the first edits of the automerge-paper
trace, as y-websocket frames, fed to ``Runtime.receive`` in this process
under cProfile (roughly halves the speed). Prints the top lines by own time.

    python bench/profile_ingest.py [EDITS]
"""

from __future__ import annotations

import asyncio
import cProfile
import pstats
import sys
import tempfile
import time
from pathlib import Path

from aiohttp.test_utils import TestServer
from common import encode_trace, frame_update, npm_install

from server.app import create_app
from server.keys import RUNTIME
from server.settings import Settings


async def profile(edits: int) -> None:
    with tempfile.TemporaryDirectory(prefix="meshpad-profile-") as tmp:
        work = Path(tmp)
        updates, final = encode_trace(edits, work)
        frames = [frame_update(u) for u in updates]
        app = create_app(Settings(port=0, data_dir=work / "data"))
        async with TestServer(app):
            runtime = app[RUNTIME]
            session = await runtime.session("profile")
            conn = runtime.attach("profile", wants_acks=True)
            profiler = cProfile.Profile()
            start = time.perf_counter()
            profiler.enable()
            for frame in frames:
                runtime.receive(conn, frame)
            deadline = time.monotonic() + 60
            while conn.acked < len(frames):  # the last batch is handled once this task yields
                assert time.monotonic() < deadline, "the frames were not all handled"
                await asyncio.sleep(0.001)
            profiler.disable()
            elapsed = time.perf_counter() - start
            assert session.document.text == final
            runtime.detach(conn)
        print(f"{len(frames):,} frames in {elapsed:.2f} s under cProfile: {len(frames) / elapsed:,.0f} frames/s")
        stats = pstats.Stats(profiler)
        stats.strip_dirs().sort_stats("tottime").print_stats(14)


if __name__ == "__main__":
    npm_install()
    asyncio.run(profile(int(sys.argv[1]) if len(sys.argv) > 1 else 30_000))
