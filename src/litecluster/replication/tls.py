"""TLS contexts for the replication and HTTP ports (the standard library does the work)."""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Literal, overload

from litecluster.errors import ConfigError


def server_context(cert: Path | None, key: Path | None) -> ssl.SSLContext | None:
    """Context for a port that serves TLS with ``cert`` (PEM chain) and ``key``; None (plain
    TCP) unless both are given."""
    if cert is None or key is None:
        return None
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    _load_chain(ctx, cert, key, "tls_cert")
    return ctx


def _load_chain(ctx: ssl.SSLContext, cert: Path, key: Path | None, field: str) -> None:
    """Load the certificate this side presents; a file that cannot be used is a
    :class:`~litecluster.errors.ConfigError` naming the setting."""
    try:
        ctx.load_cert_chain(cert, key)
    except (ssl.SSLError, OSError) as exc:
        raise ConfigError(
            f"cannot load the TLS certificate or key: {exc}",
            field=field,
            value=str(cert),
            hint="the certificate must be PEM (chain) and the key its PEM private key",
        ) from None


@overload
def client_context(
    ca_file: str | None, *, tls: Literal[True], cert: Path | None = None, key: Path | None = None
) -> ssl.SSLContext: ...
@overload
def client_context(
    ca_file: str | None, *, tls: bool, cert: Path | None = None, key: Path | None = None
) -> ssl.SSLContext | None: ...
def client_context(
    ca_file: str | None, *, tls: bool, cert: Path | None = None, key: Path | None = None
) -> ssl.SSLContext | None:
    """The one client-side TLS context of the package (node to node, forwarding, etcd, every
    client): verifies the peer against ``ca_file`` (or the system CAs), TLS 1.2 minimum, and
    presents ``cert`` (PEM chain, private key ``key``) to a server that asks for a client
    certificate (etcd with ``--client-cert-auth``). None when neither ``tls``, a CA nor a
    certificate asks for TLS; a file that cannot be loaded is a
    :class:`~litecluster.errors.ConfigError`."""
    if not tls and ca_file is None and cert is None:
        return None
    try:
        ctx = ssl.create_default_context(cafile=ca_file)
    except (ssl.SSLError, OSError) as exc:
        raise ConfigError(
            f"cannot load the CA file: {exc}", field="tls_ca", value=ca_file
        ) from None
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    if cert is not None:
        _load_chain(ctx, cert, key, "etcd_cert")
    return ctx
