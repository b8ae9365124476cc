"""The fetch scheduler (crdt.fetches) on its own: who is asked for what."""

from __future__ import annotations

from crdt.fetches import Fetches


def test_each_document_is_asked_on_one_link_and_the_window_spreads_them() -> None:
    fetches = Fetches(window=2, timeout=10.0)
    for name in ("a", "b", "c", "d"):
        fetches.offer(1, name, b"x", push=True)
        fetches.offer(2, name, b"x", push=True)
    assert [n for n, _ in fetches.take(1, 0.0)] == ["a", "b"]
    assert [n for n, _ in fetches.take(2, 0.0)] == ["c", "d"]  # a and b are asked on link 1
    assert fetches.take(1, 0.0) == []  # its window is full
    assert fetches.answered(1, "a") == {2: (b"x", True)}  # link 2 is left to compare
    assert fetches.take(1, 0.0) == []  # nothing left that is not asked elsewhere


def test_an_expired_ask_moves_on_and_the_slow_link_takes_its_next_document() -> None:
    fetches = Fetches(window=1, timeout=1.0)
    fetches.offer(1, "a", b"x", push=True)
    fetches.offer(1, "b", b"y", push=True)
    fetches.offer(2, "a", b"x", push=True)
    assert [n for n, _ in fetches.take(1, 0.0)] == ["a"]
    touched = fetches.expire(1.5)
    assert touched == {1, 2}
    assert [n for n, _ in fetches.take(2, 1.5)] == ["a"]
    assert [n for n, _ in fetches.take(1, 1.5)] == ["b"]  # its window has room again


def test_a_lost_link_gives_its_asks_to_the_other_candidates() -> None:
    fetches = Fetches(window=4, timeout=10.0)
    fetches.offer(1, "a", b"x", push=True)
    fetches.offer(2, "a", b"x", push=True)
    fetches.offer(1, "only-on-1", b"z", push=True)
    fetches.take(1, 0.0)
    assert fetches.lost(1) == {2}
    assert [n for n, _ in fetches.take(2, 0.0)] == ["a"]
    assert "only-on-1" not in fetches.wants  # no one else can give it
