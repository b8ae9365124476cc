"""The ``meshpad`` commands that talk to the running peer: ``docs``,
``status``, ``export`` and ``import`` (and ``invite``'s questions).

They find the peer the way ``meshpad invite`` does: the data dir's lock says
whether a peer runs there, ``serving.json`` where its API answers (and, over
HTTPS, the SHA-256 of the certificate it serves, which is pinned instead of
checked against a CA: it is often self-signed and names the machine, not
127.0.0.1), and ``browser-token`` the token. What a script reads goes to
standard output (``--json``: one JSON document); what a person reads goes to
standard error. Exit codes: :data:`EXIT_OK`, :data:`EXIT_FAILED`,
:data:`EXIT_USAGE`, :data:`EXIT_NOT_RUNNING`.
"""

from __future__ import annotations

import argparse
import hashlib
import http.client
import json
import os
import ssl
import sys
import threading
import urllib.parse
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, NoReturn

EXIT_OK = 0
EXIT_FAILED = 1  # the peer refused or failed, a file could not be read or written
EXIT_USAGE = 2  # a mistake in what was typed
EXIT_NOT_RUNNING = 3  # no peer is running on the data dir
IMPORTED_SUFFIXES = (".md", ".markdown", ".txt")  # what `meshpad import DIR` takes from a directory
IMPORT_CONNECTIONS = 8  # requests `meshpad import` has in flight: the peer commits them together


def fail(message: str, code: int = EXIT_FAILED) -> NoReturn:
    print(f"meshpad: {message}", file=sys.stderr, flush=True)
    raise SystemExit(code)


def say(message: str) -> None:
    """A line for the person, on standard error (above a progress bar, if any)."""
    from tqdm import tqdm

    tqdm.write(f"meshpad: {message}", file=sys.stderr)


def _json_out(value: Any) -> None:
    print(json.dumps(value, indent=2, ensure_ascii=False), flush=True)


def _progress(total: int, what: str) -> Any:
    """A progress bar on standard error, only when it is a terminal."""
    from tqdm import tqdm

    return tqdm(total=total, desc=what, unit="doc", file=sys.stderr, disable=not sys.stderr.isatty(), leave=False)


# -- the running peer ------------------------------------------------------------


class ApiError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass
class RunningPeer:
    """The API of the peer running on a data dir, over one kept-alive connection."""

    data_dir: Path
    api: str
    token: str
    pin: str | None  # SHA-256 of the certificate, when it serves HTTPS
    _conn: http.client.HTTPConnection | None = None

    @classmethod
    def find(cls, data_dir: Path) -> RunningPeer:
        """The peer running on *data_dir*; exits with EXIT_NOT_RUNNING when none is."""
        from server import identity
        from server.security import TOKEN_FILE

        start = f"start it with `meshpad serve --data-dir {data_dir}`"
        if not data_dir.is_dir():
            fail(f"no Meshpad peer data in {data_dir}: {start}", EXIT_NOT_RUNNING)
        running = identity.running_peer(data_dir)
        if running is None or not isinstance(running.get("api"), str):
            fail(f"no peer is running with the data dir {data_dir}: {start}", EXIT_NOT_RUNNING)
        try:
            token = (data_dir / TOKEN_FILE).read_text().strip()
        except OSError as exc:
            fail(f"cannot read the peer's token in {data_dir}: {exc.strerror}")
        pin = running.get("tls_sha256")
        return cls(data_dir, running["api"], token, pin if isinstance(pin, str) else None)

    def _connect(self) -> http.client.HTTPConnection:
        parts = urllib.parse.urlsplit(self.api)
        host, port = parts.hostname or "127.0.0.1", parts.port
        if parts.scheme != "https":
            conn = http.client.HTTPConnection(host, port, timeout=30)
            conn.connect()
            return conn
        if self.pin is None:
            fail(f"the peer running on {self.data_dir} serves HTTPS but did not say which certificate")
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE  # pinned below instead
        tls = http.client.HTTPSConnection(host, port, timeout=30, context=context)
        tls.connect()
        assert isinstance(tls.sock, ssl.SSLSocket)
        served = hashlib.sha256(tls.sock.getpeercert(binary_form=True) or b"").hexdigest()
        if served != self.pin:
            tls.close()
            fail(f"{self.api} serves another certificate than the peer running on {self.data_dir} announced")
        return tls

    def request(self, method: str, path: str, body: Any = None) -> Any:
        """The JSON answer; raises ApiError for an answer other than 2xx, and
        exits with EXIT_FAILED when the peer cannot be reached."""
        headers = {"Authorization": f"Bearer {self.token}", "Accept": "application/json"}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        for attempt in (1, 2):
            try:
                if self._conn is None:
                    self._conn = self._connect()
                self._conn.request(method, path, body=data, headers=headers)
                resp = self._conn.getresponse()
                raw = resp.read()
                break
            except (OSError, http.client.HTTPException) as exc:
                if self._conn is not None:
                    self._conn.close()
                self._conn = None
                # A kept-alive connection the peer closed meanwhile: once more, if nothing changes twice.
                if attempt == 2 or method != "GET":
                    fail(f"the peer running on {self.data_dir} does not answer at {self.api}: {exc}")
        try:
            answer = json.loads(raw) if raw else None
        except ValueError:
            fail(f"the peer at {self.api} gave an answer that is not JSON to {method} {path}")
        if not 200 <= resp.status < 300:
            message = answer.get("error") if isinstance(answer, dict) else None
            raise ApiError(resp.status, str(message or raw[:200].decode(errors="replace")))
        return answer

    def get(self, path: str) -> Any:
        try:
            return self.request("GET", path)
        except ApiError as exc:
            fail(f"GET {path}: the peer answered {exc.status}: {exc}")

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


def _documents(peer: RunningPeer) -> list[dict[str, Any]]:
    docs = peer.get("/api/docs")
    if not isinstance(docs, list):
        fail(f"GET /api/docs: the peer at {peer.api} did not answer with a list of documents")
    return [d for d in docs if isinstance(d, dict) and isinstance(d.get("name"), str)]


# -- docs ------------------------------------------------------------------------


def docs(args: argparse.Namespace, data_dir: Path) -> int:
    peer = RunningPeer.find(data_dir)
    rows = _documents(peer)
    peer.close()
    if args.json:
        _json_out(rows)
        return EXIT_OK
    if not rows:
        say("no documents")
        return EXIT_OK
    width = max(len("NAME"), *(len(d["name"]) for d in rows))
    print(f"{'NAME':<{width}}  {'CHARS':>9}  UPDATED")
    for d in rows:
        print(f"{d['name']:<{width}}  {d.get('length', 0):>9}  {d.get('updated_at') or '-'}")
    return EXIT_OK


# -- status ----------------------------------------------------------------------


def status(args: argparse.Namespace, data_dir: Path) -> int:
    peer = RunningPeer.find(data_dir)
    try:
        health = peer.request("GET", "/healthz")
    except ApiError as exc:  # 503: the store failed; the body still says how
        health = {"status": f"unhealthy ({exc.status}): {exc}"}
    peers = peer.get("/api/peers")
    rows = _documents(peer)
    peer.close()
    for row in peers:
        row["in_sync_count"] = len(row.get("in_sync") or ())  # documents (Trash included) equal at the last check
    if args.json:
        _json_out({"api": peer.api, "data_dir": str(data_dir), "health": health, "peers": peers, "documents": rows})
        return EXIT_OK if health.get("status") == "ok" else EXIT_FAILED
    connected = [p for p in peers if p.get("state") in ("connected", "suspected")]
    print(f"peer: {peer.api} (data in {data_dir}): {health.get('status')}")
    print(f"documents: {len(rows)} (store backlog: {health.get('store_backlog', '?')} writes)")
    print(f"browsers connected: {health.get('connections', '?')}")
    print(f"peers: {len(connected)} connected of {len(peers)} known")
    for p in peers:
        who = (p.get("id") or "?")[:12]
        state = p.get("state")
        line = f"  {who:<12}  {p.get('address') or '-':<24}  {state:<10}"
        if state in ("connected", "suspected"):
            rtt = p.get("rtt_ms")
            line += f"  {p.get('push')}, rtt {'-' if rtt is None else f'{rtt} ms'}"
            line += f", {p['in_sync_count']} documents in sync at the last check"
        elif p.get("error"):
            line += f"  {p['error']}"
        print(line)
    return EXIT_OK if health.get("status") == "ok" else EXIT_FAILED


# -- export ----------------------------------------------------------------------


def export(args: argparse.Namespace, data_dir: Path) -> int:
    """Every document as DIR/{name}.md (names are always safe file names).
    Refuses, before writing anything, when one of those files exists, unless
    --force; files in DIR that are not documents' are left alone."""
    directory: Path = args.directory
    if directory.exists() and not directory.is_dir():
        fail(f"{directory} is not a directory", EXIT_USAGE)
    peer = RunningPeer.find(data_dir)
    rows = _documents(peer)
    taken = [d["name"] for d in rows if (directory / f"{d['name']}.md").exists()]
    if taken and not args.force:
        peer.close()
        shown = ", ".join(f"{n}.md" for n in taken[:3]) + (f" and {len(taken) - 3} more" if len(taken) > 3 else "")
        fail(f"{directory} already holds {shown}: nothing written (--force overwrites)")
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        fail(f"cannot create {directory}: {exc.strerror}")
    exported: list[dict[str, Any]] = []
    skipped: list[dict[str, Any]] = []
    with _progress(len(rows), "exporting") as bar:
        for row in rows:
            name = row["name"]
            quoted = urllib.parse.quote(name)
            try:
                doc = peer.request("GET", f"/api/docs/{quoted}")
            except ApiError as exc:
                if exc.status != 404:
                    fail(f"GET /api/docs/{name}: the peer answered {exc.status}: {exc}")
                say(f"{name}: deleted or renamed meanwhile, skipped")
                skipped.append({"name": name, "reason": str(exc)})
                bar.update()
                continue
            path = directory / f"{name}.md"
            _write(path, doc["text"].encode("utf-8"), doc.get("updated_at"))
            exported.append({"name": name, "file": str(path), "length": len(doc["text"])})
            bar.update()
    peer.close()
    os.sync()  # on disk before it says so (once: a flush per file would cost more than the export)
    if args.json:
        _json_out({"directory": str(directory), "exported": exported, "skipped": skipped})
    else:
        say(f"exported {len(exported)} document{'' if len(exported) == 1 else 's'} to {directory}")
    return EXIT_OK


def _write(path: Path, data: bytes, updated_at: object) -> None:
    """Write *path* whole or not at all, dated as the document's last change."""
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
        if isinstance(updated_at, str):
            when = datetime.fromisoformat(updated_at.replace("Z", "+00:00")).timestamp()
            os.utime(tmp, (when, when))
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        fail(f"cannot write {path}: {exc.strerror}")


# -- import ----------------------------------------------------------------------


def _import_files(paths: list[Path]) -> list[Path]:
    """The files named, and the text files (.md, .markdown, .txt) directly in
    the directories named, in order; a path that does not exist is a usage error."""
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            files += sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in IMPORTED_SUFFIXES)
        elif path.is_file():
            files.append(path)
        else:
            fail(f"{path}: no such file or directory", EXIT_USAGE)
    return files


def name_for(path: Path) -> str:
    """The document name a file is imported as: its name without the extension
    when that is a valid document name (so an export imports back under the
    same names), else the one the documents page makes (``My Notes (v2).md``
    becomes ``My-Notes-v2``)."""
    from crdt.names import is_valid_name
    from server.pages import name_from_filename

    stem = path.name.rsplit(".", 1)[0] if "." in path.name.lstrip(".") else path.name
    return stem if is_valid_name(stem) else name_from_filename(path.name)


def import_(args: argparse.Namespace, data_dir: Path) -> int:
    """Each file as a new document. A name that exists (or that an earlier
    file of the same import takes) is skipped with a message: nothing is
    overwritten. A file that cannot be imported is reported, the others
    still are, and the exit code is then EXIT_FAILED. Files are sent
    IMPORT_CONNECTIONS at a time, so that the peer commits them in groups;
    the report keeps the order of the files."""
    from concurrent.futures import ThreadPoolExecutor

    from crdt.errors import InvalidName
    from server.pages import MAX_IMPORT_BYTES

    files = _import_files(args.paths)
    first = RunningPeer.find(data_dir)
    outcomes: list[tuple[str, dict[str, Any]] | None] = [None] * len(files)
    jobs: list[tuple[int, Path, str, str]] = []
    taken: dict[str, Path] = {}
    for index, path in enumerate(files):
        try:
            name = name_for(path)
            raw = path.read_bytes()
            if len(raw) > MAX_IMPORT_BYTES:
                raise ValueError(f"larger than {MAX_IMPORT_BYTES // (1024 * 1024)} MiB")
            text = raw.decode("utf-8-sig")
        except (OSError, ValueError, InvalidName) as exc:
            reason = "not UTF-8 text" if isinstance(exc, UnicodeDecodeError) else str(exc)
            outcomes[index] = ("failed", {"file": str(path), "reason": reason})
            continue
        if name in taken:
            outcomes[index] = ("skipped", {"file": str(path), "name": name, "reason": f"the name of {taken[name]} too"})
            continue
        taken[name] = path
        jobs.append((index, path, name, text))

    local = threading.local()
    peers: list[RunningPeer] = []

    def send(job: tuple[int, Path, str, str]) -> tuple[int, tuple[str, dict[str, Any]]]:
        index, path, name, text = job
        peer = getattr(local, "peer", None)
        if peer is None:
            peer = local.peer = RunningPeer(first.data_dir, first.api, first.token, first.pin)
            peers.append(peer)
        try:
            peer.request("POST", "/api/docs", {"name": name, "text": text})
            return index, ("imported", {"file": str(path), "name": name, "length": len(text)})
        except ApiError as exc:
            if exc.status == 409:
                return index, ("skipped", {"file": str(path), "name": name, "reason": "exists"})
            return index, (
                "failed",
                {"file": str(path), "name": name, "reason": f"the peer answered {exc.status}: {exc}"},
            )

    with _progress(len(files), "importing") as bar:
        bar.update(len(files) - len(jobs))
        with ThreadPoolExecutor(IMPORT_CONNECTIONS) as pool:
            for index, outcome in pool.map(send, jobs):
                outcomes[index] = outcome
                bar.update()
    for peer in peers:
        peer.close()
    report: dict[str, list[dict[str, Any]]] = {"imported": [], "skipped": [], "failed": []}
    for done in outcomes:
        assert done is not None
        kind, row = done
        report[kind].append(row)
        if kind == "skipped":
            why = "a document named {name} exists" if row["reason"] == "exists" else "{name} is {reason}"
            say(f"{row['file']}: skipped: " + why.format(**row))
        elif kind == "failed":
            say(f"{row['file']}: not imported: {row['reason']}")
    if args.json:
        _json_out(report)
    else:
        counts = {kind: len(rows) for kind, rows in report.items()}
        say("imported {imported}, skipped {skipped} (the name exists), failed {failed}".format(**counts))
    return EXIT_FAILED if report["failed"] else EXIT_OK
