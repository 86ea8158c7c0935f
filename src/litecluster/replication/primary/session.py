"""One connected replica as the primary sees it: what it said at hello, what it acknowledged,
and the tasks streaming to it."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

from litecluster.engine.position import Position
from litecluster.replication.primary.lineage import Start
from litecluster.replication.protocol import Pos


@dataclass
class Session:
    """One connected replica, as the primary sees it."""

    node_id: str
    peer: str
    http: str
    hello: dict[str, Pos]
    promotable: bool = True
    """What the replica declared in its HELLO: a durable node that may be promoted. Only such
    a replica's acknowledgements count in synchronous mode."""
    kind: str = "node"
    connected_at: float = field(default_factory=time.time)
    acked: dict[str, Position] = field(default_factory=dict)
    acked_at: float = 0.0
    round: int = 0
    """The newest round of :meth:`ReadConfirm.round <litecluster.replication.primary.readconfirm.ReadConfirm.round>` this replica answered."""
    sent: dict[str, int] = field(default_factory=dict)
    state: str = "streaming"
    snapshot_wanted: set[str] = field(default_factory=set)
    set_aside: dict[str, Start] = field(default_factory=dict)
    """Databases whose replica must set its copy aside before the snapshot (see lineage)."""
    verified: set[str] = field(default_factory=set)
    """Databases whose replica has shown a position on this primary's history since its
    stream (re)started: only then do its acknowledgements count (see lineage)."""
    snapshotting: str = ""
    tasks: list[asyncio.Task[None]] = field(default_factory=list)
    closed: asyncio.Event = field(default_factory=asyncio.Event)
    writer: asyncio.StreamWriter | None = None
    left: bool = False
    """The replica said goodbye (a clean close): it is not kept among the departed."""
    disconnected_at: float = 0.0
