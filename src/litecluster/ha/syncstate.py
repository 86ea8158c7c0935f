"""Synchronous replication state shared through etcd, and the promotion rule it implies.

In synchronous mode (``sync_replicas = K``) a write is acknowledged once K replicas of the
*sync set* hold it. The primary publishes that set in etcd before it counts a replica's
acknowledgements, so an election always knows which replicas may hold acknowledged writes:
with N replicas in the set, any N-K+1 of them include at least one of the K that hold each
acknowledged write (DESIGN.md; Redis with WAIT but without this rule lost acknowledged writes
under Jepsen). A node may therefore be promoted only when

- at least N-K+1 members of the published set are alive (they published their positions), and
- its position is at least the highest position among them, database by database, and
- its position is at least the *floor*: what the primary that published the set held when it
  was promoted. Until a replica of the new primary catches up, only the new primary holds the
  writes acknowledged in earlier epochs, and the set (empty at first) cannot say so.

Keeping the set small keeps failover available: a replica that disconnected stops counting at
once, and leaves the published set once every write it could have acknowledged is held by K
other members (checked against the primary's head when it was seen gone).

Pure functions and a dataclass, so the rule is tested without etcd.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from litecluster.errors import ProtocolError


@dataclass(frozen=True)
class SyncState:
    """What the primary of ``epoch`` published: its K, the sync set, and its floor."""

    epoch: int
    k: int
    members: frozenset[str] = frozenset()
    floor: dict[str, int] = field(default_factory=dict)

    def encode(self) -> bytes:
        d = {"epoch": self.epoch, "k": self.k, "members": sorted(self.members), "floor": self.floor}
        return json.dumps(d).encode()

    @classmethod
    def decode(cls, raw: bytes) -> SyncState:
        try:
            d = json.loads(raw)
            return cls(
                epoch=int(d["epoch"]),
                k=int(d["k"]),
                members=frozenset(str(m) for m in d["members"]),
                floor={str(db): int(t) for db, t in d["floor"].items()},
            )
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise ProtocolError("malformed sync state in etcd", value=raw[:200]) from exc


def promotion_blocked(
    state: SyncState | None, alive: dict[str, dict[str, int]], me: dict[str, int]
) -> str | None:
    """Why a node at positions ``me`` may not be promoted, or None when it may.

    ``alive`` maps every member that published a record this round (eligible or not) to its
    positions per database; ``me`` is the candidate's own positions.
    """
    if state is None or state.k <= 0:
        return None
    for db, txid in state.floor.items():
        if me.get(db, 0) < txid:
            return f"behind the floor of epoch {state.epoch}: {db} at {me.get(db, 0)} < {txid}"
    live = [m for m in state.members if m in alive]
    needed = len(state.members) - state.k + 1
    if len(live) < needed:
        return (
            f"only {len(live)} of the sync set {sorted(state.members)} are alive; "
            f"{needed} are needed to know every acknowledged write"
        )
    for m in live:
        for db, txid in alive[m].items():
            if me.get(db, 0) < txid:
                return f"{m} is ahead on {db} ({txid} > {me.get(db, 0)})"
    return None


def elect(
    state: SyncState | None, records: list[dict[str, Any]], alive: dict[str, dict[str, int]]
) -> str | None:
    """The node id that should take the leader key among member ``records`` (each with its
    positions), or None when none may; ``alive`` holds the positions of the members known to
    be alive (see :func:`promotion_blocked`).

    Only eligible candidates that the N-K+1 rule allows compete: one that fails it on any
    database must not make a node that passes it stand aside (nobody would be elected). Among
    them: the most data over all databases, then main's txid, then the highest priority, then
    the smallest node id.
    """
    candidates = [
        m for m in records
        if m.get("eligible") and not m.get("nofailover")
        and promotion_blocked(state, alive, member_positions(m)) is None
    ]  # fmt: skip

    def rank(m: dict[str, Any]) -> tuple[int, int, int, str]:
        positions = member_positions(m)
        total = sum(positions.values())
        return (-total, -positions.get("main", 0), -int(m.get("priority", 0)), str(m["node_id"]))

    return str(min(candidates, key=rank)["node_id"]) if candidates else None


def droppable(gone_at: dict[str, int], counted_acks: list[dict[str, int]], k: int) -> bool:
    """Whether a replica seen gone when the primary's heads were ``gone_at`` may leave the
    sync set: every database has K counted replicas that acknowledged at least that head."""
    for db, head in gone_at.items():
        holders = sum(1 for acks in counted_acks if acks.get(db, 0) >= head)
        if holders < k:
            return False
    return True


def member_positions(record: dict[str, Any]) -> dict[str, int]:
    """A member record's positions per database (empty when the record has none)."""
    raw = record.get("positions")
    if not isinstance(raw, dict):
        return {}
    return {str(db): int(t) for db, t in raw.items() if isinstance(t, int)}
