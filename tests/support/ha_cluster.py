"""What the fault tests do to a cluster: find the primary, write a key, read the keys back
(history.py runs the recorded workloads, checker.py checks them)."""

from __future__ import annotations

import itertools

import httpx

from litecluster.cli.localcluster import LocalNode
from support import wait_for
from support.history import SCHEMA

TTL = 2
MARGIN = max(0.5, TTL / 4)
"""EtcdLeadership's margin: a primary's safe deadline is keepalive sent + TTL - MARGIN."""


def roles(members: list[LocalNode]) -> dict[str, str]:
    out = {}
    for m in members:
        if m.running:
            try:
                out[m.node_id] = m.status(timeout=2)["node"]["role"]
            except httpx.HTTPError:
                out[m.node_id] = "unreachable"
    return out


def the_primary(members: list[LocalNode]) -> LocalNode | None:
    r = roles(members)
    primaries = [m for m in members if r.get(m.node_id) == "primary"]
    assert len(primaries) <= 1, f"two primaries at once: {r}"
    return primaries[0] if primaries else None


def execute(node: LocalNode, statements: list[object], timeout: float = 5) -> httpx.Response:
    return httpx.post(f"http://{node.http}/db/execute", json=statements, timeout=timeout)


def write(node: LocalNode, key: str) -> bool:
    """Insert ``key``; True only when the node acknowledged it."""
    try:
        r = execute(node, [["INSERT INTO t(k) VALUES(?)", key]])
    except httpx.HTTPError:
        return False
    return r.status_code == 200 and "error" not in r.json()["results"][0]


def keys(node: LocalNode) -> set[str]:
    got = httpx.get(f"http://{node.http}/db/query", params={"q": "SELECT k FROM t"}).json()
    return {row[0] for row in got["results"][0].get("values", [])}


def first_primary(members: list[LocalNode], *, with_replicas: bool = True) -> LocalNode:
    """The elected primary once the workloads' tables exist (and, by default, the others
    follow it).

    In synchronous mode the tables are acknowledged only once a replica holds them, so the
    creation (idempotent) is retried until it is.
    """
    wait_for(lambda: the_primary(members) is not None, 30, "a first primary")
    p = the_primary(members)
    assert p is not None
    if with_replicas:
        others = [m for m in members if m is not p]
        wait_for(lambda: all(roles([o])[o.node_id] == "replica" for o in others), 30, "replicas")
    wait_for(lambda: _created(p), 30, "the tables")
    return p


def _created(node: LocalNode) -> bool:
    try:
        r = httpx.post(f"http://{node.http}/db/execute", json=SCHEMA,
                       params={"transaction": "true"}, timeout=5)  # fmt: skip
    except httpx.HTTPError:
        return False
    return r.status_code == 200 and not any("error" in x for x in r.json()["results"])


def _holds(node: LocalNode, key: str) -> bool:
    try:
        return key in keys(node)
    except (httpx.HTTPError, ValueError, KeyError):
        return False


def wait_for_writable_primary(candidates: list[LocalNode], key: str) -> LocalNode:
    """The node that is primary and acknowledges a write of ``key`` (waits for an election)."""
    found: list[LocalNode] = []
    attempts = itertools.count()

    def writable() -> bool:
        p = the_primary([c for c in candidates if c.running])
        if p is None:
            return False
        # An attempt that timed out waiting for the sync replicas may still have committed
        # its row: the same key then fails as a duplicate, and a new key's acknowledgement
        # (the log is replicated in order) covers it.
        if write(p, key) or (_holds(p, key) and write(p, f"{key}-{next(attempts)}")):
            found.append(p)
            return True
        return False

    wait_for(writable, 30, "a primary that acknowledges writes")
    return found[0]
