"""The document naming rule, shared by the HTTP routes, the WebSocket endpoint
and the store: 1–128 letters, digits, ``-``, ``_`` or ``.``, not starting with
``.`` (so a name is always a safe file name and never ``.`` or ``..``)."""

from __future__ import annotations

import re

from crdt.errors import InvalidName

MAX_NAME_LENGTH = 128
NAME_RULE = (
    "a document name is 1 to 128 characters of letters A-Z a-z, digits 0-9, "
    "'-', '_' or '.', and does not start with '.'"
)
_NAME = re.compile(r"[A-Za-z0-9_\-][A-Za-z0-9_.\-]{0,127}")


def validate_name(name: object) -> str:
    """Return *name* if it follows the rule, else raise :class:`InvalidName`."""
    if not isinstance(name, str) or _NAME.fullmatch(name) is None:
        raise InvalidName(f"invalid document name {name!r}: {NAME_RULE}")
    return name


def is_valid_name(name: object) -> bool:
    return isinstance(name, str) and _NAME.fullmatch(name) is not None


# Keys of documents a person never names: they are not listed, and no HTTP
# route reaches them.
RESERVED_KEYS = frozenset({".forgotten"})


def is_valid_key(key: object) -> bool:
    """A document's key on the wire and in the store: a valid name, or one
    of the reserved keys."""
    return is_valid_name(key) or key in RESERVED_KEYS
