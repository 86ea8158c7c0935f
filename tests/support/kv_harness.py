"""A real redis-server and the litecluster executor side by side, for differential tests.

:class:`RedisServer` starts ``/usr/bin/redis-server`` on a free 127.0.0.1 port without
persistence. :class:`RawClient` talks to it over a socket with litecluster's own RESP code
(requests encoded by :func:`encode_command`, replies read by :class:`ReplyParser`) and keeps
the raw reply bytes, so replies can be compared byte for byte with what
:func:`litecluster.kv.resp.encode` makes of the executor's reply. :class:`Twin` runs each
command on both and compares, normalising only the documented exceptions.
"""

from __future__ import annotations

import contextlib
import math
import shutil
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

from litecluster import kv
from litecluster.engine.sqlite import Connection, connect
from litecluster.kv.reply import Double, Err, Map, Reply, SetReply
from litecluster.kv.resp import ReplyParser, encode, encode_command

REDIS = shutil.which("redis-server") or "/usr/bin/redis-server"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


class RedisServer:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        for _ in range(3):
            self.port = free_port()
            self.proc = subprocess.Popen(
                [REDIS, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                 "--appendonly", "no", "--dir", str(self.directory)],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
            )  # fmt: skip
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and self.proc.poll() is None:
                with contextlib.suppress(OSError):
                    RawClient(self.port).close()
                    return
                time.sleep(0.02)
            self.stop()
        raise RuntimeError("redis-server did not start")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self.proc = None


def args_of(parts: tuple[Any, ...] | list[Any]) -> list[bytes]:
    return [p if isinstance(p, bytes) else str(p).encode() for p in parts]


class RawClient:
    """One connection to redis-server speaking RESP2 or RESP3."""

    def __init__(self, port: int, proto: int = 2) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.parser = ReplyParser()
        self.proto = proto
        if proto == 3:
            self.call("HELLO", "3")

    def send_raw(self, data: bytes) -> tuple[Reply, bytes]:
        """Send bytes, read one reply: (parsed, the exact bytes of that reply)."""
        self.sock.sendall(data)
        raw = bytearray()
        while True:
            got = self.parser.get()
            if got is not ReplyParser:
                return got, bytes(raw)  # type: ignore[return-value]
            chunk = self.sock.recv(1 << 20)
            if not chunk:
                raise ConnectionError("redis-server closed the connection")
            raw += chunk
            self.parser.feed(chunk)

    def call_raw(self, *parts: Any) -> tuple[Reply, bytes]:
        return self.send_raw(encode_command(args_of(parts)))

    def call(self, *parts: Any) -> Reply:
        return self.call_raw(*parts)[0]

    def close(self) -> None:
        self.sock.close()


def parse_one(data: bytes) -> Reply:
    p = ReplyParser()
    p.feed(data)
    got = p.get()
    assert got is not ReplyParser, data
    return got  # type: ignore[return-value]


def now_ms() -> int:
    return int(time.time() * 1000)


# ---- normalisation ---------------------------------------------------------------------------

UNORDERED = {
    b"smembers", b"sinter", b"sunion", b"sdiff", b"keys", b"hgetall", b"hkeys", b"hvals",
}  # fmt: skip
"""Commands whose element order is the hash table's in Redis (documented exception)."""

TTL_TOLERANCE = {b"ttl": 1, b"expiretime": 1, b"pttl": 250, b"pexpiretime": 250}
"""Commands whose reply depends on each side's clock (relative expiry set a moment apart)."""


def _key(r: Reply) -> Any:
    return repr(r)


def normalise(name: bytes, reply: Reply) -> Reply:
    if name in UNORDERED:
        if isinstance(reply, Map):
            return Map(sorted(reply.items, key=_key))
        if isinstance(reply, SetReply):
            return SetReply(sorted(reply.items, key=_key))
        if isinstance(reply, list):
            return sorted(reply, key=_key)
    return reply


def same(name: bytes, ours: Reply, theirs: Reply) -> bool:
    if name in TTL_TOLERANCE and isinstance(ours, int) and isinstance(theirs, int):
        if ours < 0 or theirs < 0:
            return ours == theirs
        return abs(ours - theirs) <= TTL_TOLERANCE[name]
    if isinstance(ours, Double) and isinstance(theirs, Double):
        return ours.value == theirs.value or (math.isnan(ours.value) and math.isnan(theirs.value))
    return normalise(name, ours) == normalise(name, theirs)


class Twin:
    """The executor on a real SQLite file and a redis-server, fed the same commands."""

    def __init__(self, db_path: Path, port: int) -> None:
        self.conn: Connection = connect(db_path)
        self.conn.execute("PRAGMA journal_mode=WAL")
        kv.ensure_schema(self.conn)
        self.r3 = RawClient(port, 3)
        self.r2 = RawClient(port, 2)
        self.db = 0
        self.log: list[str] = []

    def close(self) -> None:
        self.r3.close()
        self.r2.close()
        self.conn.close()

    def reset(self) -> None:
        self.ours("FLUSHALL")
        self.r3.call("FLUSHALL")
        self.log.clear()

    def ours(self, *parts: Any) -> Reply:
        return kv.execute(self.conn, self.db, now_ms(), args_of(parts)).reply

    def theirs(self, *parts: Any) -> Reply:
        return self.r3.call(*parts)

    def check(self, *parts: Any) -> Reply:
        """Run on both; assert the replies match (bytes too where the order is defined).

        Commands alternate between a RESP3 and a RESP2 connection to redis-server, so that
        both encodings of write replies are compared too; a read is also asked on the other
        connection (reads change nothing) and compared in both protocols.
        """
        args = args_of(parts)
        name = args[0].lower()
        proto = 3 if len(self.log) % 2 == 0 else 2
        self.log.append(" ".join(repr(a)[2:-1] for a in args) + f"  (RESP{proto})")
        client = self.r3 if proto == 3 else self.r2
        theirs, their_bytes = client.send_raw(encode_command(args))
        outcome = kv.execute(self.conn, self.db, now_ms(), args)
        our_bytes = encode(outcome.reply, proto)
        ours = parse_one(our_bytes)
        context = "\n  ".join(self.log[-25:])
        assert same(name, ours, theirs), (
            f"RESP{proto} reply differs\n  ours:   {ours!r}\n  redis:  {theirs!r}"
            f"\n  after:\n  {context}"
        )
        exact = name not in UNORDERED and name not in TTL_TOLERANCE
        if exact:
            assert our_bytes == their_bytes, (
                f"RESP{proto} bytes differ\n  ours:  {our_bytes!r}\n  redis: {their_bytes!r}"
                f"\n  after:\n  {context}"
            )
        cmd = kv.lookup(args)
        if exact and not isinstance(cmd, Err) and cmd.info.readonly:
            other = 5 - proto
            _, other_bytes = (self.r3 if other == 3 else self.r2).send_raw(encode_command(args))
            assert encode(outcome.reply, other) == other_bytes, (
                f"RESP{other} bytes differ\n  ours:  {encode(outcome.reply, other)!r}"
                f"\n  redis: {other_bytes!r}\n  after:\n  {context}"
            )
        return outcome.reply

    def select(self, db: int) -> None:
        self.db = db
        self.r3.call("SELECT", db)
        self.r2.call("SELECT", db)

    # ---- commands whose replies are not deterministic: checked by their properties -------

    def check_scan(self, name: str, key: bytes | None, opts: list[Any]) -> None:
        """Iterate SCAN/HSCAN/SSCAN/ZSCAN to the end on both: the same set of elements."""

        def iterate(call: Any) -> set[Any]:
            seen: set[Any] = set()
            cursor = b"0"
            for _ in range(10_000):
                head = [name] + ([key] if key is not None else [])
                reply = call(*head, cursor, *opts)
                if isinstance(reply, Err):
                    return {("error", reply.text)}
                cursor, items = reply  # type: ignore[misc]
                if name.upper() in ("HSCAN", "ZSCAN"):
                    seen.update(zip(items[0::2], items[1::2], strict=True))
                else:
                    seen.update(items)
                if cursor == b"0":
                    return seen
            raise AssertionError("the scan did not end")

        self.log.append(f"{name} {key!r} {opts!r} (full iteration)")
        ours, theirs = iterate(self.ours), iterate(self.theirs)
        assert ours == theirs, (
            f"{name} differs\n  ours:  {ours}\n  redis: {theirs}\n  after:\n  "
            + "\n  ".join(self.log[-25:])
        )

    def check_random(self, *parts: Any) -> None:
        """SRANDMEMBER, HRANDFIELD, RANDOMKEY, SPOP: the same shape, elements that exist; after
        SPOP, this side is made to hold what redis-server kept."""
        args = args_of(parts)
        name = args[0].upper()
        self.log.append(" ".join(repr(a)[2:-1] for a in args) + " (by properties)")
        context = "\n  ".join(self.log[-25:])
        before = self.theirs("SMEMBERS", args[1]) if name == b"SPOP" else None
        theirs = self.theirs(*args)
        ours = parse_one(encode(self.ours(*args), 3))
        if isinstance(theirs, Err) or isinstance(ours, Err):
            assert ours == theirs, f"{ours!r} != {theirs!r} after\n  {context}"
            return
        if name == b"RANDOMKEY":
            assert (ours is None) == (theirs is None), context
            if ours is not None:
                assert self.theirs("EXISTS", ours) == 1, context
            return
        if theirs is None or ours is None:
            assert ours == theirs, f"{ours!r} != {theirs!r} after\n  {context}"
            return
        if name == b"SPOP":
            members = set(before.items if isinstance(before, SetReply) else [])
            got_ours = set(ours.items) if isinstance(ours, SetReply) else {ours}
            got_theirs = set(theirs.items) if isinstance(theirs, SetReply) else {theirs}
            assert type(ours) is type(theirs), context
            assert len(got_ours) == len(got_theirs), context
            assert got_ours <= members, context
            if got_ours != got_theirs:  # resynchronise: keep what redis-server kept
                extra = sorted(got_ours - got_theirs)
                gone = sorted(got_theirs - got_ours)
                self.ours("SADD", args[1], *extra)
                self.ours("SREM", args[1], *gone)
            return
        self._check_sample(name, args, ours, theirs, context)

    def _check_sample(
        self, name: bytes, args: list[bytes], ours: Reply, theirs: Reply, context: str
    ) -> None:
        is_hash = name == b"HRANDFIELD"
        if is_hash:
            whole = self.theirs("HGETALL", args[1])
            assert isinstance(whole, Map)
            fields = dict(whole.items)
            members: set[Any] = set(fields)
        else:
            whole = self.theirs("SMEMBERS", args[1])
            members = set(whole.items) if isinstance(whole, SetReply) else set()
        if len(args) == 2:
            assert ours in members, context
            return
        assert isinstance(ours, list), context
        assert isinstance(theirs, list), context
        assert len(ours) == len(theirs), f"{ours!r} vs {theirs!r} after\n  {context}"
        withvalues = len(args) == 4
        for item in ours:
            if withvalues:
                assert isinstance(item, list), context
                assert item[0] in members, context
                assert fields[item[0]] == item[1], context
            else:
                assert item in members, context
        count = int(args[2])
        if count > 0:
            firsts = [i[0] if withvalues else i for i in ours]  # type: ignore[index]
            assert len(set(firsts)) == len(firsts), context
