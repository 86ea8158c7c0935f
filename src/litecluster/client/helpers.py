"""What teams use Redis for, on the replicated key/value store: sessions, feature flags and
live configuration. Reads come from the embedded replica (microseconds, no network), writes go
to the primary. Every helper takes a :class:`~litecluster.client.kv.KV` (``client.kv``).
"""

from __future__ import annotations

import json
import secrets
from typing import Any

import xxhash

from litecluster.client.kv import KV, KvError


class SessionStore:
    """Sessions as JSON strings under ``prefix + id`` with a sliding expiry.

    ``get`` reads locally and renews the expiry (a write) only once less than half of
    ``ttl`` is left, so a busy session costs one write per half-TTL, not one per request.
    """

    def __init__(self, kv: KV, *, ttl: float = 1800.0, prefix: str = "session:") -> None:
        self.kv, self.ttl, self.prefix = kv, ttl, prefix

    def create(self, data: dict[str, Any]) -> str:
        sid = secrets.token_urlsafe(24)
        self.kv.set(self.prefix + sid, json.dumps(data), ttl=self.ttl)
        return sid

    def get(self, sid: str) -> dict[str, Any] | None:
        key = self.prefix + sid
        raw = self.kv.get(key)
        if raw is None:
            return None
        left = self.kv.ttl(key)
        if left is not None and 0 <= left < self.ttl / 2:
            self.refresh(sid)
        data: dict[str, Any] = json.loads(raw)
        return data

    def save(self, sid: str, data: dict[str, Any]) -> None:
        self.kv.set(self.prefix + sid, json.dumps(data), ttl=self.ttl)

    def refresh(self, sid: str) -> bool:
        """Extend the session to a full ``ttl``; False when it is gone."""
        return self.kv.expire(self.prefix + sid, self.ttl)

    def destroy(self, sid: str) -> None:
        self.kv.delete(self.prefix + sid)


class FeatureFlags:
    """Flags as hashes under ``prefix + name``: ``on`` (0/1), ``percent`` (0-100) and
    ``allow`` (a JSON list of subject ids that always get the flag).

    A subject gets a flag when the flag is on and the subject is allowed, or falls in the
    rollout: a stable hash of ``name:subject`` below ``percent`` out of 100, so raising the
    percentage only adds subjects and every node (and process) decides the same way.
    """

    def __init__(self, kv: KV, *, prefix: str = "flag:") -> None:
        self.kv, self.prefix = kv, prefix

    def set(self, name: str, *, on: bool = True, percent: float = 100.0,
            allow: list[str] | None = None) -> None:  # fmt: skip
        if not 0 <= percent <= 100:
            raise KvError("percent must be between 0 and 100", value=percent)
        self.kv.hset(self.prefix + name, {"on": int(on), "percent": percent,
                                          "allow": json.dumps(allow or [])})  # fmt: skip

    def is_enabled(self, name: str, subject: str | None = None) -> bool:
        flag = self.kv.hgetall(self.prefix + name)
        if not flag or flag.get("on") != "1":
            return False
        if subject is None:
            return float(flag.get("percent", 100)) >= 100
        if subject in json.loads(flag.get("allow", "[]")):
            return True
        return bucket(name, subject) < float(flag.get("percent", 100))

    def delete(self, name: str) -> None:
        self.kv.delete(self.prefix + name)


def bucket(name: str, subject: str) -> float:
    """Where ``subject`` falls in the rollout of flag ``name``: [0, 100), stable everywhere."""
    return xxhash.xxh3_64_intdigest(f"{name}:{subject}".encode()) % 10_000 / 100


class ConfigValues:
    """Live configuration: values under ``prefix + name``, read locally, with typed getters
    that return ``default`` when a value is missing and raise when it does not parse."""

    def __init__(self, kv: KV, *, prefix: str = "config:") -> None:
        self.kv, self.prefix = kv, prefix

    def set(self, name: str, value: Any) -> None:
        text = json.dumps(value) if isinstance(value, dict | list | bool) else str(value)
        self.kv.set(self.prefix + name, text)

    def _raw(self, name: str) -> str | None:
        value = self.kv.get(self.prefix + name)
        return None if value is None else str(value)

    def get_str(self, name: str, default: str | None = None) -> str | None:
        raw = self._raw(name)
        return default if raw is None else raw

    def get_int(self, name: str, default: int | None = None) -> int | None:
        raw = self._raw(name)
        return default if raw is None else self._parse(name, raw, int)

    def get_float(self, name: str, default: float | None = None) -> float | None:
        raw = self._raw(name)
        return default if raw is None else self._parse(name, raw, float)

    def get_bool(self, name: str, default: bool | None = None) -> bool | None:
        raw = self._raw(name)
        if raw is None:
            return default
        text = raw.strip().lower()
        if text in ("1", "true", "yes", "on"):
            return True
        if text in ("0", "false", "no", "off"):
            return False
        raise KvError(f"config value {name!r} is not a boolean", value=raw)

    def get_json(self, name: str, default: Any = None) -> Any:
        raw = self._raw(name)
        return default if raw is None else self._parse(name, raw, json.loads)

    @staticmethod
    def _parse(name: str, raw: str, kind: Any) -> Any:
        try:
            return kind(raw)
        except ValueError:
            raise KvError(f"config value {name!r} does not parse as {kind.__name__}",
                          value=raw) from None  # fmt: skip
