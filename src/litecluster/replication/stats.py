"""Counters a node keeps for ``/status`` and ``/metrics`` (plain ints: the hot path only adds)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field


@dataclass
class Stats:
    records_shipped: int = 0
    bytes_shipped: int = 0
    records_applied: int = 0
    bytes_applied: int = 0
    snapshots_sent: int = 0
    snapshots_installed: int = 0
    snapshot_bytes_sent: int = 0
    snapshot_bytes_received: int = 0
    snapshot_bytes_expected: int = 0
    reconnects: int = 0
    replicas_left: int = 0
    """Replicas that closed their connection cleanly (deregistered at once)."""
    replicas_expired: int = 0
    """Disconnected replicas dropped from status and metrics past ``replica_retention``."""
    errors: Counter[str] = field(default_factory=Counter)

    def as_dict(self) -> dict[str, object]:
        out: dict[str, object] = {k: v for k, v in self.__dict__.items() if k != "errors"}
        out["errors"] = dict(self.errors)
        return out

    def error(self, exc: BaseException) -> None:
        self.errors[type(exc).__name__] += 1
