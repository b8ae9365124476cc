"""Fetching each document once when catching up, sans-IO.

Owns: every document some link has found different and that is not yet
fetched, the links that can give it (each with the digest it reported), the
link it is being asked on, and each link's queue of documents it may be
asked for. It decides who is asked for what; ``crdt.antientropy`` sends.

Rules kept here (numbered as in ``docs/protocol.md`` §7.4):

1. A document is asked for (``SYNC_STEP1``) on one link at a time; every
   other link that finds it different becomes a candidate for it.
2. A link has at most ``window`` documents asked and unanswered. The rest
   wait in its queue, so when several links open at once the documents
   spread over them, and each link takes its next document as it answers:
   a faster link serves more.
3. When the answer comes, every other candidate whose reported digest is not
   the one we now have (or that reported none) is asked for what is left,
   which is only what the first answer lacked; one whose digest we now have
   is in sync and is asked for nothing.
4. An ask unanswered for ``timeout`` goes to another candidate (the slow link
   stays one only when there is no other); the asks of a link that is lost
   go to the other candidates at once.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import NamedTuple

from crdt.effects import LinkId


class Offer(NamedTuple):
    digest: bytes | None  # what the link reported for the document, if it did
    push: bool  # the link may lack what we have: our ask also asks for its own step 1


@dataclass(slots=True)
class Want:
    candidates: dict[LinkId, Offer] = field(default_factory=dict)
    asked: LinkId | None = None  # (1) the one link it is being asked on
    sent: float = 0.0


class Fetches:
    def __init__(self, window: int, timeout: float) -> None:
        self.window = window
        self.timeout = timeout
        self.wants: dict[str, Want] = {}
        self._queues: dict[LinkId, deque[str]] = {}
        self._asked: dict[LinkId, int] = {}
        self._oldest: dict[str, None] = {}  # asked documents, in the order they were asked
        self.expired = 0  # asks that timed out (counted for the metrics)

    def asking(self, name: str) -> bool:
        want = self.wants.get(name)
        return want is not None and want.asked is not None

    def busy(self, link: LinkId) -> bool:
        """*link* has asks out."""
        return self._asked.get(link, 0) > 0

    def offer(self, link: LinkId, name: str, digest: bytes | None, push: bool) -> None:
        """*link* has *name* different from ours (its digest, when known)."""
        want = self.wants.setdefault(name, Want())
        known = want.candidates.get(link)
        if known is None:
            self._queues.setdefault(link, deque()).append(name)
            want.candidates[link] = Offer(digest, push)
        else:
            want.candidates[link] = Offer(digest if digest is not None else known.digest, push or known.push)

    def take(self, link: LinkId, now: float) -> list[tuple[str, bool]]:
        """(2) The documents to ask *link* for now, each with whether the
        ask also asks for its step 1."""
        queue = self._queues.get(link)
        taken: list[tuple[str, bool]] = []
        while queue and self._asked.get(link, 0) < self.window:
            name = queue.popleft()
            want = self.wants.get(name)
            if want is None or want.asked is not None or link not in want.candidates:
                continue  # fetched, being asked elsewhere (it is back here if that fails), or withdrawn
            want.asked, want.sent = link, now
            self._asked[link] = self._asked.get(link, 0) + 1
            self._oldest[name] = None
            taken.append((name, want.candidates[link].push))
        return taken

    def answered(self, link: LinkId, name: str) -> dict[LinkId, Offer]:
        """An answer for *name* came on *link*: (3) the other candidates, for
        the caller to compare with what it now has. Empty when the document
        was not wanted, or is still being asked on another link (a late
        answer: its link is no longer a candidate)."""
        want = self.wants.get(name)
        if want is None:
            return {}
        if want.asked != link:
            want.candidates.pop(link, None)
            if not want.candidates and want.asked is None:
                del self.wants[name]
            return {}
        self._release(name, want)
        del self.wants[name]
        want.candidates.pop(link, None)
        return want.candidates

    def expire(self, now: float) -> set[LinkId]:
        """(4) Put asks older than ``timeout`` back to their other
        candidates; returns the links that may now be asked for more."""
        touched: set[LinkId] = set()
        while self._oldest:
            name = next(iter(self._oldest))
            want = self.wants[name]
            if now - want.sent < self.timeout:
                break
            slow = want.asked
            assert slow is not None
            self.expired += 1
            self._release(name, want)
            if len(want.candidates) > 1:
                del want.candidates[slow]
            touched |= self._requeue(name, want)
            touched.add(slow)  # its window has room again
        return touched

    def lost(self, link: LinkId) -> set[LinkId]:
        """(4) *link* is gone; returns the links that may now be asked for
        more."""
        self._queues.pop(link, None)
        touched: set[LinkId] = set()
        for name, want in list(self.wants.items()):
            if link not in want.candidates:
                continue
            del want.candidates[link]
            if want.asked == link:
                self._release(name, want)
                touched |= self._requeue(name, want)
            if not want.candidates and want.asked is None:
                del self.wants[name]
        self._asked.pop(link, None)
        return touched

    def withdraw(self, link: LinkId, name: str) -> set[LinkId]:
        """*link* cannot give *name* (it said so): it is no longer a
        candidate; returns the links that may now be asked for more."""
        want = self.wants.get(name)
        if want is None or link not in want.candidates:
            return set()
        del want.candidates[link]
        touched: set[LinkId] = set()
        if want.asked == link:
            self._release(name, want)
            touched = self._requeue(name, want) | {link}
        if not want.candidates and want.asked is None:
            del self.wants[name]
        return touched

    def forget(self, name: str) -> set[LinkId]:
        """*name* is deleted forever: nothing is fetched for it; returns the
        link whose window it frees."""
        want = self.wants.pop(name, None)
        if want is None or want.asked is None:
            return set()
        asked = want.asked
        self._release(name, want)
        return {asked}

    def next_deadline(self) -> float:
        for name in self._oldest:
            return self.wants[name].sent + self.timeout
        return float("inf")

    def _release(self, name: str, want: Want) -> None:
        assert want.asked is not None
        self._asked[want.asked] -= 1
        del self._oldest[name]
        want.asked = None

    def _requeue(self, name: str, want: Want) -> set[LinkId]:
        for candidate in want.candidates:
            self._queues.setdefault(candidate, deque()).append(name)
        return set(want.candidates)
