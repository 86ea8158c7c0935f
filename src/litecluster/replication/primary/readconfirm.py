"""What a ``strong`` or ``linearizable`` read on the primary waits for after it ran, in
synchronous mode (server/strongread.py decides when to ask):

- :meth:`ReadConfirm.replicated`: every commit the primary's file holds is held by
  ``sync_replicas`` replicas. The file already holds writes committed here that still wait for
  their acknowledgements; a failover before a replica received one loses it (its client is told
  ``indeterminate``), so a read that showed it would have shown a write that is then gone.
- :meth:`ReadConfirm.round`: in a static cluster, which has no coordinator, ``sync_replicas``
  replicas vouch that they still follow this primary at its epoch after the read ran: each is
  sent a heartbeat numbered with a new round and answers it at once, naming the round. An
  acknowledgement that merely arrives after the read would not do: it may have waited in this
  process's socket buffer while the process was paused.

In asynchronous mode both answer True at once: no replica holds a promise to vouch for.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Protocol

from litecluster.engine.position import Position
from litecluster.replication.config import ReplicationConfig
from litecluster.replication.primary.database import PrimaryDb
from litecluster.replication.primary.session import Session
from litecluster.replication.protocol import Heartbeat, encode_message


class _Primary(Protocol):
    config: ReplicationConfig
    epoch: int
    dbs: dict[str, PrimaryDb]

    def acked_by(self, name: str, position: Position) -> int: ...

    def counted_sessions(self) -> list[Session]: ...

    async def wait_acks(self, done: Callable[[], bool]) -> bool: ...


class ReadConfirm:
    """One per primary term (the round numbers and the watermark hold for its connections)."""

    def __init__(self, primary: _Primary) -> None:
        self.primary = primary
        self._synced: dict[str, int] = {}
        """Per database, the highest txid seen held by ``sync_replicas`` replicas: not waited
        for again (held stays held, even once those replicas have gone)."""
        self._rounds = 0

    async def replicated(self, name: str) -> bool:
        """Whether every commit of database ``name`` here is held by ``sync_replicas``
        replicas, waiting for their acknowledgements up to ``sync_timeout``."""
        p = self.primary
        need = p.config.sync_replicas
        db = p.dbs.get(name)
        if not need or db is None:
            return True
        # A commit is visible before the writer captured it: capture it now (a no-op when the
        # writer got there first), so that the head covers everything the read could see.
        await asyncio.to_thread(db.capture.poll)
        head = db.head
        if head <= self._synced.get(name, 0):
            return True
        # Epoch 0: judged by the txid alone. The acknowledgements counted are already on this
        # primary's history (an ack from another lineage is not recorded), and everything up
        # to the head is this history's, whichever epoch wrote it.
        upto = Position(0, head)
        if not await p.wait_acks(lambda: p.acked_by(name, upto) >= need):
            return False
        self._synced[name] = max(head, self._synced.get(name, 0))
        return True

    async def round(self) -> bool:
        """Whether ``sync_replicas`` replicas answered a new round (within ``sync_timeout``)."""
        p = self.primary
        need = p.config.sync_replicas
        if not need:
            return True
        self._rounds += 1
        n = self._rounds
        beat = encode_message(Heartbeat(p.epoch, {k: db.head for k, db in p.dbs.items()}, n))
        for session in p.counted_sessions():
            if session.writer is not None and not session.writer.is_closing():
                session.writer.write(beat)
        return await p.wait_acks(lambda: sum(s.round >= n for s in p.counted_sessions()) >= need)
