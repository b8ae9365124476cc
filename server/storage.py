"""The store thread: every Store call runs on one thread, off the event loop.

Writes are group-committed: the writes of one loop iteration reach the
thread together, and the thread takes every write queued while the previous
batch was being committed and makes them durable in one transaction, so a
busy peer pays one fsync per batch, not per edit, and an idle one commits a
lone edit at once. Each write gets a *ticket* (1, 2, 3, …); after a commit
the loop is told the highest durable ticket, which is what "saved" means.

A change that only passed through this peer (it came from another peer
and no browser of this peer is waiting for it to be saved) is written
*relayed*: it waits up to RELAYED_COMMIT_DELAY for a commit of its own
making, and goes along with the next urgent write or call before that. A
crash can lose such writes, never an urgent one, and never a write without
the writes before it (the store receives them in order): the peer restarts
with a state its peers' anti-entropy completes, since every relayed change
is on disk where it was made (``docs/durability.md``).

The queue is unbounded on purpose: it holds edits the peer has already applied
and promised to keep; refusing them would lose them. Its length is reported in
``/healthz`` so a store that cannot keep up is visible.
"""

from __future__ import annotations

import asyncio
import logging
import os
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, TypeVar

from crdt.store import Store, Write

log = logging.getLogger(__name__)
T = TypeVar("T")

_STOP = object()
# Longest a relayed write waits for a commit (seconds), and most relayed
# writes held before they are handed over anyway.
RELAYED_COMMIT_DELAY = 0.5
RELAYED_HELD_MAX = 4096


class StoreThread:
    def __init__(
        self,
        store: Store,
        loop: asyncio.AbstractEventLoop,
        on_durable: Callable[[int], None],
        on_commit: Callable[[float], None] | None = None,
    ) -> None:
        """*on_commit* is told each commit's duration in seconds, on the
        store thread (``server.metrics``' histogram, which is thread-safe)."""
        self.store = store
        self._on_commit = on_commit
        self._loop = loop
        self._on_durable = on_durable
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="meshpad-store", daemon=True)
        self.last_ticket = 0  # last ticket handed out (event-loop side)
        self.durable_ticket = 0  # last ticket known durable (event-loop side)
        self._held: list[tuple[int, Write]] = []  # not handed over yet, in ticket order
        self._urgent_held = False  # an urgent write is among them (hand-over this iteration)
        self._relayed_timer: asyncio.TimerHandle | None = None
        self.failed: BaseException | None = None
        self.batches = 0

    def start(self) -> None:
        self._thread.start()

    def write(self, w: Write, urgent: bool = True) -> int:
        """Queue a write; return its ticket. Called on the event loop.

        The urgent writes of one loop iteration go to the thread together,
        with every relayed write before them, once the frames that iteration
        queued have been sent (two hops of ``call_soon``): one wake-up of the
        thread per iteration rather than per write, and none between
        receiving an update and passing it on. Relayed writes alone wait up
        to RELAYED_COMMIT_DELAY.
        """
        self.last_ticket += 1
        self._held.append((self.last_ticket, w))
        if urgent:
            self.expedite()
        elif len(self._held) >= RELAYED_HELD_MAX:
            self._hand_over()
        elif self._relayed_timer is None and not self._urgent_held:
            self._relayed_timer = self._loop.call_later(RELAYED_COMMIT_DELAY, self._hand_over)
        return self.last_ticket

    def expedite(self) -> None:
        """Commit what is held without waiting: in this loop iteration."""
        if self._held and not self._urgent_held:
            self._urgent_held = True
            self._loop.call_soon(self._loop.call_soon, self._hand_over)

    def _hand_over(self) -> None:
        self._urgent_held = False
        if self._relayed_timer is not None:
            self._relayed_timer.cancel()
            self._relayed_timer = None
        if self._held:
            held, self._held = self._held, []
            self._queue.put(held)

    async def call(self, fn: Callable[[Store], T]) -> T:
        """Run ``fn(store)`` on the store thread, after every write queued so far."""
        self._hand_over()
        future: Future[T] = Future()
        self._queue.put((fn, future))
        return await asyncio.wrap_future(future)

    def backlog(self) -> int:
        return self.last_ticket - self.durable_ticket

    async def stop(self) -> None:
        """Commit what is queued, then close the store."""
        self._hand_over()
        self._queue.put(_STOP)
        await asyncio.to_thread(self._thread.join)

    # -- the thread --------------------------------------------------------

    def _run(self) -> None:
        _no_wakeup_preemption()
        stopping = False
        while not stopping:
            items = [self._queue.get()]
            while True:
                try:
                    items.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            batch: list[Write] = []
            top = 0
            for item in items:
                if item is _STOP:
                    stopping = True
                elif isinstance(item, list):
                    top = item[-1][0]
                    batch.extend(w for _, w in item)
                else:
                    self._commit(batch, top)
                    batch, top = [], 0
                    fn, future = item
                    self._call(fn, future)
            self._commit(batch, top)
        try:
            self.store.close()
        except Exception:
            log.exception("closing the store failed")

    def _commit(self, batch: list[Write], top: int) -> None:
        if not batch or self.failed is not None:
            return
        started = time.perf_counter()
        try:
            grown = self.store.write(batch)
        except BaseException as exc:
            # Nothing more will be acknowledged: browsers keep showing their
            # edits as unsaved (and keep them), and /healthz reports the fault.
            self.failed = exc
            log.exception("store write failed; no further edit will be acknowledged")
            return
        self.batches += 1
        if self._on_commit is not None:
            self._on_commit(time.perf_counter() - started)
        self._loop.call_soon_threadsafe(self._durable, top)
        for name in grown:
            try:
                self.store.compact(name)
            except Exception:
                log.exception("compaction of %r failed; its log is kept as it was", name)

    def _durable(self, ticket: int) -> None:
        self.durable_ticket = max(self.durable_ticket, ticket)
        self._on_durable(self.durable_ticket)

    def _call(self, fn: Callable[[Store], Any], future: Future[Any]) -> None:
        if not future.set_running_or_notify_cancel():
            return
        try:
            result = fn(self.store)
        except BaseException as exc:
            future.set_exception(exc)
        else:
            future.set_result(result)


def _no_wakeup_preemption() -> None:
    """Put the calling thread under SCHED_BATCH (Linux): waking it no longer
    preempts the thread that woke it.

    Without it, on a busy machine, handing writes over from the event loop
    could take milliseconds: the woken store thread would preempt the loop,
    find the GIL held, and go back to sleep, and the loop would wait for a
    core again (0.1 ms on average, up to 9 ms, with four busy processes on
    two cores; 6 µs on average with SCHED_BATCH). The commit itself is not
    delayed when a core is free.
    """
    policy = getattr(os, "SCHED_BATCH", None)
    if policy is None:
        return
    try:
        os.sched_setscheduler(0, policy, os.sched_param(0))  # 0: the calling thread
    except OSError as exc:
        log.debug("could not set SCHED_BATCH on the store thread: %s", exc)
