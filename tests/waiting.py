"""Waiting on a condition with a deadline, never on a fixed sleep: the one
way the tests wait for something another task, thread or process does.

* :func:`wait_for` is awaited in a coroutine: the event loop runs between
  polls, so the condition may wait on work of the same loop (a server under
  ``aiohttp_client``, a WebSocket reader), and it may itself be a coroutine
  (a question put to a browser page).
* :func:`wait_for_blocking` blocks the calling thread between polls: for
  conditions that only other processes make true (``meshpad serve``, a
  browser's peers), asked over HTTP. Its default timeout is longer: a peer
  process answers more slowly than a task of the test's own loop.

Both poll *condition* every *interval* seconds until it returns something
truthy, and return that. When *timeout* seconds pass first they raise
``AssertionError`` naming *what* was awaited; *what* may be a function,
called only then, to say what the state was at the deadline.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")

What = str | Callable[[], str]


def _timed_out(timeout: float, what: What) -> AssertionError:
    described = what() if callable(what) else what
    return AssertionError(f"timed out after {timeout}s waiting for {described}")


async def wait_for(
    condition: Callable[[], T | Awaitable[T]],
    timeout: float = 10.0,
    what: What = "condition",
    interval: float = 0.01,
) -> T:
    """Until *condition* (a function, or a coroutine function) is truthy;
    returns its value. Raises ``AssertionError`` after *timeout* seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return value  # type: ignore[return-value]
        if time.monotonic() > deadline:
            raise _timed_out(timeout, what)
        await asyncio.sleep(interval)


def wait_for_blocking(
    condition: Callable[[], T],
    timeout: float = 20.0,
    what: What = "condition",
    interval: float = 0.05,
) -> T:
    """Until *condition* is truthy, blocking this thread between polls;
    returns its value. Raises ``AssertionError`` after *timeout* seconds."""
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        if time.monotonic() > deadline:
            raise _timed_out(timeout, what)
        time.sleep(interval)
    return value
