"""Pub/sub on one node: who is subscribed here, and delivery of what the cluster published.

PUBLISH runs on the primary like a write: the message travels on a txlog record, so every
node delivers it to its own subscribers once it has applied that record, in the order the
primary committed the messages. Keyspace notifications (``__keyspace@N__:key`` and
``__keyevent@N__:event``) come from the same records' change annotations, when enabled on the
node (``notify-keyspace-events``, as in Redis: K, E, A, g, $, l, s, h, z, x and e).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from litecluster.kv.db import EVENT_CLASSES
from litecluster.kv.glob import stringmatch
from litecluster.server.kvstore import Changes


class Subscriber(Protocol):
    def deliver(self, items: list[bytes]) -> None:
        """Queue a pub/sub message (``message``/``pmessage`` and its fields) for the client."""


def _glob(pattern: bytes, channel: bytes) -> bool:
    return stringmatch(pattern, channel)  # Redis's own glob rules, on bytes


class PubSub:
    def __init__(self) -> None:
        self.channels: dict[bytes, set[Subscriber]] = {}
        self.patterns: dict[bytes, set[Subscriber]] = {}
        self.keyspace_events = ""
        """The node's notify-keyspace-events flags (empty: off)."""

    # ---- subscriptions ------------------------------------------------------------------------

    def subscribe(self, sub: Subscriber, channel: bytes, *, pattern: bool = False) -> None:
        table = self.patterns if pattern else self.channels
        table.setdefault(channel, set()).add(sub)

    def unsubscribe(self, sub: Subscriber, channel: bytes, *, pattern: bool = False) -> None:
        table = self.patterns if pattern else self.channels
        subs = table.get(channel)
        if subs is not None:
            subs.discard(sub)
            if not subs:
                del table[channel]

    def numsub(self, channel: bytes) -> int:
        return len(self.channels.get(channel, ()))

    def active_channels(self, pattern: bytes | None) -> list[bytes]:
        return sorted(c for c in self.channels if pattern is None or _glob(pattern, c))

    # ---- delivery -----------------------------------------------------------------------------

    def receivers(self, channel: bytes) -> int:
        """How many subscriptions on this node a message on ``channel`` reaches."""
        n = len(self.channels.get(channel, ()))
        return n + sum(len(s) for p, s in self.patterns.items() if _glob(p, channel))

    def publish_local(self, channel: bytes, message: bytes) -> int:
        delivered = 0
        for sub in list(self.channels.get(channel, ())):
            sub.deliver([b"message", channel, message])
            delivered += 1
        for pattern, subs in list(self.patterns.items()):
            if _glob(pattern, channel):
                for sub in list(subs):
                    sub.deliver([b"pmessage", pattern, channel, message])
                    delivered += 1
        return delivered

    def on_changes(self, changes: Changes) -> None:
        """Listener of the node's key/value changes."""
        for channel, message in changes.messages:
            self.publish_local(channel, message)
        flags = self.keyspace_events
        if not flags or not (self.channels or self.patterns):
            return
        for event, db, key in changes.events:
            if not self._enabled(flags, event):
                continue
            if "K" in flags:
                self.publish_local(b"__keyspace@%d__:%b" % (db, key), event.encode())
            if "E" in flags:
                self.publish_local(b"__keyevent@%d__:%b" % (db, event.encode()), key)

    @staticmethod
    def _enabled(flags: str, event: str) -> bool:
        cls = EVENT_CLASSES.get(event, "g")
        return cls in flags or ("A" in flags and cls in _ALL)


_ALL = "g$lshzxetd"
"""The classes "A" stands for (Redis 7)."""


def normalize_flags(raw: str) -> str | None:
    """notify-keyspace-events as Redis stores and reports it (None when a letter is unknown):
    the classes ("A" when all of them), then K, then E; nothing without K or E."""
    if any(c not in "KEA" + _ALL + "mn" for c in raw):
        return None
    flags = set(raw.replace("A", _ALL))
    if not flags & set("KE"):
        return ""
    classes = "A" if set(_ALL) <= flags else "".join(c for c in _ALL if c in flags)
    extra = "".join(c for c in "mn" if c in flags)
    return classes + extra + ("K" if "K" in flags else "") + ("E" if "E" in flags else "")


ChangeListener = Callable[[Changes], None]
