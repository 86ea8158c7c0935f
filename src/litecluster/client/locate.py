"""Finding the current primary of a cluster, for an embedded replica that follows the cluster
rather than one address.

Three sources, asked together in each round: etcd's leader key (as the nodes' HA loop writes it,
:func:`litecluster.ha.etcd_leadership.read_leader`), each seed node's ``/status`` (a primary
names itself; a replica names the primary it streams from) and, outside this module, the
replication port's refusal (a replica's port answers ``primary is HOST:PORT``). The answer
with the highest epoch wins, a primary speaking for itself before a replica speaking of it: a
deposed primary that has not noticed yet still says "primary", with its old epoch.
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass
from typing import Any

import httpx

from litecluster.ha.etcd import EtcdAccess, EtcdClient
from litecluster.ha.etcd_leadership import read_leader
from litecluster.replication.config import Address
from litecluster.replication.tls import client_context

_REFUSAL = re.compile(r"primary is (\S+)")


@dataclass(frozen=True)
class Found:
    """A primary some source named."""

    listen: Address
    """Its replication address (where the follower connects)."""
    http: str
    """Its HTTP address (HOST:PORT; empty when the source did not say): where writes go."""
    epoch: int
    """The epoch of its term as the source knows it (0: unknown)."""
    source: str
    itself: bool = False
    """The primary said so of itself (its own ``/status``, or the leader key it holds)."""


def from_refusal(text: str) -> Found | None:
    """The primary a replica's replication port named when it refused the connection."""
    m = _REFUSAL.search(text)
    if m is None or m.group(1) == "unknown":
        return None
    try:
        return Found(Address.parse(m.group(1)), "", 0, "refusal")
    except ValueError:
        return None


def best(found: list[Found], floor: int) -> Found | None:
    """The answer to follow: highest epoch, then the primary's own word; none below ``floor``
    (the highest epoch this replica has acted on: epoch fencing, as for nodes)."""
    usable = [f for f in found if f.epoch >= floor or f.epoch == 0]
    return max(usable, key=lambda f: (f.epoch, f.itself), default=None)


def _from_status(seed: str, st: dict[str, Any], cluster: str) -> Found | None:
    node = st.get("node") or {}
    if node.get("cluster", cluster) != cluster:
        raise LookupError(f"{seed} is a node of cluster {node.get('cluster')!r}, not {cluster!r}")
    if node.get("role") == "primary":
        return Found(Address.parse(str(node["listen"])), str(node.get("http", "")),
                     int(node.get("epoch", 0)), seed, itself=True)  # fmt: skip
    up = st.get("upstream") or {}
    if up.get("primary") and up.get("state") == "streaming":
        return Found(Address.parse(str(up["primary"])), str(up.get("primary_http") or ""),
                     int(up.get("epoch", 0)), seed)  # fmt: skip
    return None


class Locator:
    """Asks the seeds and etcd who the primary is; lives on the embedded replica's loop."""

    def __init__(
        self,
        seeds: list[str],
        etcd: list[str],
        cluster: str,
        *,
        headers: dict[str, str],
        ca: str | None,
        timeout: float = 1.0,
        etcd_access: EtcdAccess | None = None,
    ) -> None:
        self.seeds = seeds
        self.cluster = cluster
        self.timeout = timeout
        self.last_error = ""
        """Why the last round found no primary (each source's failure, joined)."""
        self._headers = headers
        self._verify = client_context(ca, tls=True)
        self._http: httpx.AsyncClient | None = None
        self._etcd = EtcdClient(etcd, timeout=timeout, access=etcd_access) if etcd else None

    async def find(self) -> list[Found]:
        """Every answer of one round (asked at once, each bounded by the timeout)."""
        if self._http is None:
            self._http = httpx.AsyncClient(timeout=self.timeout, verify=self._verify,
                                           headers=self._headers)  # fmt: skip
        asks = [self._status(seed) for seed in self.seeds]
        if self._etcd is not None:
            asks.append(self._leader())
        got = await asyncio.gather(*asks, return_exceptions=True)
        errors = [f"{type(g).__name__}: {g}" for g in got if isinstance(g, BaseException)]
        found = [g for g in got if isinstance(g, Found)]
        self.last_error = "" if found else "; ".join(errors) or "no node names a primary"
        return found

    async def _status(self, seed: str) -> Found | None:
        resp = await self._http.get(seed.rstrip("/") + "/status")  # type: ignore[union-attr]
        if resp.status_code in (401, 403):
            raise PermissionError(f"{seed} refused the credentials (status {resp.status_code})")
        resp.raise_for_status()
        return _from_status(seed, resp.json(), self.cluster)

    async def _leader(self) -> Found | None:
        assert self._etcd is not None
        leader = await read_leader(self._etcd, self.cluster)
        if leader is None:
            return None
        return Found(leader.listen, leader.http, leader.epoch, "etcd", itself=True)

    async def close(self) -> None:
        if self._http is not None:
            await self._http.aclose()
        if self._etcd is not None:
            await self._etcd.close()
