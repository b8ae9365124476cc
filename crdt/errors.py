"""Errors of the Meshpad core, named by who is to blame.

* :class:`RemoteProtocolError` — bytes from the network (a browser or a peer)
  broke the protocol. The only right reaction is to close that connection; the
  document is left as it was.
* :class:`LocalProtocolError` — our own code misused an API (a bug here).
* :class:`StoreError` / :class:`StoreCorrupt` — the local store failed or holds
  data that does not decode; the message names the file.
"""

from __future__ import annotations


class MeshpadError(Exception):
    """Base class of every error raised on purpose by Meshpad."""


class RemoteProtocolError(MeshpadError):
    """The remote side sent something invalid; close its connection."""


class LocalProtocolError(MeshpadError):
    """Meshpad called an API the wrong way: a bug in this program."""


class InvalidName(MeshpadError):
    """A document name that does not follow the naming rule."""


class StoreError(MeshpadError):
    """The store could not do what was asked."""


class StoreCorrupt(StoreError):
    """The store holds data that cannot be read back; nothing was guessed."""


def is_crdt_error(exc: BaseException) -> bool:
    """True for what pycrdt raises on data it cannot integrate: ordinary
    exceptions, and the Rust ``PanicException`` (a BaseException, so that it
    is not caught by accident elsewhere)."""
    return isinstance(exc, Exception) or type(exc).__name__ == "PanicException"
