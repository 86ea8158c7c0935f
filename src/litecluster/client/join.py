"""What an embedded replica needs to join a real cluster, checked before anything starts.

``connect(..., replica=DIR)`` gathers its arguments into :class:`Join` through
:func:`join_settings`, which refuses what cannot work with a :class:`~litecluster.errors.
ConfigError` naming the argument: no way to find the primary, neither the cluster token nor a
users-file login (``auth=(user, password)``, admitted on the replication port for a user with
the ``join-read-only`` permission: replication/primary/admission.py), a token too short, a CA
file that does not load, a cluster or node name that is not one.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from litecluster.errors import ConfigError, LiteclusterError
from litecluster.replication.config import DB_NAME, Address
from litecluster.replication.tls import client_context
from litecluster.replication.tokens import parse_tokens

DEFAULT_CLUSTER = "litecluster"
"""The cluster name of a node started without ``--cluster``."""


@dataclass(frozen=True)
class Join:
    """The checked settings of an embedded replica."""

    directory: Path
    seeds: tuple[str, ...]
    """HTTP base URLs of nodes of any role (``scheme://HOST:PORT``)."""
    etcd: tuple[str, ...]
    primary: Address | None
    """A replication address to try first (any node's: a replica's port names the primary)."""
    cluster: str
    token: str
    """The cluster token, or the password of ``user``."""
    user: str
    """A users-file user presented on the replication port instead of the token ('' none)."""
    ca: str | None
    headers: dict[str, str]
    """The HTTP credentials (for ``/status`` of the seeds)."""
    node_id: str | None
    """None: the id saved in the directory, or a new one saved there."""
    scheme: str
    """``http`` or ``https``: how the primary's HTTP address (HOST:PORT) is reached."""


def base_url(url: str, scheme: str = "http") -> str:
    return (url if "://" in url else f"{scheme}://{url}").rstrip("/")


def join_settings(
    directory: str | os.PathLike[str],
    *,
    seeds: Sequence[str],
    etcd: Sequence[str] | str | None,
    primary: str | None,
    cluster: str | None,
    token: str | None,
    ca: str | None,
    headers: dict[str, str],
    node_id: str | None,
    auth: tuple[str, str] | None,
) -> Join:
    """Check the arguments of ``connect(replica=...)`` (see the module docstring)."""
    endpoints = (etcd,) if isinstance(etcd, str) else tuple(etcd or ())
    if not seeds and not endpoints and primary is None:
        raise ConfigError("an embedded replica needs a way to find the primary",
                          field="url", hint="pass node addresses (any role), etcd=[...] "
                          "endpoints or primary=HOST:PORT")  # fmt: skip
    user = ""
    if token:
        try:
            parse_tokens(token, where="token")
        except LiteclusterError as exc:
            raise ConfigError(exc.message, field="token", hint=exc.hint) from None
    elif auth is not None and auth[0] and auth[1]:
        user, token = auth
    else:
        raise ConfigError("an embedded replica needs the cluster token or a user's login for "
                          "the replication stream", field="token" if auth is None else "auth",
                          hint="pass token= or token_file= (the nodes' token file), or auth=("
                          "user, password) of a users-file user with the join-read-only "
                          "permission (docs/security.md)")  # fmt: skip
    name = cluster or DEFAULT_CLUSTER
    if not DB_NAME.match(name):
        raise ConfigError("not a cluster name (letters, digits, _ and -)", field="cluster",
                          value=name, hint="the nodes' --cluster NAME")  # fmt: skip
    if node_id is not None and not DB_NAME.match(node_id):
        raise ConfigError("not a node id (letters, digits, _ and -, 64 at most)",
                          field="node_id", value=node_id)  # fmt: skip
    if ca is not None:
        if not Path(ca).is_file():
            raise ConfigError("the CA file does not exist", field="ca", value=ca,
                              hint="the CA bundle that signed the nodes' certificates")  # fmt: skip
        client_context(ca, tls=True)  # a file that does not load raises, naming it
    address = None
    if primary is not None:
        try:
            address = Address.parse(primary)
        except ValueError as exc:
            raise ConfigError(str(exc), field="primary",
                              hint="the replication address (--listen) of a node") from None  # fmt: skip
    for e in endpoints:
        if not e.startswith(("http://", "https://")):
            raise ConfigError("an etcd endpoint is a URL", field="etcd", value=e,
                              hint="e.g. http://127.0.0.1:2379")  # fmt: skip
    scheme = "https" if ca is not None else "http"
    urls = tuple(base_url(s, scheme) for s in seeds)
    if urls:
        scheme = urls[0].split("://", 1)[0]
    return Join(Path(directory), urls, endpoints, address, name, token, user, ca, headers,
                node_id, scheme)  # fmt: skip
