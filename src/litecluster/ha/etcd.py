"""A small client for etcd's v3 API over its JSON gateway (``/v3/kv/...``, ``/v3/lease/...``).

Why our own: the ``etcd3`` PyPI package is unmaintained and breaks with current protobuf;
Patroni talks to etcd the same way. Keys and values are base64 in the JSON; 64-bit integers
come back as strings. Several endpoints may be given: a request that cannot reach one tries
the next, and any of them failing for every endpoint raises :class:`EtcdUnavailableError`
(the seam's :class:`~litecluster.ha.leadership.StoreUnavailableError`: it must not be read
as "lost the race").

A production etcd is reached over TLS (its CA, and a client certificate when it runs with
``--client-cert-auth``) and with RBAC (a user and password): :class:`EtcdAccess`, the five
settings Patroni's etcd3 section has. With a user, the client authenticates once
(``/v3/auth/authenticate``) and sends the token with every request; etcd forgets a token that
stays unused for ``--auth-token-ttl`` (and on restart), so a request refused for an invalid
token authenticates again and is sent once more. The password file is read at each
authentication: rotating a password is writing the file, then changing it in etcd.
"""

from __future__ import annotations

import asyncio
import base64
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from litecluster.errors import ConfigError
from litecluster.ha.leadership import StoreError, StoreUnavailableError
from litecluster.replication.tls import client_context


class EtcdError(StoreError):
    """etcd answered with an error."""


class EtcdUnavailableError(EtcdError, StoreUnavailableError):
    """No etcd endpoint answered in time. A request that reached etcd may still have been
    applied, but every call of the leadership is a compare-and-set or a read, so repeating it
    at the next round is safe: retryable."""

    default_hint = "check --etcd endpoints and that etcd is running"
    retryable = True


class EtcdAuthError(EtcdError):
    """etcd refused the user name and password. The HA loop keeps trying at each round (the
    password file is read again each time), so fixing the file or the user heals the node."""

    default_hint = "check etcd_username and etcd_password_file against the etcd user"


@dataclass(frozen=True)
class EtcdAccess:
    """How to reach a production etcd: TLS and RBAC credentials (all optional)."""

    cacert: Path | None = None
    """CA that signed etcd's server certificate (https endpoints; default: system CAs)."""
    cert: Path | None = None
    """Client certificate, for an etcd started with ``--client-cert-auth``."""
    key: Path | None = None
    """Private key of ``cert``."""
    username: str | None = None
    """etcd user (RBAC); its password is read from ``password_file``."""
    password_file: Path | None = None

    def __post_init__(self) -> None:
        if (self.cert is None) != (self.key is None):
            raise ConfigError("etcd_cert and etcd_key go together", field="etcd_key")
        if (self.username is None) != (self.password_file is None):
            raise ConfigError(
                "etcd_username and etcd_password_file go together", field="etcd_password_file"
            )

    def password(self) -> str:
        assert self.password_file is not None
        try:
            return self.password_file.read_text().strip()
        except OSError as exc:
            raise ConfigError(
                f"cannot read the etcd password file: {exc}",
                field="etcd_password_file",
                value=str(self.password_file),
            ) from None


_CN_HINT = (
    "with authentication on, etcd's JSON gateway refuses a client certificate that has a "
    "CommonName (its fix of CVE-2018-16886): issue etcd_cert without a CN"
)
_INVALID_TOKEN = ("invalid auth token", "user name is empty", "auth token is expired")
"""What etcd says when a request's token is unknown to it (expired, issued before a restart,
or missing): authenticate again. A wrong password says "authentication failed"."""


def _b64(s: str | bytes) -> str:
    return base64.b64encode(s.encode() if isinstance(s, str) else s).decode()


def _unb64(s: str) -> bytes:
    return base64.b64decode(s)


@dataclass(frozen=True)
class KeyValue:
    key: str
    value: bytes
    create_revision: int
    mod_revision: int
    lease: int


@dataclass(frozen=True)
class TxnResult:
    succeeded: bool
    revision: int
    """The store's revision after the transaction (the put's revision when it succeeded)."""
    kvs: tuple[KeyValue, ...] = ()


def _kv(d: dict[str, Any]) -> KeyValue:
    return KeyValue(
        key=_unb64(d["key"]).decode(),
        value=_unb64(d.get("value", "")),
        create_revision=int(d.get("create_revision", 0)),
        mod_revision=int(d.get("mod_revision", 0)),
        lease=int(d.get("lease", 0)),
    )


class EtcdClient:
    def __init__(
        self, endpoints: list[str], *, timeout: float = 2.0, access: EtcdAccess | None = None
    ) -> None:
        if not endpoints:
            raise EtcdError("no etcd endpoints")
        self.endpoints = [e.rstrip("/") for e in endpoints]
        self.access = access or EtcdAccess()
        self._current = 0
        tls = any(e.startswith("https://") for e in self.endpoints)
        ctx = client_context(
            str(self.access.cacert) if self.access.cacert else None,
            tls=tls,
            cert=self.access.cert,
            key=self.access.key,
        )
        self._http = httpx.AsyncClient(timeout=timeout, verify=ctx if ctx is not None else True)
        self._token: str | None = None
        self._token_lock = asyncio.Lock()

    async def call(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        if self.access.username is None:
            return await self._send(path, body, None)
        token = self._token or await self._authenticate(None)
        try:
            return await self._send(path, body, token)
        except EtcdError as exc:
            if not any(m in exc.message for m in _INVALID_TOKEN):
                raise
        return await self._send(path, body, await self._authenticate(token))

    async def _authenticate(self, stale: str | None) -> str:
        """A token for the configured user; ``stale`` is the one etcd refused (None: none
        yet). Concurrent callers that saw the same token refused authenticate once."""
        async with self._token_lock:
            if self._token is not None and self._token != stale:
                return self._token
            name = self.access.username
            try:
                data = await self._send(
                    "auth/authenticate", {"name": name, "password": self.access.password()}, None
                )
            except (EtcdUnavailableError, EtcdAuthError):
                raise
            except EtcdError as exc:
                raise EtcdAuthError(
                    f"etcd refused the credentials of user {name!r}: {exc.message}", user=name
                ) from None
            token = data.get("token")
            if not isinstance(token, str) or not token:
                raise EtcdAuthError("etcd answered no auth token", user=name)
            self._token = token
            return token

    async def _send(self, path: str, body: dict[str, Any], token: str | None) -> dict[str, Any]:
        errors = []
        headers = {"Authorization": token} if token else None
        for i in range(len(self.endpoints)):
            base = self.endpoints[(self._current + i) % len(self.endpoints)]
            try:
                resp = await self._http.post(f"{base}/v3/{path}", json=body, headers=headers)
            except httpx.HTTPError as exc:
                errors.append(f"{base}: {exc!r}")
                continue
            self._current = (self._current + i) % len(self.endpoints)
            try:
                data: dict[str, Any] = resp.json()
            except ValueError:
                if "CommonName" in resp.text:
                    raise EtcdAuthError(f"etcd {path}: {resp.text[:200]}", hint=_CN_HINT) from None
                raise EtcdError(
                    f"etcd {path}: not a JSON answer (HTTP {resp.status_code})",
                    body=resp.text[:200],
                ) from None
            if resp.status_code != 200 or "error" in data:
                said = str(data.get("error") or data.get("message") or resp.status_code)
                if "CommonName" in said:
                    raise EtcdAuthError(f"etcd {path}: {said}", hint=_CN_HINT)
                raise EtcdError(f"etcd {path}: {said}", code=data.get("code"))
            return data
        raise EtcdUnavailableError("no etcd endpoint answered", path=path, errors="; ".join(errors))

    # ---- leases -------------------------------------------------------------------------------

    async def grant(self, ttl: int) -> int:
        data = await self.call("lease/grant", {"TTL": ttl})
        return int(data["ID"])

    async def keepalive(self, lease: int) -> int:
        """Renew ``lease``; returns its TTL now, 0 when it has already expired."""
        data = await self.call("lease/keepalive", {"ID": lease})
        return int(data.get("result", {}).get("TTL", 0))

    async def revoke(self, lease: int) -> None:
        try:
            await self.call("lease/revoke", {"ID": lease})
        except EtcdError as exc:
            if "not found" not in exc.message:
                raise

    # ---- keys ---------------------------------------------------------------------------------

    async def get(self, key: str) -> KeyValue | None:
        """A linearizable read (etcd's default): never a stale local member's view."""
        data = await self.call("kv/range", {"key": _b64(key)})
        kvs = data.get("kvs") or []
        return _kv(kvs[0]) if kvs else None

    async def get_prefix(self, prefix: str) -> list[KeyValue]:
        end = prefix.encode()[:-1] + bytes([prefix.encode()[-1] + 1])
        data = await self.call("kv/range", {"key": _b64(prefix), "range_end": _b64(end)})
        return [_kv(kv) for kv in data.get("kvs") or []]

    async def put(self, key: str, value: bytes, *, lease: int = 0) -> int:
        data = await self.call("kv/put", {"key": _b64(key), "value": _b64(value), "lease": lease})
        return int(data["header"]["revision"])

    async def delete(self, key: str) -> None:
        await self.call("kv/deleterange", {"key": _b64(key)})

    async def create(self, key: str, value: bytes, *, lease: int) -> TxnResult:
        """Put ``key`` only if it does not exist: the transaction's revision is the key's
        create_revision when it succeeded; otherwise the current holder is returned."""
        return await self._txn(
            {"key": _b64(key), "target": "CREATE", "result": "EQUAL", "create_revision": 0},
            key, value, lease,
        )  # fmt: skip

    async def replace_if(
        self, key: str, value: bytes, *, mod_revision: int, lease: int
    ) -> TxnResult:
        """Put ``key`` only if nobody changed it since ``mod_revision``."""
        return await self._txn(
            {"key": _b64(key), "target": "MOD", "result": "EQUAL", "mod_revision": mod_revision},
            key, value, lease,
        )  # fmt: skip

    async def delete_if(self, key: str, *, create_revision: int) -> bool:
        body = {
            "compare": [{"key": _b64(key), "target": "CREATE", "result": "EQUAL",
                         "create_revision": create_revision}],
            "success": [{"request_delete_range": {"key": _b64(key)}}],
        }  # fmt: skip
        data = await self.call("kv/txn", body)
        return bool(data.get("succeeded"))

    async def put_guarded(
        self, key: str, value: bytes, *, guard: str, create_revision: int
    ) -> bool:
        """Put ``key`` only while ``guard`` still has ``create_revision`` (a leader writing
        cluster state only while it still holds the leader key it was elected with)."""
        body = {
            "compare": [{"key": _b64(guard), "target": "CREATE", "result": "EQUAL",
                         "create_revision": create_revision}],
            "success": [{"request_put": {"key": _b64(key), "value": _b64(value)}}],
        }  # fmt: skip
        data = await self.call("kv/txn", body)
        return bool(data.get("succeeded"))

    async def _txn(self, compare: dict[str, Any], key: str, value: bytes, lease: int) -> TxnResult:
        body = {
            "compare": [compare],
            "success": [{"request_put": {"key": _b64(key), "value": _b64(value), "lease": lease}}],
            "failure": [{"request_range": {"key": _b64(key)}}],
        }
        data = await self.call("kv/txn", body)
        ok = bool(data.get("succeeded"))
        kvs: tuple[KeyValue, ...] = ()
        if not ok:
            for r in data.get("responses") or []:
                rng = r.get("response_range") or {}
                kvs = tuple(_kv(kv) for kv in rng.get("kvs") or [])
        return TxnResult(ok, int(data["header"]["revision"]), kvs)

    async def close(self) -> None:
        await self._http.aclose()
