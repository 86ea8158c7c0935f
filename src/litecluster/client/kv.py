"""The key/value API of the Python client: ``client.kv``.

With an embedded replica (``litecluster.connect(..., replica=DIR)``) reads run on the local
copy of the ``kv`` database in microseconds, and writes go to the current primary (``POST
/kv/exec``) and return once it committed them; the next local read waits until the local copy
holds them, so the application reads its own writes.
Without one, every command goes to the node. The commands and their semantics are Redis's
(see docs/kv.md); values are returned as ``str`` (``decode=False`` for ``bytes``).

``watch(pattern, callback)`` (embedded mode) calls ``callback(keys)`` after changes to matching
keys are visible locally, on one dispatcher thread per client, in the order of the changes. A
slow callback delays only later callbacks, never replication, and may use the client (even
write and wait to read its own write).
"""

from __future__ import annotations

import builtins
import copy
import logging
import queue
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Any, Protocol

import httpx

from litecluster.client.errors import ClientError, response_error, transport_error
from litecluster.client.errors import KvError as KvError  # re-exported (public)
from litecluster.engine.position import Position
from litecluster.kv.commands import classify
from litecluster.kv.glob import stringmatch
from litecluster.kv.reader import LocalReader
from litecluster.kv.registry import Kind
from litecluster.kv.reply import NULL_ARRAY, Double, Err, Map, Pairs, Reply, SetReply, Simple, loads
from litecluster.kv.wire import ExecReply, ExecRequest, decode_changes, decode_reply, encode
from litecluster.replication.history import Reach

if TYPE_CHECKING:
    from litecluster.replication.replica.follower import Follower

log = logging.getLogger("litecluster.kvclient")

Value = str | bytes | int | float


class _LocalReplica(Protocol):
    """What the key/value API uses of an embedded replica."""

    @property
    def follower(self) -> Follower: ...

    def wait_for(self, db: str, position: Position, timeout: float) -> Reach: ...


class KvHost(Protocol):
    """What the key/value API uses of its client (``litecluster.client.sync.Client``), named
    here so that this module does not import the client's (which builds on this one)."""

    url: str
    timeout: float
    read_your_writes: bool
    kv_db: str
    _http: httpx.Client

    @property
    def _embedded(self) -> _LocalReplica | None: ...

    def _base(self, *, write: bool, cls: type[ClientError]) -> str:
        """The base URL a request goes to (embedded mode: the current primary)."""

    def _unreachable(self, base: str, exc: httpx.HTTPError) -> None:
        """A request could not connect to ``base`` (the client may move to another node)."""

    def _note(self, db: str, position: Position | None) -> None:
        """Remember a write's position: the next local read of ``db`` waits for it."""

    def _settle(self, db: str, cls: type[ClientError]) -> None:
        """Wait for this client's last write to ``db`` before a local read of it."""


READ_LEVELS = ("none", "strong", "linearizable")


def _level(level: str) -> str:
    if level not in READ_LEVELS:
        raise KvError("read_level must be none, strong or linearizable", value=level)
    return level


def _arg(v: Value) -> bytes:
    if isinstance(v, bytes):
        return v
    if isinstance(v, bool):
        raise TypeError("booleans are not key/value arguments; use 1/0 or a string")
    return str(v).encode() if not isinstance(v, float) else repr(v).encode()


class KV:
    """Redis-style commands on the cluster's key/value store (see the module docstring)."""

    def __init__(self, client: KvHost, *, db_index: int = 0, decode: bool = True,
                 read_level: str = "none") -> None:  # fmt: skip
        self._client = client
        self.db_index = db_index
        self.decode = decode
        self.read_level = _level(read_level)
        """``none``: reads from the embedded replica when there is one, else from the node
        (on the primary under its lease); ``strong`` / ``linearizable``: answered by the
        primary under its lease (docs/kv.md)."""
        self._reader: LocalReader | None = None
        """Reads the embedded replica's copy of the key/value database (None without one)."""
        embedded = client._embedded
        if embedded is not None:
            path = embedded.follower.config.data_dir / "db" / f"{client.kv_db}.db"
            self._reader = LocalReader(path)
        self._watches = _Watches(client)

    def at_level(self, read_level: str) -> KV:
        """The same store with reads at ``read_level`` (sharing this one's local reader and
        watches: close this one, not the view)."""
        view = copy.copy(self)
        view.read_level = _level(read_level)
        return view

    # ---- the generic path ---------------------------------------------------------------------

    def execute(self, *args: Value) -> Any:
        """Run any supported command, e.g. ``kv.execute("ZADD", "board", 10, "ann")``."""
        return self._run([[_arg(a) for a in args]])[0]

    def _run(self, commands: list[list[bytes]], *, atomic: bool = False) -> list[Any]:
        kinds = [classify(c) for c in commands]
        for kind in kinds:
            if isinstance(kind, Err):
                raise KvError(kind.text)
        reads = all(kind is Kind.READ for kind in kinds)
        reader = self._reader if self.read_level == "none" else None
        if reads and reader is not None:
            self._client._settle(self._client.kv_db, KvError)
            now = time.time_ns() // 1_000_000
            replies = reader.read([(self.db_index, c) for c in commands], now)
        else:
            replies = self._remote(commands, atomic=atomic, write=not reads)
        return [self._convert(r) for r in replies]

    def _remote(self, commands: list[list[bytes]], *, atomic: bool, write: bool) -> list[Reply]:
        wire = [(self.db_index, c) for c in commands]
        level = "" if write or self.read_level == "none" else self.read_level
        got = self._post(encode(ExecRequest(wire, [], 0, [], atomic, level)), write=write)
        if got.replies is None:
            raise KvError("the transaction was aborted")
        if write and got.txid:
            self._client._note(self._client.kv_db, Position(got.epoch, got.txid))
        return [loads(r) for r in got.replies]

    def _post(self, body: bytes, *, write: bool) -> ExecReply:
        base = self._client._base(write=write, cls=KvError)
        try:
            resp = self._client._http.post(
                base + "/kv/exec", content=body, headers={"Content-Type": "application/msgpack"}
            )
        except httpx.HTTPError as exc:
            self._client._unreachable(base, exc)
            raise transport_error(base, exc, write=write, cls=KvError) from None
        if resp.status_code != 200:
            try:
                data = resp.json()
            except ValueError:
                data = None
            if not isinstance(data, dict):
                data = {"error": f"unexpected response {resp.status_code}"}
            raise response_error(resp.status_code, data, cls=KvError)
        return decode_reply(resp.content)

    def _convert(self, reply: Reply) -> Any:
        if isinstance(reply, Err):
            raise KvError(reply.text)
        if isinstance(reply, bytes):
            return reply.decode("utf-8", "surrogateescape") if self.decode else reply
        if isinstance(reply, Simple):
            return reply.text
        if isinstance(reply, Double):
            return reply.value
        if isinstance(reply, Map | Pairs):
            return {self._convert(k): self._convert(v) for k, v in reply.items}
        if isinstance(reply, SetReply):
            return {self._convert(v) for v in reply.items}
        if isinstance(reply, list):
            return [self._convert(v) for v in reply]
        if reply is NULL_ARRAY:
            return None
        return reply

    # ---- strings and keys ---------------------------------------------------------------------

    def get(self, key: Value) -> Any:
        reader = self._reader
        if reader is None or self.read_level != "none":
            return self.execute("GET", key)
        self._client._settle(self._client.kv_db, KvError)
        return self._convert(reader.get(self.db_index, _arg(key), time.time_ns() // 1_000_000))

    def set(self, key: Value, value: Value, *, ttl: float | None = None, nx: bool = False,
            xx: bool = False) -> bool:  # fmt: skip
        """Set ``key``; ``ttl`` in seconds (fractions allowed). False when NX/XX prevented it."""
        args: list[Value] = ["SET", key, value]
        if ttl is not None:
            args += ["PX", max(1, int(ttl * 1000))]
        if nx:
            args.append("NX")
        if xx:
            args.append("XX")
        return bool(self.execute(*args) == "OK")

    def mget(self, *keys: Value) -> list[Any]:
        return list(self.execute("MGET", *keys))

    def delete(self, *keys: Value) -> int:
        return int(self.execute("DEL", *keys))

    def exists(self, *keys: Value) -> int:
        return int(self.execute("EXISTS", *keys))

    def incr(self, key: Value, by: int = 1) -> int:
        return int(self.execute("INCRBY", key, by))

    def expire(self, key: Value, seconds: float) -> bool:
        return bool(self.execute("PEXPIRE", key, max(1, int(seconds * 1000))))

    def persist(self, key: Value) -> bool:
        return bool(self.execute("PERSIST", key))

    def ttl(self, key: Value) -> float | None:
        """Seconds left; None when the key has no expiry; -2.0 when there is no key."""
        ms = int(self.execute("PTTL", key))
        if ms == -1:
            return None
        return -2.0 if ms == -2 else ms / 1000

    def scan(self, match: str | None = None, count: int = 100) -> Iterator[Any]:
        """Every key (matching ``match``) present for the whole iteration, each once or more."""
        cursor = "0"
        while True:
            args: list[Value] = ["SCAN", cursor, "COUNT", count]
            if match is not None:
                args += ["MATCH", match]
            cursor, keys = self.execute(*args)
            cursor = str(cursor)
            yield from keys
            if cursor == "0":
                return

    # ---- hashes, sets, lists ------------------------------------------------------------------

    def hset(self, key: Value, mapping: dict[Value, Value]) -> int:
        return int(self.execute("HSET", key, *[x for kv in mapping.items() for x in kv]))

    def hget(self, key: Value, field: Value) -> Any:
        return self.execute("HGET", key, field)

    def hgetall(self, key: Value) -> dict[Any, Any]:
        got = self.execute("HGETALL", key)
        if isinstance(got, dict):
            return got
        return dict(zip(got[::2], got[1::2], strict=True))

    def hdel(self, key: Value, *fields: Value) -> int:
        return int(self.execute("HDEL", key, *fields))

    def hincr(self, key: Value, field: Value, by: int = 1) -> int:
        return int(self.execute("HINCRBY", key, field, by))

    def sadd(self, key: Value, *members: Value) -> int:
        return int(self.execute("SADD", key, *members))

    def srem(self, key: Value, *members: Value) -> int:
        return int(self.execute("SREM", key, *members))

    def smembers(self, key: Value) -> builtins.set[Any]:
        return builtins.set(self.execute("SMEMBERS", key))

    def sismember(self, key: Value, member: Value) -> bool:
        return bool(self.execute("SISMEMBER", key, member))

    def lpush(self, key: Value, *values: Value) -> int:
        return int(self.execute("LPUSH", key, *values))

    def rpush(self, key: Value, *values: Value) -> int:
        return int(self.execute("RPUSH", key, *values))

    def lpop(self, key: Value) -> Any:
        return self.execute("LPOP", key)

    def rpop(self, key: Value) -> Any:
        return self.execute("RPOP", key)

    def lrange(self, key: Value, start: int = 0, stop: int = -1) -> list[Any]:
        return list(self.execute("LRANGE", key, start, stop))

    # ---- atomic updates and change notifications ----------------------------------------------

    def atomic(self) -> Atomic:
        """``with kv.atomic() as tx: tx.set(...); tx.incr(...)``: all of it in one transaction
        on the primary when the block ends (results in ``tx.results``), or none if it raises."""
        return Atomic(self)

    def watch(self, pattern: str, callback: Callable[[list[str]], None]) -> Callable[[], None]:
        """Call ``callback(keys)`` after changes to keys matching ``pattern`` (a Redis glob)
        are visible in the embedded replica. Returns a function that stops the watch: once it
        returned, the callback is not called again (unless it is running at that moment)."""
        if self._client._embedded is None:
            raise KvError("watch needs an embedded replica (connect with replica=DIR)",
                          hint="or subscribe to keyspace notifications over --resp")  # fmt: skip
        return self._watches.add(_Watch(pattern.encode(), self.db_index, callback))

    def close(self) -> None:
        self._watches.close()
        if self._reader is not None:
            self._reader.close()


class Atomic:
    """Commands collected and run in one transaction (see :meth:`KV.atomic`)."""

    def __init__(self, kv: KV) -> None:
        self._kv = kv
        self._commands: list[list[bytes]] = []
        self.results: list[Any] = []

    def execute(self, *args: Value) -> Atomic:
        self._commands.append([_arg(a) for a in args])
        return self

    def set(self, key: Value, value: Value, *, ttl: float | None = None) -> Atomic:
        extra: list[Value] = ["PX", max(1, int(ttl * 1000))] if ttl is not None else []
        return self.execute("SET", key, value, *extra)

    def incr(self, key: Value, by: int = 1) -> Atomic:
        return self.execute("INCRBY", key, by)

    def delete(self, *keys: Value) -> Atomic:
        return self.execute("DEL", *keys)

    def hset(self, key: Value, mapping: dict[Value, Value]) -> Atomic:
        return self.execute("HSET", key, *[x for kv in mapping.items() for x in kv])

    def sadd(self, key: Value, *members: Value) -> Atomic:
        return self.execute("SADD", key, *members)

    def rpush(self, key: Value, *values: Value) -> Atomic:
        return self.execute("RPUSH", key, *values)

    def __enter__(self) -> Atomic:
        return self

    def __exit__(self, t: type[BaseException] | None, e: BaseException | None,
                 tb: TracebackType | None) -> None:  # fmt: skip
        if t is None and self._commands:
            self.results = self._kv._run(self._commands, atomic=True)


@dataclass(eq=False)
class _Watch:
    pattern: bytes
    db_index: int
    callback: Callable[[list[str]], None]
    active: bool = True


class _Watches:
    """A client's watches: one listener on the embedded follower, callbacks on a thread.

    The follower calls its listeners on the replica's event loop, between applying records: a
    callback run there would hold replication up (and deadlock if it wrote and waited to read
    its write back). The listener only queues the changed keys; one dispatcher thread per
    client calls the callbacks, in order. The follower's listener list is never changed after
    the first watch: stopping a watch from any thread only edits this object's own list.
    """

    def __init__(self, client: KvHost) -> None:
        self._client = client
        self._lock = threading.Lock()
        self._watches: list[_Watch] = []
        self._queue: queue.SimpleQueue[list[tuple[int, bytes]] | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._closed = False

    def add(self, watch: _Watch) -> Callable[[], None]:
        embedded = self._client._embedded
        assert embedded is not None
        with self._lock:
            if self._closed:
                raise KvError("the client is closed")
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._dispatch, name="litecluster-kv-watch", daemon=True
                )
                self._thread.start()
                embedded.follower.on_annotations.append(self._on_record)
            self._watches.append(watch)

        def stop() -> None:
            with self._lock:
                watch.active = False
                if watch in self._watches:
                    self._watches.remove(watch)

        return stop

    def _on_record(self, db: str, txid: int, notes: list[bytes]) -> None:
        """On the replica's event loop: hand the changed keys on, nothing more."""
        if db != self._client.kv_db or self._closed:
            return
        keys = [
            (dbi, key)
            for changes in map(decode_changes, notes)
            if changes is not None
            for _, dbi, key in changes.events
        ]
        if keys:
            self._queue.put(keys)

    def _dispatch(self) -> None:
        while (keys := self._queue.get()) is not None:
            with self._lock:
                watches = list(self._watches)  # callbacks may stop watches, or add them
            for watch in watches:
                matched = sorted(
                    {k.decode("utf-8", "surrogateescape") for dbi, k in keys
                     if dbi == watch.db_index and stringmatch(watch.pattern, k)}
                )  # fmt: skip
                if not matched or not watch.active:
                    continue
                try:
                    watch.callback(matched)
                except Exception:  # one callback's bug must not stop the others
                    log.exception("kv.watch_callback_failed pattern=%r", watch.pattern)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._watches.clear()
            thread = self._thread
        if thread is None:
            return
        self._queue.put(None)
        if thread is not threading.current_thread():  # close() from a callback: it ends after
            thread.join(self._client.timeout)
            if thread.is_alive():
                log.warning("kv.watch_dispatcher_still_busy (a callback has not returned)")
