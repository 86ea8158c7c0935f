"""Manual operations an operator asks of running nodes over HTTP: planned switchover (etcd
clusters), promote and follow (static clusters). The CLI calls these; errors come back as
NodeError with the node's own message and hint."""

from __future__ import annotations

from typing import Any

import httpx

from litecluster.client.status import cluster_status
from litecluster.errors import NodeError
from litecluster.replication.tls import client_context


def _post(http: str, path: str, params: dict[str, str], *, ca: str | None,
          headers: dict[str, str] | None, timeout: float = 30.0) -> dict[str, Any]:  # fmt: skip
    scheme = "https" if ca else "http"
    url = http if "://" in http else f"{scheme}://{http}"
    verify = client_context(ca, tls=True)
    try:
        resp = httpx.post(url.rstrip("/") + path, params=params, timeout=timeout, verify=verify,
                          headers=headers)  # fmt: skip
        data = resp.json()
    except (httpx.HTTPError, ValueError) as exc:
        raise NodeError(f"cannot reach {url}: {exc}",
                        hint="check the node's --http address (and --ca for a TLS node)"
                        ) from None  # fmt: skip
    if resp.status_code != 200 or not isinstance(data, dict):
        message = data.get("error") if isinstance(data, dict) else None
        hint = data.get("hint") if isinstance(data, dict) else None
        raise NodeError(f"{url}{path} refused: {message or resp.status_code}",
                        hint=hint or "see the node's log")  # fmt: skip
    return data


def switchover(http: str, target: str, *, ca: str | None = None,
               headers: dict[str, str] | None = None) -> tuple[str, float]:  # fmt: skip
    """Hand the primary role to ``target``; asks any node which one is primary. Returns the
    old primary's id and the seconds the handoff took. ``headers`` carry the credentials."""
    view = cluster_status(http, ca=ca, headers=headers)
    primary = view["primary"]
    if primary is None:
        raise NodeError(f"no primary reachable: {view['primary_error']}")
    data = _post(primary["node"]["http"], "/switchover", {"to": target}, ca=ca, headers=headers)
    return str(primary["node"]["id"]), float(data["seconds"])


def promote_node(http: str, *, force: bool = False, ca: str | None = None,
                 headers: dict[str, str] | None = None) -> dict[str, Any]:  # fmt: skip
    """Make the replica at ``http`` the primary of a new epoch (static clusters)."""
    return _post(http, "/promote", {"force": "1"} if force else {}, ca=ca, headers=headers)


def follow(http: str, primary_listen: str, *, ca: str | None = None,
           headers: dict[str, str] | None = None) -> dict[str, Any]:  # fmt: skip
    """Point the replica at ``http`` at the primary whose replication address is given."""
    return _post(http, "/follow", {"primary": primary_listen}, ca=ca, headers=headers)
