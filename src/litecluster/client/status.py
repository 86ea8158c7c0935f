"""``litecluster status``: ask a node over HTTP, and its primary, for the cluster's state."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Any

import httpx

from litecluster.client.sync import auth_headers
from litecluster.errors import NodeError
from litecluster.replication.tls import client_context


@dataclass(frozen=True)
class NodeRow:
    node_id: str
    role: str
    address: str
    epoch: int
    db: str
    txid: int
    checksum: str
    lag_records: int | None
    lag_ms: float | None
    state: str

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def _url(http: str, scheme: str) -> str:
    return http if "://" in http else f"{scheme}://{http}"


def fetch(http: str, *, ca: str | None = None, timeout: float = 3.0,
          headers: dict[str, str] | None = None) -> dict[str, Any]:  # fmt: skip
    """A node's ``/status``; ``headers`` carry the credentials (see :func:`auth_headers`)."""
    scheme = "https" if ca else "http"
    url = _url(http, scheme).rstrip("/") + "/status"
    try:
        verify = client_context(ca, tls=True)
        resp = httpx.get(url, timeout=timeout, verify=verify, headers=headers)
        resp.raise_for_status()
        data: dict[str, Any] = resp.json()
    except httpx.HTTPError as exc:
        raise NodeError(
            f"cannot get the status of {url}: {exc}",
            hint=_hint(exc),
        ) from None
    return data


def _hint(exc: httpx.HTTPError) -> str:
    if isinstance(exc, httpx.HTTPStatusError) and exc.response.status_code in (401, 403):
        return ("pass the cluster token: --token-file FILE or LITECLUSTER_TOKEN "
                "(see docs/security.md)")  # fmt: skip
    return "check the node's --http address (and --ca for a TLS node)"


def cli_headers(token_file: str | None) -> dict[str, str]:
    """The credentials of a command-line tool: the first token of ``token_file``, else the
    ``LITECLUSTER_TOKEN`` environment variable (none: a node with ``http_auth`` off)."""
    return auth_headers(os.environ.get("LITECLUSTER_TOKEN") or None, token_file)


def cluster_status(http: str, *, ca: str | None = None,
                   headers: dict[str, str] | None = None) -> dict[str, Any]:  # fmt: skip
    """The node's status, plus its primary's when asked a replica (the primary knows every
    replica's acknowledged position and lag)."""
    first = fetch(http, ca=ca, headers=headers)
    out: dict[str, Any] = {"asked": first, "primary": None, "primary_error": None}
    if first["node"]["role"] == "primary":
        out["primary"] = first
        return out
    primary_http = first.get("upstream", {}).get("primary_http")
    if primary_http:
        try:
            out["primary"] = fetch(primary_http, ca=ca, headers=headers)
        except NodeError as exc:
            out["primary_error"] = exc.message
    return out


def node_state(st: dict[str, Any]) -> str:
    return str(st["node"]["role"])


def rows(view: dict[str, Any]) -> list[NodeRow]:
    out: list[NodeRow] = []
    primary = view["primary"]
    asked = view["asked"]
    if primary is not None:
        node = primary["node"]
        for db, d in sorted(primary["databases"].items()):
            out.append(NodeRow(node["id"], "primary", node["listen"], node["epoch"], db, d["txid"],
                               d["checksum"], 0, 0.0, "serving"))  # fmt: skip
        for rep in sorted(primary["replicas"], key=lambda r: r["node_id"]):
            for db, d in sorted(rep["databases"].items()):
                out.append(NodeRow(rep["node_id"], "replica", rep["http"] or rep["peer"],
                                   node["epoch"], db, d["txid"], d["checksum"] or "-",
                                   d["lag_records"], d["lag_ms"], rep["state"]))  # fmt: skip
    if asked["node"]["role"] != "primary" and (
        primary is None or asked["node"]["id"] not in {r["node_id"] for r in primary["replicas"]}
    ):
        node, up = asked["node"], asked.get("upstream", {"state": node_state(asked)})
        for db, d in sorted(asked.get("databases", {}).items()):
            out.append(NodeRow(node["id"], "replica", node["http"], node["epoch"], db, d["txid"],
                               d["checksum"], d["lag_records"], None, up["state"]))  # fmt: skip
    return out


def _cells(r: NodeRow) -> tuple[str, ...]:
    lag = "-" if r.lag_records is None else str(r.lag_records)
    lag_ms = "-" if r.lag_ms is None else f"{r.lag_ms:.1f}"
    return (r.node_id, r.role, r.address, str(r.epoch), r.db, str(r.txid), r.checksum, lag,
            lag_ms, r.state)  # fmt: skip


def leadership(view: dict[str, Any]) -> dict[str, Any] | None:
    """Who leads, at which epoch, with how much lease left and which sync set (from the
    primary when it answered: only it holds the lease)."""
    primary = view["primary"]
    source = primary or view["asked"]
    lead = source.get("leadership")
    if lead is None:
        if primary is None:
            return None
        node = primary["node"]
        return {"leader_id": node["id"], "leader_http": node["http"], "epoch": node["epoch"],
                "mode": "static"}  # fmt: skip
    return {**lead, "mode": "etcd"}


def _leadership_line(lead: dict[str, Any]) -> str:
    line = f"leader {lead['leader_id']} ({lead['leader_http']}) epoch {lead['epoch']}"
    if lead["mode"] == "static":
        return line + ", static cluster (no lease)"
    line += f", lease {lead['lease_left']:.2f} s left"
    if lead.get("sync_replicas"):
        members = ", ".join(lead.get("sync_set") or [])
        line += f", sync K={lead['sync_replicas']} set [{members}]"
    if lead.get("election_blocked"):
        line += f"; election blocked: {lead['election_blocked']}"
    return line


def render(view: dict[str, Any]) -> str:
    table = rows(view)
    head = ("NODE", "ROLE", "ADDRESS", "EPOCH", "DB", "TXID", "CHECKSUM", "LAG", "LAG_MS", "STATE")
    cells = [head, *(_cells(r) for r in table)]
    widths = [max(len(c[i]) for c in cells) for i in range(len(head))]
    lines = ["  ".join(c[i].ljust(widths[i]) for i in range(len(head))).rstrip() for c in cells]
    lead = leadership(view)
    if lead is not None:
        lines.append(_leadership_line(lead))
    if view["primary"] is None:
        why = view.get("primary_error") or "unknown"
        lines.append(f"primary unreachable: {why}")
    lines.append(time.strftime("as of %Y-%m-%d %H:%M:%S"))
    return "\n".join(lines)
