"""MemoryStore runs the Store contract; a "restart" keeps the same object."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
from contract import StoreContract

from crdt.store import MemoryStore, Store, Write


class MemoryHarness:
    def open(self) -> Store:
        return MemoryStore()

    def reopen(self, store: Store) -> Store:
        return store

    def crash_tearing(self, store: Store, batch: Sequence[Write]) -> Store:
        assert isinstance(store, MemoryStore)
        store.write(batch)
        store.tear_last_write()
        return store


class TestMemoryStore(StoreContract):
    @pytest.fixture
    def harness(self) -> MemoryHarness:
        return MemoryHarness()
