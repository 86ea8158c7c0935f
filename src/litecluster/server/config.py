"""Node configuration: one dataclass, filled from defaults, a TOML file, ``LITECLUSTER_*``
environment variables and command-line flags (later sources win), validated at every start.

Every error names the setting, the bad value and where it came from.
"""

from __future__ import annotations

import dataclasses
import os
import re
import tomllib
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from litecluster.errors import ConfigError
from litecluster.ha.etcd import EtcdAccess
from litecluster.replication.config import DB_NAME, Address, ReplicationConfig
from litecluster.replication.tokens import Tokens, parse_tokens

ENV_PREFIX = "LITECLUSTER_"
_LISTEN = Address("127.0.0.1", 4001)
_PRAGMA_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
_ORIGIN = re.compile(r"^[a-z][a-z0-9+.-]*://[^/\s?#]+$")
_HTTP = Address("127.0.0.1", 4002)


@dataclass(frozen=True)
class NodeConfig(ReplicationConfig):
    """Every setting of a node: the replication settings it inherits, plus identity, addresses,
    credentials, leadership, limits, logging and the Redis-protocol front end.

    :meth:`replication` is what the node hands to its primary and replica sides.
    """

    node_id: str = ""
    """Defaults to the id saved in the data directory, or a new random one on first start."""
    listen: Address = _LISTEN
    """Replication port. Port 0 picks a free port (written to ``DIR/node.addr``)."""
    http: Address = _HTTP
    token_file: Path | None = None
    """One cluster token per line: the first is presented, every one accepted (rotation:
    docs/security.md); read again on SIGHUP."""
    token: str = ""
    """Prefer ``token_file`` or ``LITECLUSTER_TOKEN``: a token in a config file is easy to leak."""
    users_file: Path | None = None
    """Users for HTTP Basic and RESP ``AUTH user password`` (rqlite's ``-auth`` JSON shape,
    bcrypt hashes); read again on SIGHUP."""
    http_auth: bool = True
    """Every HTTP request needs the cluster token or a user (docs/security.md)."""
    http_open_probes: bool = True
    """``/readyz`` and ``/health`` answer without credentials (load balancers' probes)."""
    tls_cert: Path | None = None
    tls_key: Path | None = None
    epoch: int = 1
    """Static leadership epoch; it must grow each time the primary changes by hand."""
    scan_interval: float = 1.0
    max_request_bytes: int = 8 * 1024 * 1024
    max_statements: int = 1000
    read_wait_timeout: float = 5.0
    """How long a read with min_position (or a forwarded write) waits for this node to apply."""
    etcd: tuple[str, ...] = ()
    """etcd endpoints (http://HOST:PORT or https://..., comma separated): nodes elect their
    primary."""
    etcd_cacert: Path | None = None
    """CA of etcd's server certificate (https endpoints; default: the system CAs)."""
    etcd_cert: Path | None = None
    """Client certificate for an etcd that requires one (``--client-cert-auth``)."""
    etcd_key: Path | None = None
    etcd_username: str | None = None
    """etcd user when etcd runs with authentication; the password is in ``etcd_password_file``."""
    etcd_password_file: Path | None = None
    lease_ttl: int = 5
    priority: int = 0
    """Among equally advanced candidates the highest priority is promoted."""
    maximum_lag_on_failover: int = 10_000
    """A replica further behind than this many records is never promoted."""
    log_format: str = "kv"
    log_level: str = "INFO"
    resp: Address | None = None
    """Serve the Redis protocol on this address (unset: no Redis-protocol server)."""
    kv_db: str = "kv"
    """The database holding the key/value data."""
    resp_auth: bool = True
    """Clients must AUTH with a cluster token (user ``default``), a ``users_file`` user or a
    ``resp_users_file`` user."""
    resp_users_file: Path | None = None
    """More Redis users: one ``USER PASSWORD`` per line (``#`` starts a comment)."""
    resp_replica_writes: str = "forward"
    """On a replica: ``forward`` writes to the primary, or ``readonly`` (answer -READONLY)."""
    resp_read_level: str = "none"
    """The read level RESP connections start with (``CLIENT READLEVEL`` changes it)."""
    resp_output_limit: int = 32 * 1024 * 1024
    """Unread bytes a pub/sub client may have queued before it is disconnected."""
    http_allow_origin: tuple[str, ...] = ()
    """Origins whose browser requests get CORS headers (``*``: any); empty: no CORS."""
    queue_max_entries: int = 100_000
    """Queued writes (``?queue``) this node holds at most before refusing more (503)."""
    queue_max_bytes: int = 256 * 1024 * 1024
    """Bytes of queued statements (their JSON) this node holds at most."""
    _sources: dict[str, str] = field(default_factory=dict, compare=False, repr=False)

    @property
    def is_primary(self) -> bool:
        return self.primary is None and not self.etcd

    @property
    def tls_server(self) -> bool:
        return self.tls_cert is not None

    def source(self, name: str) -> str:
        return self._sources.get(name, "default")

    def etcd_access(self) -> EtcdAccess:
        """How this node reaches etcd (TLS and credentials), for the etcd client alone."""
        return EtcdAccess(
            cacert=self.etcd_cacert, cert=self.etcd_cert, key=self.etcd_key,
            username=self.etcd_username, password_file=self.etcd_password_file,
        )  # fmt: skip

    def replication(self, **changes: Any) -> ReplicationConfig:
        """The replication settings of this node (``changes`` override some, e.g. the
        ``primary`` a replica follows now): a plain :class:`ReplicationConfig`, so the
        replication layer never holds the node's credentials or front-end settings."""
        values = {name: getattr(self, name) for name in _REPLICATION}
        return ReplicationConfig(**(values | changes))


_REPLICATION = tuple(f.name for f in dataclasses.fields(ReplicationConfig))
_FIELDS = {f.name: f for f in dataclasses.fields(NodeConfig) if not f.name.startswith("_")}
_HINTS = typing.get_type_hints(NodeConfig)


def _convert(name: str, raw: Any) -> Any:
    kind = _HINTS[name]
    optional = False
    if isinstance(kind, types.UnionType):
        args = [a for a in typing.get_args(kind) if a is not type(None)]
        kind, optional = args[0], True
    if optional and (raw is None or raw == ""):
        return None
    if kind is bool:
        if isinstance(raw, bool):
            return raw
        text = str(raw).strip().lower()
        if text in ("1", "true", "yes", "on"):
            return True
        if text in ("0", "false", "no", "off"):
            return False
        raise ValueError("expected true or false")
    if kind is int:
        if isinstance(raw, bool) or (isinstance(raw, float) and not raw.is_integer()):
            raise ValueError("expected an integer")
        return int(raw)
    if kind is float:
        return float(raw)
    if kind is Path:
        return Path(str(raw)).expanduser()
    if kind is Address:
        return Address.parse(str(raw))
    if kind == tuple[str, ...]:
        items = raw if isinstance(raw, list) else str(raw).split(",")
        return tuple(str(i).strip() for i in items if str(i).strip())
    if not isinstance(raw, str):
        raise ValueError("expected a string")
    return raw


def load_config(
    flags: Mapping[str, Any] | None = None,
    env: Mapping[str, str] | None = None,
    config_file: str | os.PathLike[str] | None = None,
) -> NodeConfig:
    """Merge defaults < TOML file < environment < flags (``None`` flags are unset)."""
    env = os.environ if env is None else env
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    path = config_file or env.get(ENV_PREFIX + "CONFIG") or None
    layers: list[tuple[str, Mapping[str, Any]]] = []
    table: Mapping[str, Any]
    if path:
        try:
            with open(path, "rb") as f:
                data = tomllib.load(f)
        except FileNotFoundError:
            raise ConfigError("config file not found", field="config", value=str(path)) from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config file is not valid TOML: {exc}", file=str(path)) from None
        table = {k.replace("-", "_"): v for k, v in data.items()}
        unknown = sorted(set(table) - set(_FIELDS))
        if unknown:
            raise ConfigError(
                "unknown setting in config file",
                field=unknown[0],
                file=str(path),
                hint="known settings: " + ", ".join(sorted(_FIELDS)),
            )
        layers.append((f"config file {path}", table))
    env_table = {
        name: env[ENV_PREFIX + name.upper()] for name in _FIELDS if ENV_PREFIX + name.upper() in env
    }
    layers.append(("environment", env_table))
    layers.append(("flag", {k: v for k, v in (flags or {}).items() if v is not None}))
    for where, table in layers:
        for name, raw in table.items():
            if name not in _FIELDS:
                raise ConfigError("unknown setting", field=name, source=where)
            src = f"{ENV_PREFIX}{name.upper()}" if where == "environment" else where
            try:
                values[name] = _convert(name, raw)
            except (ValueError, TypeError) as exc:
                raise ConfigError(
                    f"invalid value: {exc}", field=name, value=repr(raw), source=src
                ) from None
            sources[name] = src
    if "data_dir" not in values:
        raise ConfigError(
            "no data directory", field="data_dir", hint="pass --data-dir DIR or set data_dir"
        )
    config = NodeConfig(**values, _sources=sources)
    validate(config)
    return config


def _bad(config: NodeConfig, name: str, why: str, hint: str | None = None) -> ConfigError:
    value = getattr(config, name)
    return ConfigError(why, field=name, value=str(value), source=config.source(name), hint=hint)


def validate(config: NodeConfig) -> None:
    positive = ("heartbeat_interval", "peer_timeout", "reconnect_min", "reconnect_max")
    for name in (*positive, "checkpoint_frames", "segment_bytes", "scan_interval",
                 "retention_interval", "max_group", "statement_timeout", "write_timeout",
                 "max_request_bytes", "max_statements", "read_wait_timeout", "max_result_rows",
                 "max_result_bytes", "queue_max_entries", "queue_max_bytes",
                 "replica_retention"):  # fmt: skip
        if getattr(config, name) <= 0:
            raise _bad(config, name, "must be greater than zero")
    if config.retention_bytes < 0 or config.retention_seconds < 0:
        raise _bad(config, "retention_bytes", "retention must not be negative")
    if config.peer_timeout <= 2 * config.heartbeat_interval:
        raise _bad(config, "peer_timeout", "must be more than twice heartbeat_interval")
    if config.reconnect_max < config.reconnect_min:
        raise _bad(config, "reconnect_max", "must be at least reconnect_min")
    if config.epoch < 1:
        raise _bad(config, "epoch", "must be 1 or more")
    if config.node_id and not DB_NAME.match(config.node_id):
        raise _bad(config, "node_id", "use letters, digits, '-' and '_' (at most 64)")
    if not config.cluster_id:
        raise _bad(config, "cluster_id", "must not be empty")
    for db in config.databases:
        if not DB_NAME.match(db):
            raise _bad(config, "databases", f"bad database name {db!r}")
    if config.log_format not in ("kv", "json"):
        raise _bad(config, "log_format", "must be kv or json")
    if config.log_level.upper() not in ("DEBUG", "INFO", "WARNING", "ERROR"):
        raise _bad(config, "log_level", "must be DEBUG, INFO, WARNING or ERROR")
    if (config.tls_cert is None) != (config.tls_key is None):
        raise _bad(config, "tls_key", "tls_cert and tls_key go together")
    for url in config.etcd:
        if not url.startswith(("http://", "https://")):
            raise _bad(config, "etcd", f"endpoint {url!r} must start with http:// or https://")
    plain = [u for u in config.etcd if u.startswith("http://")]
    if plain and (config.etcd_cacert or config.etcd_cert):
        raise _bad(config, "etcd", "etcd_cacert/etcd_cert need https:// endpoints, got "
                   + ", ".join(plain))  # fmt: skip
    if (config.etcd_cert is None) != (config.etcd_key is None):
        raise _bad(config, "etcd_key", "etcd_cert and etcd_key go together")
    if (config.etcd_username is None) != (config.etcd_password_file is None):
        raise _bad(config, "etcd_password_file", "etcd_username needs etcd_password_file")
    files = ("tls_cert", "tls_key", "tls_ca", "token_file", "users_file", "etcd_cacert",
             "etcd_cert", "etcd_key", "etcd_password_file")  # fmt: skip
    for name in files:
        p = getattr(config, name)
        if p is not None and not Path(p).is_file():
            raise _bad(config, name, "file not found")
    if config.etcd and config.primary is not None:
        raise _bad(config, "primary", "with etcd the nodes elect their primary: drop primary")
    if config.sync_replicas < 0 or config.sync_timeout <= 0:
        raise _bad(config, "sync_replicas", "sync_replicas >= 0 and sync_timeout > 0")
    if config.lease_ttl < 2:
        raise _bad(config, "lease_ttl", "must be at least 2 (etcd's minimum)")
    if not DB_NAME.match(config.kv_db):
        raise _bad(config, "kv_db", "bad database name")
    if config.resp_replica_writes not in ("forward", "readonly"):
        raise _bad(config, "resp_replica_writes", "must be forward or readonly")
    if config.resp_read_level not in ("none", "strong", "linearizable"):
        raise _bad(config, "resp_read_level", "must be none, strong or linearizable")
    if config.resp_output_limit <= 0:
        raise _bad(config, "resp_output_limit", "must be greater than zero")
    if config.resp_users_file is not None and not Path(config.resp_users_file).is_file():
        raise _bad(config, "resp_users_file", "file not found")
    for pragma in config.sql_allow_pragma:
        if not _PRAGMA_NAME.match(pragma):
            raise _bad(config, "sql_allow_pragma", f"not a PRAGMA name: {pragma!r}")
    for origin in config.http_allow_origin:
        if origin != "*" and not _ORIGIN.match(origin):
            raise _bad(config, "http_allow_origin", f"not an origin: {origin!r}",
                       hint="scheme://host[:port] without a path, e.g. https://app.example, or *")  # fmt: skip
    if config.primary is not None and config.primary == config.listen:
        raise _bad(config, "primary", "a node cannot replicate from its own listen address")


def resp_passwords(config: NodeConfig) -> dict[str, str]:
    """The Redis users of ``resp_users_file`` and their plain passwords (they may do
    everything; the cluster tokens and ``users_file``'s users are checked elsewhere)."""
    users: dict[str, str] = {}
    if config.resp_auth and config.resp_users_file is not None:
        for n, line in enumerate(config.resp_users_file.read_text().splitlines(), 1):
            line = line.split("#", 1)[0].strip()
            if not line:
                continue
            user, _, password = line.partition(" ")
            if not password.strip():
                raise ConfigError("a user without a password", field="resp_users_file",
                                  value=str(config.resp_users_file), line=n)  # fmt: skip
            users[user] = password.strip()
    return users


def read_tokens(config: NodeConfig) -> Tokens:
    """The cluster tokens, from ``token_file`` (one per line, reloaded on SIGHUP) or
    ``token``; a node never runs without one."""
    if config.token_file is not None:
        return Tokens.from_file(config.token_file)
    return Tokens(parse_tokens(config.token, where="token"))
