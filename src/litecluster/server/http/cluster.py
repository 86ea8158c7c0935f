"""The cluster routes of the HTTP port: ``/readyz``, ``/nodes`` and ``/leader`` (what rqlite
clients and load balancers ask to find the primary), and the operator's ``/switchover``,
``/promote`` and ``/follow``. They serve from the SQL API's :class:`~.sql.SqlDoor`.

``/nodes`` answers in rqlite's two shapes: by default an object keyed by node id, with
``?ver=2`` ``{"nodes": [...]}`` with each node's ``id``. Nodes that can never become the
primary (embedded replicas, ``nofailover``) are rqlite's non-voters: listed with
``?nonvoters`` only. A node lists what it knows: a primary its replicas, a replica itself and
its primary.
"""

from __future__ import annotations

import time
from typing import Any

from aiohttp import web

from litecluster.errors import NotPrimaryError, RequestError
from litecluster.replication.config import Address
from litecluster.server.http.params import flag
from litecluster.server.http.perms import needs
from litecluster.server.http.sql import DOOR, pretty_dumps


def add_routes(app: web.Application) -> None:
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/nodes", nodes)
    app.router.add_get("/leader", leader)
    app.router.add_post("/switchover", switchover)
    app.router.add_post("/promote", promote)
    app.router.add_post("/follow", follow)


@needs("ready", probe=True)
async def readyz(request: web.Request) -> web.Response:
    door = request.app[DOOR]
    upstream = door.local.upstream
    if door.status.ready and (
        door.local.primary is not None or (upstream is not None and upstream.state == "streaming")
    ):
        return web.Response(text="[+]node ok\n[+]leader ok\n[+]store ok\n")
    return web.Response(status=503, text="[+]node ok\n[-]leader not contacted\n")


def _scheme(request: web.Request) -> str:
    return "https" if request.secure else "http"


def _known(request: web.Request) -> list[dict[str, Any]]:
    """Every node this one knows, in rqlite's terms (``time``: litecluster does not probe the
    others when asked; it reports what replication last saw)."""
    st = request.app[DOOR].status.status()
    me, scheme = st["node"], _scheme(request)

    def entry(node_id: str, http: str, addr: str, *, reachable: bool, leader: bool,
              voter: bool) -> dict[str, Any]:  # fmt: skip
        return {"id": node_id, "api_addr": f"{scheme}://{http}" if http else "", "addr": addr,
                "voter": voter, "reachable": reachable, "leader": leader, "time": 0.0}  # fmt: skip

    if "replicas" in st:
        out = [entry(me["id"], me["http"], me["listen"], reachable=True, leader=True, voter=True)]
        out += [entry(r["node_id"], r["http"], r["peer"], reachable=r["state"] != "disconnected",
                      leader=False, voter=bool(r.get("counts_for_sync", True)))
                for r in st["replicas"]]  # fmt: skip
        return out
    out = [entry(me["id"], me["http"], me["listen"], reachable=True, leader=False, voter=True)]
    up = st.get("upstream") or {}
    if up.get("primary_id"):
        out.append(entry(up["primary_id"], up["primary_http"], up["primary"],
                         reachable=up["state"] == "streaming", leader=True, voter=True))  # fmt: skip
    return out


@needs("status")
async def nodes(request: web.Request) -> web.Response:
    ver = request.query.get("ver", "1")
    if ver not in ("1", "2"):
        raise RequestError("ver must be 1 or 2", value=ver[:20])
    known = _known(request)
    if not flag(request, "nonvoters"):
        known = [n for n in known if n["voter"]]
    if ver == "2":
        return web.json_response({"nodes": known}, dumps=pretty_dumps(request))
    shaped = {n["id"]: {k: v for k, v in n.items() if k != "id"} for n in known}
    return web.json_response(shaped, dumps=pretty_dumps(request))


@needs("status")
async def leader(request: web.Request) -> web.Response:
    """``GET /leader``: the primary as this node knows it (503 while it knows none)."""
    for n in _known(request):
        if n["leader"]:
            return web.json_response({"leader": n}, dumps=pretty_dumps(request))
    raise NotPrimaryError("this node knows no primary right now",
                          hint="retry in a moment, or ask another node")  # fmt: skip


@needs("admin")
async def switchover(request: web.Request) -> web.Response:
    """``POST /switchover?to=NODE`` on the primary (what ``litecluster switchover`` calls)."""
    ha = request.app[DOOR].switchover
    target = request.query.get("to", "")
    if ha is None:
        raise RequestError("switchover needs a cluster with --etcd")
    if not target:
        raise RequestError("missing to=NODE")
    started = time.perf_counter()
    await ha.switchover(target)
    return web.json_response({"switched_to": target, "seconds": time.perf_counter() - started})


@needs("admin")
async def promote(request: web.Request) -> web.Response:
    """``POST /promote[?force]`` on a replica of a static cluster (``litecluster promote``)."""
    cluster = request.app[DOOR].cluster
    epoch = await cluster.manual_promote(force=flag(request, "force"))
    return web.json_response(
        {
            "node_id": cluster.node_id,
            "epoch": epoch,
            "listen": str(cluster.listen),
            "positions": cluster.positions(),
        }
    )


@needs("admin")
async def follow(request: web.Request) -> web.Response:
    """``POST /follow?primary=HOST:PORT`` on a replica of a static cluster."""
    cluster = request.app[DOOR].cluster
    try:
        primary = Address.parse(request.query.get("primary", ""))
    except ValueError as exc:
        raise RequestError("primary must be HOST:PORT", detail=str(exc)) from None
    await cluster.manual_follow(primary)
    return web.json_response({"node_id": cluster.node_id, "following": str(primary)})
