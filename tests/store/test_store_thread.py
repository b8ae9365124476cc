"""The store thread: writes of one loop iteration are handed over and
committed together, calls see every earlier write, and the thread does not
preempt the event loop when woken."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Sequence

import pytest

from crdt.store import MemoryStore, Store, Write
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
    async with asyncio.timeout(10):
        while thread.durable_ticket < ticket:
            await asyncio.sleep(0.001)


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
