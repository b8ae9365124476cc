"""The document naming rule (crdt/names.py)."""

from __future__ import annotations

import pytest

from crdt.errors import InvalidName
from crdt.names import MAX_NAME_LENGTH, NAME_RULE, is_valid_name, validate_name

VALID = [
    "a",
    "Z",
    "0",
    "notes",
    "Meeting-Notes_2024.06.01",
    "-dash-first",
    "_underscore_first",
    "a.",
    "a..b",
    "x" * MAX_NAME_LENGTH,
]

INVALID = [
    "",
    "x" * (MAX_NAME_LENGTH + 1),
    ".hidden",
    ".",
    "..",
    "a/b",
    "/abs",
    "a\\b",
    "with space",
    " leading",
    "trailing ",
    "tab\t",
    "new\nline",
    "end\n",
    "café",
    "日本語",
    "Ａ",  # fullwidth A
    "a\x00b",
    "a:b",
    "a%2Fb",
    "a?b",
    "a#b",
]


@pytest.mark.parametrize("name", VALID)
def test_valid_names(name: str) -> None:
    assert validate_name(name) == name
    assert is_valid_name(name)


@pytest.mark.parametrize("name", INVALID)
def test_invalid_names(name: str) -> None:
    assert not is_valid_name(name)
    with pytest.raises(InvalidName) as refused:
        validate_name(name)
    assert repr(name) in str(refused.value)
    assert NAME_RULE in str(refused.value)


@pytest.mark.parametrize("name", [None, 1, b"notes", ["notes"], object()])
def test_non_strings_are_invalid(name: object) -> None:
    assert not is_valid_name(name)
    with pytest.raises(InvalidName):
        validate_name(name)


def test_the_length_limit_is_128() -> None:
    assert MAX_NAME_LENGTH == 128
    assert is_valid_name("a" * 128)
    assert not is_valid_name("a" * 129)
