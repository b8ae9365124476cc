"""The protocol's timing and sizing, in one frozen value every part reads."""

from __future__ import annotations

from dataclasses import dataclass, field

from crdt.membership import Backoff


@dataclass(frozen=True, slots=True)
class Config:
    """Timing and sizing of the protocol. The defaults suit a LAN or loopback;
    every duration is in seconds."""

    active_target: int = 5  # links this peer keeps open (dials while below, sheds one per shuffle above)
    active_max: int = 8  # inbound links beyond this are refused with a peer sample
    known_limit: int = 256  # addresses remembered (the passive view)
    ping_interval: float = 2.0  # a link that sent nothing this long gets a PING
    suspect_after: float = 3.5  # silence before a link is shown as suspected
    dead_after: float = 5.0  # silence before a link is closed and replaced
    ae_interval: float = 1.0  # one anti-entropy round this often (a "round" of gossip)
    ae_idle_factor: int = 16  # a quiet peer's rounds slow down to this many ae_intervals apart (1: never)
    ae_fanout: int = 1  # links that get our digest each round (the next ones of the current pass)
    exchange_interval: float = 10.0  # peer exchange with one random link this often
    shuffle_interval: float = 30.0  # one link replaced by one to a random known peer this often
    stuck_after: float = 2.0  # an update waiting this long for its causes triggers a sync
    sync_timeout: float = 10.0  # a document's sync on a link counts as under way this long at most
    fetch_window: int = 32  # documents asked for on one link and not yet answered, at most (catching up)
    hello_timeout: float = 5.0  # a link that has not said HELLO by then is closed
    lazy_interval: float = 0.2  # IHAVEs for the lazy links are sent in batches this often
    graft_after: float = 0.1  # what an IHAVE named and has not come by then is asked for (GRAFT)
    swap_after: float = 0.05  # an UPDATE this much later than an IHAVE naming it: the lazy link is the faster path
    backoff: Backoff = field(default_factory=Backoff)
    push: bool = True  # False leaves spreading to anti-entropy alone (to measure it)
    unload_after: float = 300.0  # a document with no browser and no traffic this long is unloaded
    max_loaded: int = 1000  # documents held in memory, at most, beyond those in use
