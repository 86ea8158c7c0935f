"""Replicas that disconnected, as the primary's status and metrics still show them.

A replica node that lost its connection is worth seeing for a while (an operator looks for
it, its lag alerts), but an application's embedded replicas come and go with every deploy:
kept forever they would fill ``/status`` and give ``/metrics`` one label set per process ever
started. A departed replica is shown for ``retention`` seconds (``replica_retention``), then
dropped and counted (``replicas_expired``); one that said goodbye (a clean close of an
embedded replica) is dropped at once and counted as ``replicas_left``.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from litecluster.replication.primary.session import Session
from litecluster.replication.stats import Stats

MAX_DEPARTED = 256
"""Departed replicas kept at most, retention or not (the most recent ones)."""


class Departed:
    def __init__(self, retention: float, stats: Stats, clock: Callable[[], float] = time.time):
        self.retention = retention
        self.stats = stats
        self.clock = clock
        self._sessions: dict[str, Session] = {}

    def add(self, session: Session) -> None:
        """``session`` ended: keep it for status, unless it deregistered."""
        session.state = "disconnected"
        if session.left:
            self.stats.replicas_left += 1
            return
        session.disconnected_at = self.clock()
        self._sessions.pop(session.node_id, None)
        self._sessions[session.node_id] = session
        while len(self._sessions) > MAX_DEPARTED:
            del self._sessions[next(iter(self._sessions))]
            self.stats.replicas_expired += 1

    def pop(self, node_id: str) -> None:
        """The replica is back (connected again)."""
        self._sessions.pop(node_id, None)

    def current(self) -> list[Session]:
        """The departed replicas still within the retention (the others are dropped now)."""
        cutoff = self.clock() - self.retention
        for node_id in [k for k, s in self._sessions.items() if s.disconnected_at < cutoff]:
            del self._sessions[node_id]
            self.stats.replicas_expired += 1
        return list(self._sessions.values())
