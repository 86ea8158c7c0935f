"""The introspection replies of the Redis-protocol server: INFO, COMMAND, HELLO, CONFIG."""

from __future__ import annotations

import os
import time
from typing import Any, Protocol

from litecluster import __version__
from litecluster.kv.catalog import CATALOG, CommandInfo
from litecluster.kv.reply import OK, Err, Map, Reply, SetReply, Simple, Verbatim
from litecluster.server.resp.pubsub import PubSub, normalize_flags


class InfoSource(Protocol):
    """What HELLO and INFO report of the node."""

    @property
    def node_id(self) -> str: ...

    @property
    def epoch(self) -> int: ...

    @property
    def started_at(self) -> float:
        """Wall-clock start time (``uptime_in_seconds``)."""

    @property
    def role(self) -> str:
        """``primary``, ``replica`` or ``candidate``: any but ``primary`` reports a replica."""

    def status(self) -> dict[str, Any]:
        """The ``/status`` document (``replicas`` on a primary, ``upstream`` on a replica)."""


REDIS_VERSION = "7.0.0"
"""The Redis version clients are told (the command set and replies follow redis-server 7.0)."""
DATABASES = 16


def _top_level() -> dict[str, CommandInfo]:
    return {n: i for n, i in CATALOG.items() if "|" not in n}


def command_info(info: CommandInfo) -> Reply:
    subs = [command_info(i) for n, i in CATALOG.items() if n.startswith(info.name + "|")]
    return [
        info.name.encode(), info.arity, SetReply([Simple(f) for f in info.flags]),
        info.first_key, info.last_key, info.key_step,
        SetReply([Simple(c) for c in info.acl_categories]), [], [], subs,
    ]  # fmt: skip


def command_docs(info: CommandInfo) -> Reply:
    return Map([
        (b"summary", info.summary.encode()), (b"since", info.since.encode()),
        (b"group", info.group.encode()), (b"complexity", info.complexity.encode()),
    ])  # fmt: skip


def command(args: list[bytes]) -> Reply:
    """COMMAND [COUNT | INFO name... | DOCS name... | LIST]."""
    top = _top_level()
    if len(args) == 1:
        return [command_info(i) for i in top.values()]
    sub = args[1].lower()
    names = [a.decode("utf-8", "replace").lower() for a in args[2:]]
    if sub == b"count" and len(args) == 2:
        return len(top)
    if sub == b"list" and len(args) == 2:
        return [n.encode() for n in top]
    if sub == b"info":
        return [command_info(top[n]) if n in top else None for n in names or list(top)]
    if sub == b"docs":
        wanted = names or list(top)
        return Map([(n.encode(), command_docs(top[n])) for n in wanted if n in top])
    return Err(f"ERR unknown subcommand '{args[1].decode('utf-8', 'replace')}'. Try COMMAND HELP.")


def hello(node: InfoSource, client_id: int, proto: int) -> Reply:
    return Map([
        (b"server", b"redis"), (b"version", REDIS_VERSION.encode()), (b"proto", proto),
        (b"id", client_id), (b"mode", b"standalone"),
        (b"role", b"master" if node.role == "primary" else b"replica"), (b"modules", []),
    ])  # fmt: skip


def info(
    node: InfoSource, section: str, *, clients: int, keyspace: dict[int, tuple[int, int]]
) -> Reply:
    """INFO [section]: server, clients, replication, keyspace (``all``/``default``: all)."""
    parts: list[str] = []
    want = section.lower() or "default"
    every = want in ("all", "default", "everything")
    if every or want == "server":
        parts.append(
            "# Server\r\n"
            f"redis_version:{REDIS_VERSION}\r\nlitecluster_version:{__version__}\r\n"
            f"redis_mode:standalone\r\nprocess_id:{os.getpid()}\r\n"
            f"run_id:{node.node_id}\r\n"
            f"uptime_in_seconds:{int(time.time() - node.started_at)}\r\n"
        )
    if every or want == "clients":
        parts.append(f"# Clients\r\nconnected_clients:{clients}\r\n")
    if every or want == "replication":
        parts.append(_replication(node))
    if every or want == "keyspace":
        lines = "".join(
            f"db{db}:keys={keys},expires={expires},avg_ttl=0\r\n"
            for db, (keys, expires) in sorted(keyspace.items())
            if keys
        )
        parts.append("# Keyspace\r\n" + lines)
    return Verbatim("\r\n".join(parts).encode())


def _replication(node: InfoSource) -> str:
    status = node.status()
    lines = ["# Replication"]
    if node.role == "primary":
        reps = status.get("replicas", [])
        lines += ["role:master", f"connected_slaves:{len(reps)}"]
        for i, rep in enumerate(reps):
            host, _, port = str(rep.get("http") or rep.get("peer") or "").rpartition(":")
            lag = max((d.get("lag_records") or 0) for d in rep.get("databases", {}).values()) \
                if rep.get("databases") else 0  # fmt: skip
            lines.append(f"slave{i}:ip={host},port={port},state=online,offset=0,lag={lag}")
    else:
        up = status.get("upstream", {})
        host, _, port = str(up.get("primary_http") or up.get("primary") or "").rpartition(":")
        link = "up" if up.get("state") == "streaming" else "down"
        lag = max((d.get("lag_records") or 0 for d in status.get("databases", {}).values()),
                  default=0)  # fmt: skip
        lines += ["role:slave", f"master_host:{host}", f"master_port:{port}",
                  f"master_link_status:{link}", f"litecluster_lag_records:{lag}"]  # fmt: skip
    lines += [f"litecluster_node_id:{node.node_id}", f"litecluster_epoch:{node.epoch}"]
    return "\r\n".join(lines) + "\r\n"


CONFIG_DEFAULTS = {"save": "", "appendonly": "no", "databases": str(DATABASES), "maxmemory": "0"}


def config(pubsub: PubSub, args: list[bytes]) -> Reply:
    """CONFIG GET/SET/RESETSTAT/REWRITE: the few settings clients ask for, and keyspace
    notifications (the one setting a client may change)."""
    sub = args[1].lower() if len(args) > 1 else b""
    values = {**CONFIG_DEFAULTS,
              "notify-keyspace-events": pubsub.keyspace_events}  # fmt: skip
    if sub == b"get" and len(args) >= 3:
        from fnmatch import fnmatchcase

        pats = [a.decode("utf-8", "replace").lower() for a in args[2:]]
        return Map([(k.encode(), v.encode()) for k, v in values.items()
                    if any(fnmatchcase(k, p) for p in pats)])  # fmt: skip
    if sub == b"set" and len(args) == 4 and args[2].lower() == b"notify-keyspace-events":
        flags = normalize_flags(args[3].decode("utf-8", "replace"))
        if flags is None:
            return Err("ERR CONFIG SET failed (possibly related to argument "
                       "'notify-keyspace-events') - Invalid event class character. "
                       "Use 'Ag$lshzxeKEtmd'.")  # fmt: skip
        pubsub.keyspace_events = flags
        return OK
    if sub in (b"resetstat", b"rewrite"):
        return OK
    name = args[2].decode("utf-8", "replace") if len(args) > 2 else ""
    return Err(f"ERR Unknown option or number of arguments for CONFIG {sub.decode().upper()}"
               f" - '{name}'")  # fmt: skip
