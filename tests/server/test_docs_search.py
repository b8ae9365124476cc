"""The documents list searched, sorted and paged (``server.pages``
``ListQuery``, ``server.catalog`` rule 4): through the real HTTP routes
(``GET /api/docs`` with its parameters and ``GET /``), by name and by text,
with partial words and hostile input, without deleted documents, under a new
name after a rename, with an edit from another peer, and over 10,000
documents whose index is built when the peer starts."""

from __future__ import annotations

import random
import re
import time

import pytest

from crdt import peerwire as pw
from crdt.document import Document
from crdt.store import Write
from server.app import create_app
from server.keys import RUNTIME
from server.pages import PAGE_SIZE, ago
from server.settings import Settings
from server.sqlite_store import SQLiteStore

TEXTS = {
    "groceries": "Buy apples, oat milk and a Zeppelin-shaped cake.",
    "meeting-notes": "# Weekly sync\n\nDiscussed the roadmap; Ada owns the migration.",
    "quotes": 'She said "hello" OR goodbye* -- NEAR(a b) col:x ^start (paren',
    "Apple-pie": "Recipe: flour, butter, sugar.",
}


async def names(client, **params: object) -> list[str]:
    resp = await client.get("/api/docs", params={k: str(v) for k, v in params.items()})
    assert resp.status == 200, await resp.text()
    return [d["name"] for d in await resp.json()]


@pytest.fixture
async def filled(client):
    for name, text in TEXTS.items():
        resp = await client.post("/api/docs", json={"name": name, "text": text})
        assert resp.status == 201
    return client


async def test_search_by_name_and_by_text(filled):
    assert await names(filled, q="apple") == ["Apple-pie", "groceries"]  # the name, any case; the text
    assert await names(filled, q="MEETING") == ["meeting-notes"]
    assert await names(filled, q="roadmap") == ["meeting-notes"]
    assert await names(filled, q="oadma") == ["meeting-notes"]  # part of a word
    assert await names(filled, q="zeppelin-shaped") == ["groceries"]
    assert await names(filled, q="oat milk") == ["groceries"]  # the words together, as typed
    assert await names(filled, q="milk oat") == []
    assert await names(filled, q="nothing like this") == []
    assert await names(filled, q="  roadmap  ") == ["meeting-notes"]  # the spaces around are dropped
    assert await names(filled) == sorted(TEXTS)  # no query: everything, by name


async def test_short_queries_match_names_only(filled):
    assert await names(filled, q="pi") == ["Apple-pie"]  # "pi" is in no other name
    html = await (await filled.get("/", params={"q": "pi"})).text()
    assert "searched from 3 characters on" in html


@pytest.mark.parametrize(
    ("query", "found"),
    [
        ('"hello"', ["quotes"]),
        ('"hello" OR goodbye*', ["quotes"]),
        ("OR good", ["quotes"]),  # an operator is a word like any other
        ("AND", ["groceries"]),  # "oat milk and a cake"
        ("NEAR(a b)", ["quotes"]),
        ("col:x", ["quotes"]),
        ("^start", ["quotes"]),
        ("(paren", ["quotes"]),
        ("-- NEAR", ["quotes"]),
        ('"', []),
        ('""""', []),
        ("*", []),
        ("a\x00b", []),
        ("%_%", []),
        ("'; DROP TABLE documents; --", []),
        ("\U0001f600 émoji", []),
    ],
)
async def test_hostile_queries_are_literal_text(filled, query: str, found: list[str]):
    assert await names(filled, q=query) == found
    resp = await filled.get("/", params={"q": query})
    assert resp.status == 200
    resp = await filled.get("/", params={"q": query, "partial": "1"})
    assert resp.status == 200
    assert await names(filled) == sorted(TEXTS)  # nothing was dropped


async def test_deleted_documents_are_not_found(filled):
    resp = await filled.post("/doc/groceries/delete", data={"by": "Ada"}, allow_redirects=False)
    assert resp.status in (302, 303)
    assert await names(filled, q="zeppelin") == []
    assert await names(filled, q="groceries") == []
    assert "groceries" not in await names(filled)
    resp = await filled.post("/trash/groceries/restore", data={"by": "Ada"}, allow_redirects=False)
    assert resp.status in (302, 303), await resp.text()
    assert await names(filled, q="zeppelin") == ["groceries"]  # back from the Trash, found again


async def test_a_renamed_document_is_found_under_its_new_name(filled):
    runtime = filled.app[RUNTIME]
    await runtime.rename("meeting-notes", "minutes")
    assert await names(filled, q="roadmap") == ["minutes"]
    assert await names(filled, q="meeting") == []
    assert await names(filled, q="minu") == ["minutes"]


async def test_an_edit_typed_and_an_edit_from_another_peer_are_found(filled):
    runtime = filled.app[RUNTIME]
    key = runtime.key("groceries")
    session = await runtime.session("groceries")
    # Another peer's copy of the document, edited there and sent here.
    remote = Document(key, 987654)
    remote.receive(session.document.encode_state(), "sync")
    [change] = remote.edit("remote", insert=" Also quinoa.", at=len(remote.text))
    engine, now = runtime.core, runtime.now()
    engine.link_opened(900, False, "127.0.0.1", now)
    hello = pw.Hello(pw.VERSION, b"\x07" * 16, "127.0.0.1:9", 5, runtime.access.roster.space_id)
    engine.peer_frame(900, pw.encode(hello), now)
    runtime.perform(engine.peer_frame(900, pw.encode(pw.Update(key, change.update)), now))
    assert session.document.text.endswith("Also quinoa.")
    assert await names(filled, q="quinoa") == ["groceries"]  # at once: the search indexes changed texts first
    # and the text that went is no longer found
    [change] = remote.edit("remote", delete=len(" Also quinoa."), at=len(remote.text) - len(" Also quinoa."))
    runtime.perform(engine.peer_frame(900, pw.encode(pw.Update(key, change.update)), runtime.now()))
    assert await names(filled, q="quinoa") == []


async def test_sort_and_order(filled):
    runtime = filled.app[RUNTIME]
    by_size = sorted(TEXTS, key=lambda n: (len(TEXTS[n]), n))
    assert await names(filled, sort="size", order="asc") == by_size
    assert await names(filled, sort="size") == by_size[::-1]  # largest first unless asked
    assert await names(filled, sort="name", order="desc") == sorted(TEXTS, reverse=True)
    by_change = sorted(TEXTS, key=lambda n: (runtime.info(n).updated_at, n))
    assert await names(filled, sort="updated", order="asc") == by_change
    assert await names(filled, sort="updated") == by_change[::-1]
    await runtime.rename("Apple-pie", "apple-tart")  # a rename is a change
    assert (await names(filled, sort="updated"))[0] == "apple-tart"


@pytest.mark.parametrize(
    "params",
    [{"sort": "colour"}, {"order": "up"}, {"offset": "-1"}, {"limit": "ten"}, {"limit": "-5"}, {"q": "x" * 201}],
)
async def test_bad_parameters_are_refused_with_their_reason(filled, params):
    resp = await filled.get("/api/docs", params=params)
    assert resp.status == 400
    field = next(iter(params))
    assert (await resp.json())["error"].startswith(f"{field}:")
    resp = await filled.get("/", params=params)  # the page falls back to its defaults
    assert resp.status == 200


async def test_the_plain_list_keeps_its_shape(filled):
    resp = await filled.get("/api/docs")
    body = await resp.json()
    assert isinstance(body, list) and [d["name"] for d in body] == sorted(TEXTS)
    assert set(body[0]) == {"name", "length", "updated_at", "created_at", "space", "ref"}
    assert resp.headers["X-Total-Count"] == str(len(TEXTS))
    resp = await filled.get("/api/docs", params={"q": "apple", "limit": "1"})
    assert [d["name"] for d in await resp.json()] == ["Apple-pie"] and resp.headers["X-Total-Count"] == "2"


def test_relative_times_read_as_intl_says_them():
    now = 1_800_000_000.0
    assert ago(now - 10, now) == "now"
    assert ago(now - 60, now) == "1 minute ago"
    assert ago(now - 3 * 60, now) == "3 minutes ago"
    assert ago(now - 2 * 3600, now) == "2 hours ago"
    assert ago(now - 26 * 3600, now) == "yesterday"
    assert ago(now - 3 * 86400, now) == "3 days ago"
    assert ago(now - 40 * 86400, now) == "last month"
    assert ago(now - 400 * 86400, now) == "last year"
    assert ago(now + 5 * 60, now) == "in 5 minutes"  # another peer's clock ahead


# -- 10,000 documents ------------------------------------------------------------

COUNT = 10_000
WORDS = [f"w{n:04d}x" for n in range(2000)]


def _fill(data, rng: random.Random) -> dict[str, str]:
    """COUNT documents written to the store as the peer writes them (one
    edit each), with no search index: the peer builds it when it starts."""
    store = SQLiteStore(data)
    texts: dict[str, str] = {}
    batch = []
    base = time.time() - COUNT
    for i in range(COUNT):
        name = f"doc-{i:05d}"
        text = " ".join(rng.choices(WORDS, k=rng.randint(1, 30)))
        if i % 1000 == 7:
            text += " needle-in-a-haystack"
        texts[name] = text
        doc = Document(name, i + 1)
        for change in doc.edit("seed", insert=text):
            batch.append(Write(name, change.update, length=len(doc.text), at=base + rng.random() * COUNT))
    store.write(batch)
    store.close()
    return texts


@pytest.fixture
async def crowded(tmp_path, aiohttp_client):
    rng = random.Random(14)
    data = tmp_path / "data"
    texts = _fill(data, rng)
    # The peer holds few documents in memory: the others are summaries only.
    app = create_app(Settings(host="127.0.0.1", port=0, data_dir=data, max_loaded=50))
    client = await aiohttp_client(app)
    return client, texts


@pytest.mark.slow
async def test_ten_thousand_documents(crowded):
    client, texts = crowded
    runtime = client.app[RUNTIME]
    assert len(runtime.core.documents) <= 51  # (and the forgotten-documents record)
    # The page shows one page, with a link to the next one.
    resp = await client.get("/")
    html = await resp.text()
    assert html.count('<td class="num">') == PAGE_SIZE
    assert f"1–{PAGE_SIZE} of 10,000 documents" in html
    assert 'href="/?offset=50" rel="next"' in html and "Page 1 of 200" in html
    resp = await client.get("/", params={"offset": str(COUNT + 7)}, allow_redirects=False)
    assert resp.status == 302 and resp.headers["Location"] == f"/?offset={COUNT - PAGE_SIZE}"  # the last page
    last = await (await client.get("/", params={"offset": str(COUNT - PAGE_SIZE)})).text()
    assert "doc-09999" in last and 'rel="next"' not in last and "Page 200 of 200" in last

    # Pages of the API cover the list once, in order.
    seen: list[str] = []
    for offset in range(0, COUNT, 2500):
        resp = await client.get("/api/docs", params={"offset": str(offset), "limit": "2500"})
        assert resp.headers["X-Total-Count"] == str(COUNT)
        seen += [d["name"] for d in await resp.json()]
    assert seen == sorted(texts)

    # Full text over documents that are not in memory, and the index built at start.
    assert await names(client, q="needle-in-a-hay") == [f"doc-{i:05d}" for i in range(7, COUNT, 1000)]
    word = WORDS[123]
    expected = sorted(n for n, t in texts.items() if word in t)
    assert expected and await names(client, q=word) == expected
    part = word[1:-1]  # "0123": in texts, and in names
    assert await names(client, q=part) == sorted(n for n, t in texts.items() if part in t or part in n)
    assert len(runtime.core.documents) <= 51  # searching loaded nothing

    # Sorted by size and by last change, through the HTTP route.
    largest = await (await client.get("/api/docs", params={"sort": "size", "limit": "20"})).json()
    lengths = sorted(((len(t), n) for n, t in texts.items()), reverse=True)[:20]
    assert [(d["length"], d["name"]) for d in largest] == lengths
    oldest = await (await client.get("/api/docs", params={"sort": "updated", "order": "asc", "limit": "5"})).json()
    infos = sorted((runtime.info(n).updated_at, n) for n in texts)[:5]
    assert [d["name"] for d in oldest] == [n for _, n in infos]
    page = await (await client.get("/", params={"q": word, "sort": "size", "order": "asc", "offset": "0"})).text()
    shown = re.findall(r'<td><a href="/doc/([^"]+)">', page)
    assert shown == [n for _, n in sorted((len(texts[n]), n) for n in expected)][:PAGE_SIZE]


async def test_the_index_follows_the_store_across_restarts(tmp_path, aiohttp_client):
    """Built at start when missing, kept across a restart, and checked
    against the texts: a stale entry is indexed again."""
    data = tmp_path / "data"
    settings = Settings(host="127.0.0.1", port=0, data_dir=data)
    client = await aiohttp_client(create_app(settings))
    await client.post("/api/docs", json={"name": "kept", "text": "a marmalade sandwich"})
    await client.close()
    store = SQLiteStore(data)
    key = next(iter(store.indexed()))
    store.write([Write(key, text="something else entirely")])  # as a crash between edit and indexing leaves it
    assert store.search("marmalade") == []
    store.close()
    client = await aiohttp_client(create_app(settings))
    assert await names(client, q="marmalade") == ["kept"]
    assert await names(client, q="entirely") == []


# -- the stores' index (crdt.store.Store.search) ------------------------------------


@pytest.mark.parametrize("kind", ["memory", "sqlite"])
def test_the_stores_index(tmp_path, kind):
    from crdt.store import MemoryStore, text_fingerprint

    store = MemoryStore() if kind == "memory" else SQLiteStore(tmp_path)
    store.write([Write("a", text="Grüße aus KÖLN"), Write("b", text='say "x" OR y*'), Write("c", length=3)])
    assert store.search("köln") == ["a"] and store.search("GRÜSSE") == [] and store.search("grüße") == ["a"]
    assert store.search('"x" OR y*') == ["b"] and store.search("ko") == []  # under 3 characters: nothing
    assert store.indexed() == {"a": text_fingerprint("Grüße aus KÖLN"), "b": text_fingerprint('say "x" OR y*')}
    store.write([Write("a", text="something else")])  # replaced, not added to
    assert store.search("köln") == [] and store.search("thing") == ["a"]
    store.write([Write("a", forget=True)])
    assert store.search("thing") == [] and set(store.indexed()) == {"b"}
    store.close()
    if kind == "sqlite":
        store = SQLiteStore(tmp_path)  # kept across a reopen
        assert store.search("OR y") == ["b"]
        store.close()
