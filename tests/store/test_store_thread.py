"""The store thread: writes of one loop iteration are handed over and
committed together, relayed writes wait for the relayed timer or the next
urgent write, calls see every earlier write, and the thread does not
preempt the event loop when woken."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Sequence

import pytest
from waiting import wait_for

from crdt.store import MemoryStore, Store, Write
from server import storage
from server.storage import StoreThread


class CountingStore(MemoryStore):
    def __init__(self) -> None:
        super().__init__()
        self.batches: list[list[str]] = []

    def write(self, batch: Sequence[Write]) -> list[str]:
        self.batches.append([w.name for w in batch])
        return super().write(batch)


async def started(store: Store) -> tuple[StoreThread, list[int]]:
    durable: list[int] = []
    thread = StoreThread(store, asyncio.get_running_loop(), durable.append)
    thread.start()
    return thread, durable


async def wait_durable(thread: StoreThread, ticket: int) -> None:
    await wait_for(lambda: thread.durable_ticket >= ticket, what=f"ticket {ticket} durable", interval=0.001)


async def test_the_writes_of_one_loop_iteration_are_handed_over_once_after_it() -> None:
    """Not in the middle of the iteration that wrote (that would wake the
    thread between receiving an update and passing it on), and in one piece."""
    durable: list[int] = []
    thread = StoreThread(MemoryStore(), asyncio.get_running_loop(), durable.append)  # not started: we look at its queue
    tickets = [thread.write(Write(f"doc{i}", b"\x00\x00", at=1.0)) for i in range(5)]
    assert tickets == [1, 2, 3, 4, 5]
    assert thread._queue.qsize() == 0
    await asyncio.sleep(0)  # the next iteration: frames queued by the writer's iteration go out
    assert thread._queue.qsize() == 0
    await asyncio.sleep(0)
    assert thread._queue.qsize() == 1
    assert [w.name for _, w in thread._queue.get_nowait()] == ["doc0", "doc1", "doc2", "doc3", "doc4"]


async def test_the_writes_of_one_loop_iteration_are_one_commit() -> None:
    store = CountingStore()
    thread, durable = await started(store)
    for i in range(5):
        thread.write(Write(f"doc{i}", b"\x00\x00", at=1.0))
    await wait_durable(thread, 5)
    assert store.batches == [["doc0", "doc1", "doc2", "doc3", "doc4"]]
    assert durable == [5]
    thread.write(Write("later", b"\x00\x00", at=2.0))
    await wait_durable(thread, 6)
    assert store.batches[-1] == ["later"] and thread.batches == 2
    await thread.stop()


async def test_a_call_sees_every_write_before_it() -> None:
    thread, _ = await started(MemoryStore())
    thread.write(Write("a", b"\x00\x00", at=1.0))
    names = await thread.call(lambda store: [d.name for d in store.documents()])
    assert names == ["a"]
    thread.write(Write("b", b"\x00\x00", at=1.0))
    await thread.stop()  # commits what is held
    assert [d.name for d in thread.store.documents()] == ["a", "b"]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="SCHED_BATCH is a Linux scheduling policy")
async def test_the_store_thread_runs_under_sched_batch() -> None:
    thread, _ = await started(MemoryStore())
    policy = await thread.call(lambda store: os.sched_getscheduler(0))  # runs on the store thread
    assert policy == os.SCHED_BATCH
    assert os.sched_getscheduler(0) != os.SCHED_BATCH  # the event loop's thread is untouched
    await thread.stop()


async def test_relayed_writes_wait_for_the_relayed_timer(monkeypatch: pytest.MonkeyPatch) -> None:
    """A change that only passed through is not a commit of its own: it is
    handed over when the relayed timer runs out, not in the next iteration."""
    monkeypatch.setattr(storage, "RELAYED_COMMIT_DELAY", 0.2)
    loop = asyncio.get_running_loop()
    store = CountingStore()
    thread, durable = await started(store)
    start = loop.time()
    thread.write(Write("relayed", b"\x00\x00", at=1.0), urgent=False)
    thread.write(Write("relayed", b"\x00\x00", at=1.0), urgent=False)
    for _ in range(5):
        await asyncio.sleep(0)
    assert thread._queue.qsize() == 0 and thread.backlog() == 2
    await wait_durable(thread, 2)
    assert loop.time() - start >= 0.2
    assert store.batches == [["relayed", "relayed"]] and durable == [2]
    await thread.stop()


async def test_an_urgent_write_takes_the_relayed_writes_before_it_along() -> None:
    """In ticket order, in one commit: a local edit on top of a relayed
    one is never on disk without it."""
    store = CountingStore()
    thread, durable = await started(store)
    thread.write(Write("relayed", b"\x00\x00", at=1.0), urgent=False)
    await asyncio.sleep(0.01)  # a later iteration
    assert thread.backlog() == 1
    thread.write(Write("local", b"\x00\x00", at=1.0))
    thread.write(Write("relayed-after", b"\x00\x00", at=1.0), urgent=False)  # same iteration: goes too
    await wait_durable(thread, 3)
    assert store.batches == [["relayed", "local", "relayed-after"]] and durable == [3]
    assert thread._relayed_timer is None
    await thread.stop()


async def test_expedite_and_stop_commit_what_is_held() -> None:
    store = CountingStore()
    thread, _ = await started(store)
    thread.write(Write("relayed", b"\x00\x00", at=1.0), urgent=False)
    thread.expedite()
    await wait_durable(thread, 1)
    thread.write(Write("held", b"\x00\x00", at=1.0), urgent=False)
    await thread.stop()
    assert store.batches == [["relayed"], ["held"]]


async def test_many_relayed_writes_are_handed_over_without_waiting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(storage, "RELAYED_HELD_MAX", 10)
    thread = StoreThread(MemoryStore(), asyncio.get_running_loop(), lambda ticket: None)  # not started
    for _ in range(10):
        thread.write(Write("relayed", b"\x00\x00", at=1.0), urgent=False)
    assert thread._queue.qsize() == 1 and not thread._held
    assert thread._relayed_timer is None
