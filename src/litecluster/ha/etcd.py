"""A small client for etcd's v3 API over its JSON gateway (``/v3/kv/...``, ``/v3/lease/...``).

Why our own: the ``etcd3`` PyPI package is unmaintained and breaks with current protobuf;
Patroni talks to etcd the same way. Keys and values are base64 in the JSON; 64-bit integers
come back as strings. Several endpoints may be given: a request that cannot reach one tries
the next, and any of them failing for every endpoint raises :class:`EtcdUnavailableError`
(the seam's :class:`~litecluster.ha.leadership.StoreUnavailableError`: it must not be read
as "lost the race").
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any

import httpx

from litecluster.ha.leadership import StoreError, StoreUnavailableError


class EtcdError(StoreError):
    """etcd answered with an error."""


class EtcdUnavailableError(EtcdError, StoreUnavailableError):
    """No etcd endpoint answered in time. A request that reached etcd may still have been
    applied, but every call of the leadership is a compare-and-set or a read, so repeating it
    at the next round is safe: retryable."""

    default_hint = "check --etcd endpoints and that etcd is running"
    retryable = True


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
    def __init__(self, endpoints: list[str], *, timeout: float = 2.0) -> None:
        if not endpoints:
            raise EtcdError("no etcd endpoints")
        self.endpoints = [e.rstrip("/") for e in endpoints]
        self._current = 0
        self._http = httpx.AsyncClient(timeout=timeout)

    async def call(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        errors = []
        for i in range(len(self.endpoints)):
            base = self.endpoints[(self._current + i) % len(self.endpoints)]
            try:
                resp = await self._http.post(f"{base}/v3/{path}", json=body)
            except httpx.HTTPError as exc:
                errors.append(f"{base}: {exc!r}")
                continue
            self._current = (self._current + i) % len(self.endpoints)
            data: dict[str, Any] = resp.json()
            if resp.status_code != 200 or "error" in data:
                raise EtcdError(
                    f"etcd {path}: {data.get('error') or data.get('message') or resp.status_code}",
                    code=data.get("code"),
                )
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
