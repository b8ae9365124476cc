"""Run inside a network namespace (``ip netns exec NS python tests/nsclient.py``):
read a document through the API, or edit it as a y-websocket client. The
browser token, needed from any non-loopback address, comes from
``MESHPAD_TOKEN``.

    nsclient.py text URL NAME
    nsclient.py peers URL
    nsclient.py create URL NAME TEXT
    nsclient.py edit URL NAME CLIENT_ID (insert TOKEN | delete TOKEN)...
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import aiohttp
from yclient import YClient, wait_for

TOKEN = os.environ.get("MESHPAD_TOKEN", "")
HEADERS = {"Authorization": f"Bearer {TOKEN}"} if TOKEN else {}


async def edit(url: str, name: str, client_id: int, ops: list[str]) -> None:
    async with aiohttp.ClientSession(headers=HEADERS) as http:
        client = await YClient.connect(http, f"{url}/ws/{name}?acks=1", client_id)
        await wait_for(lambda: client.synced, what="sync")
        last = 0
        for op, token in zip(ops[::2], ops[1::2], strict=True):
            raw = client.content.encode()
            if op == "insert":
                last = await client.insert(len(raw), token)  # at the end (byte offset)
            else:
                start = raw.index(token.encode())
                del client.text[start : start + len(token.encode())]
                last = await client.flush()
        await wait_for(lambda: client.saved >= last, what="saved")
        await client.close()


def main() -> None:
    cmd, url = sys.argv[1], sys.argv[2]
    if cmd == "text":
        with urllib.request.urlopen(
            urllib.request.Request(f"{url}/api/docs/{sys.argv[3]}", headers=HEADERS), timeout=5
        ) as resp:
            print(json.loads(resp.read())["text"], end="")
    elif cmd == "peers":
        with urllib.request.urlopen(urllib.request.Request(f"{url}/api/peers", headers=HEADERS), timeout=5) as resp:
            print(resp.read().decode())
    elif cmd == "create":
        body = json.dumps({"name": sys.argv[3], "text": sys.argv[4]}).encode()
        req = urllib.request.Request(
            f"{url}/api/docs", data=body, headers={**HEADERS, "Content-Type": "application/json"}
        )
        urllib.request.urlopen(req, timeout=5).close()
    elif cmd == "edit":
        asyncio.run(edit(url, sys.argv[3], int(sys.argv[4]), sys.argv[5:]))


if __name__ == "__main__":
    main()
