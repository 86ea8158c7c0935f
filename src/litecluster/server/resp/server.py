"""The Redis-protocol server of a node (``--resp HOST:PORT``): RESP2 and RESP3 clients.

Reads run on this node's own file; writes run on the primary (forwarded by a replica, or
answered ``-READONLY`` when ``resp_replica_writes = "readonly"``). Commands a client pipelines
are taken in runs: consecutive reads in one read transaction, consecutive writes in one
request to the primary (one transaction, each command in its own savepoint), so a pipeline of
writes costs one commit, not one per command. The connection-level commands (AUTH, HELLO,
SELECT, CLIENT, MULTI/EXEC/WATCH, pub/sub, INFO, COMMAND, CONFIG) are answered here.

Memory per client is bounded: the parser caps a request's size, replies are flushed (and the
client awaited) every 64 KiB, and a subscriber whose unread output passes
``resp_output_limit`` is disconnected, as Redis's client-output-buffer-limit does.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import ssl
from dataclasses import dataclass
from typing import Protocol

from litecluster.errors import LiteclusterError, PermissionDeniedError
from litecluster.kv.commands import COMMANDS, classify, lookup, wrong_arity
from litecluster.kv.errors import RespProtocolError
from litecluster.kv.registry import Kind
from litecluster.kv.reply import NULL_ARRAY, OK, PONG, QUEUED, Err, Push, Reply, Simple
from litecluster.kv.resp import RequestParser, encode_into
from litecluster.replication.config import Address
from litecluster.server.credentials import ANYONE, Credentials, Identity
from litecluster.server.kvstore import READ_LEVELS, Key, Request
from litecluster.server.resp import acl
from litecluster.server.resp import info as respinfo
from litecluster.server.resp.pubsub import PubSub

log = logging.getLogger("litecluster.resp")

FLUSH_BYTES = 64 * 1024
RUN_MAX = 64
"""Pipelined commands answered together at most: bounds the replies held before a flush."""
_ids = itertools.count(1)
_SUBSCRIBED_OK = {b"subscribe", b"unsubscribe", b"psubscribe", b"punsubscribe", b"ping",
                  b"quit", b"reset"}  # fmt: skip
_IN_MULTI = {b"exec", b"discard", b"multi", b"watch", b"quit", b"reset"}


class Client:
    """One connection's state."""

    def __init__(self, writer: asyncio.StreamWriter, authed: bool, output_limit: int,
                 read_level: str = "none") -> None:  # fmt: skip
        self.id = next(_ids)
        self.writer = writer
        self.name = b""
        self.db = 0
        self.proto = 2
        self.authed = authed
        self.who: Identity = ANYONE
        """Who authenticated on this connection (what it may run; whose credentials a
        forwarded command carries)."""
        self.multi: list[tuple[int, list[bytes]]] | None = None
        self.multi_failed = False
        self.watch: list[Key] = []
        self.watch_since = 0
        self.read_level = read_level
        """``CLIENT READLEVEL``: the level of this connection's reads (docs/kv.md)."""
        self.channels: set[bytes] = set()
        self.patterns: set[bytes] = set()
        self.output_limit = output_limit

    @property
    def subscriptions(self) -> int:
        return len(self.channels) + len(self.patterns)

    def deliver(self, items: list[bytes]) -> None:
        out = bytearray()
        encode_into(out, Push(list(items)) if self.proto == 3 else list(items), self.proto)
        transport = self.writer.transport
        if transport.is_closing():
            return
        if transport.get_write_buffer_size() + len(out) > self.output_limit:
            log.warning("resp.subscriber_dropped client=%d reason=output buffer limit", self.id)
            transport.abort()
            return
        self.writer.write(out)


class Store(Protocol):
    """The key/value store behind the RESP door (``kvstore.KvStore`` fits)."""

    async def read(self, commands: list[tuple[int, list[bytes]]], level: str,
                   caller: str | None = None) -> list[Reply]:  # fmt: skip
        """Run read-only commands in one read transaction at ``level`` (on the primary under
        its lease; elsewhere locally, or forwarded to the primary for ``strong`` and
        ``linearizable``). Failures raise errors of the package."""

    async def write(self, request: Request) -> list[Reply] | None:
        """Run ``request`` on the primary; None when EXEC was aborted by a watched key.
        Failures raise errors of the package (their properties pick the reply)."""

    def keyspace(self) -> dict[int, tuple[int, int]]:
        """Keys and keys with an expiry per DB index."""

    def applied_txid(self) -> int:
        """The txid visible in this node's file (what WATCH watches from)."""


@dataclass(frozen=True)
class RespSettings:
    """The RESP door's part of the node configuration."""

    address: Address
    """Where to listen (port 0: any free port)."""
    tls: ssl.SSLContext | None
    """The server context (None: plain TCP)."""
    passwords: dict[str, str]
    """``resp_users_file``'s users and their plain passwords (they may run everything)."""
    credentials: Credentials | None = None
    """The cluster tokens (user ``default``) and the users file's users (None, and no
    ``passwords``: no AUTH needed)."""
    readonly_replica: bool = False
    """Answer writes on a non-primary ``-READONLY`` instead of forwarding them."""
    output_limit: int = 32 * 1024 * 1024
    """Bytes of unread output after which a subscriber is disconnected."""
    read_level: str = "none"
    """The read level each connection starts with (and returns to on RESET): a client that
    reconnects on its own (redis-py retries a timed-out command on a new connection) keeps
    it, which a ``CLIENT READLEVEL`` sent once does not survive."""


class RespServer:
    def __init__(
        self, node: respinfo.InfoSource, store: Store, pubsub: PubSub, settings: RespSettings
    ) -> None:
        self.node = node
        self.store = store
        self.pubsub = pubsub
        self.settings = settings
        self.clients: dict[int, Client] = {}
        self._server: asyncio.Server | None = None
        self.readonly_replica = settings.readonly_replica
        self.passwords = settings.passwords
        self.credentials = settings.credentials
        self.auth_required = bool(self.passwords) or self.credentials is not None

    async def start(self) -> str:
        """Listen; returns the bound address as HOST:PORT."""
        address = self.settings.address
        self._server = await asyncio.start_server(
            self._handle, address.host, address.port, ssl=self.settings.tls, reuse_address=True
        )
        port = self._server.sockets[0].getsockname()[1]
        return f"{address.host}:{port}"

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            for client in list(self.clients.values()):
                client.writer.transport.abort()
            await self._server.wait_closed()

    def _replica(self) -> bool:
        """Whether writes go elsewhere: this node is not the primary right now."""
        return self.node.role != "primary"

    # ---- connections --------------------------------------------------------------------------

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        client = Client(writer, authed=not self.auth_required, output_limit=self.settings.output_limit,
                        read_level=self.settings.read_level)  # fmt: skip
        self.clients[client.id] = client
        parser = RequestParser(authenticated=client.authed)
        try:
            while not writer.transport.is_closing():
                data = await reader.read(65536)
                if not data:
                    break
                out = bytearray()
                try:
                    parser.feed(data)
                    batch = []
                    while (args := parser.get()) is not None:
                        batch.append(args)
                except RespProtocolError as exc:
                    encode_into(out, Err(exc.reply_text), client.proto)
                    writer.write(out)
                    await writer.drain()
                    break
                quit_after = await self._run_batch(client, batch, out, writer)
                parser.authenticated = client.authed
                if out:
                    writer.write(out)
                await writer.drain()
                if quit_after:
                    break
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            self._forget(client)
            writer.close()

    def _forget(self, client: Client) -> None:
        self.clients.pop(client.id, None)
        for channel in client.channels:
            self.pubsub.unsubscribe(client, channel)
        for pattern in client.patterns:
            self.pubsub.unsubscribe(client, pattern, pattern=True)

    async def _run_batch(self, client: Client, batch: list[list[bytes]], out: bytearray,
                         writer: asyncio.StreamWriter) -> bool:  # fmt: skip
        """Answer ``batch`` in order into ``out``; True when the client asked to QUIT."""
        i = 0
        while i < len(batch):
            kind = self._plain_kind(client, batch[i])
            if kind is None:
                name = batch[i][0].lower()
                reply = await self._one(client, batch[i])
                if isinstance(reply, _Pushes):
                    for items in reply.items:
                        encode_into(out, Push(items) if client.proto == 3 else items, client.proto)
                else:
                    encode_into(out, reply, client.proto)
                i += 1
                if name == b"quit":
                    return True
            else:
                j = i + 1
                while (j < len(batch) and j - i < RUN_MAX
                       and self._plain_kind(client, batch[j]) == kind):  # fmt: skip
                    j += 1
                commands = [(client.db, args) for args in batch[i:j]]
                for reply in await self._plain(kind, commands, client.read_level, client.who):
                    encode_into(out, reply, client.proto)
                i = j
            if len(out) > FLUSH_BYTES:
                # A copy: the transport keeps a view of what it could not send at once, and
                # clearing the buffer under that view raised BufferError and dropped the client.
                chunk = bytes(out)
                out.clear()
                writer.write(chunk)
                await writer.drain()
        return False

    def _plain_kind(self, client: Client, args: list[bytes]) -> Kind | None:
        """READ or WRITE for a data command that needs nothing of the connection; None for
        one answered on its own (errors, SPECIAL commands, -READONLY)."""
        if not client.authed or client.multi is not None or client.subscriptions:
            return None
        kind = classify(args)
        if isinstance(kind, Err) or kind is Kind.SPECIAL:
            return None
        if kind is Kind.WRITE and self.readonly_replica and self._replica():
            return None
        if acl.noperm(client.who, kind, "") is not None:
            return None
        return kind

    async def _plain(self, kind: Kind, commands: list[tuple[int, list[bytes]]],
                     level: str, who: Identity) -> list[Reply]:  # fmt: skip
        try:
            if kind is Kind.READ:
                return await self.store.read(commands, level, who.forward)
            got = await self.store.write(Request(commands, caller=who.forward))
            assert got is not None
            return got
        except LiteclusterError as exc:
            err = _failure(exc)
            return [err] * len(commands)

    # ---- one command --------------------------------------------------------------------------

    async def _one(self, client: Client, args: list[bytes]) -> Reply | _Pushes:
        name = args[0].lower()
        if not client.authed and name not in (b"auth", b"hello", b"quit"):
            return Err("NOAUTH Authentication required.")
        if client.subscriptions and client.proto == 2 and name not in _SUBSCRIBED_OK:
            return Err(
                f"ERR Can't execute '{name.decode('utf-8', 'replace')}': only (P|S)SUBSCRIBE /"
                " (P|S)UNSUBSCRIBE / PING / QUIT / RESET are allowed in this context"
            )
        if client.multi is not None and name not in _IN_MULTI:
            return self._queue(client, args)
        found = lookup(args)
        handler = getattr(self, "_cmd_" + name.decode("ascii", "replace"), None)
        if not name.isalpha():
            handler = None
        # A catalogued command is held to its arity whoever answers it (CONFIG, answered
        # here, is not in the catalog).
        if isinstance(found, Err) and (handler is None or name in COMMANDS):
            if client.multi is not None:  # as redis-server: the transaction fails
                client.multi_failed = True
                if name == b"exec":
                    client.multi, client.watch = None, []
            return found
        if handler is not None:
            reply: Reply | _Pushes = await handler(client, args)
            return reply
        assert not isinstance(found, Err)
        kind = found.kind
        if (denied := acl.noperm(client.who, kind, found.name)) is not None:
            return denied
        if kind is Kind.WRITE:
            if self.readonly_replica and self._replica():
                return Err("READONLY You can't write against a read only replica.")
            return (await self._plain(Kind.WRITE, [(client.db, args)], "none", client.who))[0]
        return (await self._plain(Kind.READ, [(client.db, args)], client.read_level,
                                  client.who))[0]  # fmt: skip

    def _queue(self, client: Client, args: list[bytes]) -> Reply:
        assert client.multi is not None
        found = lookup(args)
        if isinstance(found, Err):
            client.multi_failed = True
            return found
        if found.info.group == "pubsub" or found.name == "select":
            client.multi_failed = True
            return Err(f"ERR Command not allowed inside a transaction: '{found.name}'")
        denied = acl.noperm(client.who, found.kind, found.name)
        if denied is not None:  # as redis-server: refused when queued, the transaction fails
            client.multi_failed = True
            return denied
        client.multi.append((client.db, args))
        return QUEUED

    # ---- connection commands (one method per command: _cmd_NAME) -----------------------------
    # _one has held each catalogued command to its catalog arity before calling its method.

    async def _cmd_ping(self, client: Client, args: list[bytes]) -> Reply:
        if len(args) > 2:
            return wrong_arity("ping")
        if client.subscriptions and client.proto == 2:
            return [b"pong", args[1] if len(args) == 2 else b""]
        return args[1] if len(args) == 2 else PONG

    async def _cmd_echo(self, client: Client, args: list[bytes]) -> Reply:
        return args[1]

    async def _cmd_quit(self, client: Client, args: list[bytes]) -> Reply:
        return OK

    async def _cmd_auth(self, client: Client, args: list[bytes]) -> Reply:
        if len(args) not in (2, 3):
            return wrong_arity("auth")
        if not self.auth_required:
            return Err("ERR AUTH <password> called without any password configured for the "
                       "default user. Are you sure your configuration is correct?")  # fmt: skip
        user = args[1] if len(args) == 3 else b"default"
        return OK if await self._check(client, user, args[-1]) else Err(
            "WRONGPASS invalid username-password pair or user is disabled.")  # fmt: skip

    async def _check(self, client: Client, user: bytes, password: bytes) -> bool:
        """AUTH: a success makes the connection that user's (see :func:`acl.check`)."""
        who = await acl.check(self.passwords, self.credentials, user, password)
        if who is None:
            return False
        client.authed, client.who = True, who
        return True

    async def _cmd_hello(self, client: Client, args: list[bytes]) -> Reply:
        proto = client.proto
        i = 1
        if len(args) > 1:
            if not args[1].isdigit():
                return Err("ERR Protocol version is not an integer or out of range")
            proto = int(args[1])
            if proto not in (2, 3):
                return Err("NOPROTO unsupported protocol version")
            i = 2
        while i < len(args):
            opt = args[i].lower()
            if opt == b"auth" and i + 2 < len(args):
                if not self.auth_required or not await self._check(client, args[i + 1],
                                                                   args[i + 2]):  # fmt: skip
                    return Err("WRONGPASS invalid username-password pair or user is disabled.")
                i += 3
            elif opt == b"setname" and i + 1 < len(args):
                client.name = args[i + 1]
                i += 2
            else:
                return Err(f"ERR Syntax error in HELLO option '{opt.decode('utf-8', 'replace')}'")
        if not client.authed:
            return Err("NOAUTH HELLO must be called with the client already authenticated, "
                       "otherwise the HELLO <proto> AUTH <user> <pass> option can be used to "
                       "authenticate the client and select the RESP protocol version at the "
                       "same time")  # fmt: skip
        client.proto = proto
        return respinfo.hello(self.node, client.id, proto)

    async def _cmd_select(self, client: Client, args: list[bytes]) -> Reply:
        try:
            db = int(args[1])
        except ValueError:
            return Err("ERR value is not an integer or out of range")
        if not 0 <= db < respinfo.DATABASES:
            return Err("ERR DB index is out of range")
        client.db = db
        return OK

    async def _cmd_reset(self, client: Client, args: list[bytes]) -> Reply:
        self._forget(client)
        self.clients[client.id] = client
        client.channels.clear()
        client.patterns.clear()
        client.db, client.proto, client.name = 0, 2, b""
        client.read_level = self.settings.read_level
        client.multi, client.watch = None, []
        client.authed, client.who = not self.auth_required, ANYONE
        return Simple("RESET")

    async def _cmd_client(self, client: Client, args: list[bytes]) -> Reply:
        sub = args[1].lower() if len(args) > 1 else b""
        if sub == b"id" and len(args) == 2:
            return client.id
        if sub == b"getname" and len(args) == 2:
            return client.name or None
        if sub == b"setname" and len(args) == 3:
            if any(c <= 32 or c > 126 for c in args[2]):
                return Err("ERR Client names cannot contain spaces, newlines or special "
                           "characters.")  # fmt: skip
            client.name = args[2]
            return OK
        if sub == b"readlevel" and len(args) in (2, 3):
            return self._read_level(client, args[2] if len(args) == 3 else None)
        if sub in (b"setinfo", b"no-evict", b"no-touch") and len(args) >= 3:
            return OK
        if sub in (b"info", b"list"):
            lines = [self._client_line(c) for c in self.clients.values()
                     if sub == b"list" or c is client]  # fmt: skip
            return "".join(lines).encode()
        return Err(f"ERR unknown subcommand or wrong number of arguments for "
                   f"'{sub.decode('utf-8', 'replace')}'. Try CLIENT HELP.")  # fmt: skip

    @staticmethod
    def _read_level(client: Client, level: bytes | None) -> Reply:
        """``CLIENT READLEVEL [none|strong|linearizable]`` (litecluster's own): the level of
        this connection's reads, answered with the level in force."""
        if level is not None:
            name = level.decode("utf-8", "replace").lower()
            if name not in READ_LEVELS:
                return Err("ERR CLIENT READLEVEL must be none, strong or linearizable")
            client.read_level = name
        return client.read_level.encode()

    def _client_line(self, c: Client) -> str:
        peer = c.writer.get_extra_info("peername") or ("?", 0)
        name = c.name.decode("utf-8", "replace")
        return (f"id={c.id} addr={peer[0]}:{peer[1]} name={name} db={c.db} "
                f"sub={len(c.channels)} psub={len(c.patterns)} multi="
                f"{-1 if c.multi is None else len(c.multi)} resp={c.proto}\n")  # fmt: skip

    async def _cmd_info(self, client: Client, args: list[bytes]) -> Reply:
        section = args[1].decode("utf-8", "replace") if len(args) > 1 else ""
        return respinfo.info(self.node, section, clients=len(self.clients),
                             keyspace=self.store.keyspace())  # fmt: skip

    async def _cmd_command(self, client: Client, args: list[bytes]) -> Reply:
        return respinfo.command(args)

    async def _cmd_config(self, client: Client, args: list[bytes]) -> Reply:
        return respinfo.config(self.pubsub, args)

    # ---- transactions -------------------------------------------------------------------------

    async def _cmd_multi(self, client: Client, args: list[bytes]) -> Reply:
        if client.multi is not None:
            return Err("ERR MULTI calls can not be nested")
        client.multi, client.multi_failed = [], False
        return OK

    async def _cmd_discard(self, client: Client, args: list[bytes]) -> Reply:
        if client.multi is None:
            return Err("ERR DISCARD without MULTI")
        client.multi, client.watch = None, []
        return OK

    async def _cmd_watch(self, client: Client, args: list[bytes]) -> Reply:
        if client.multi is not None:
            return Err("ERR WATCH inside MULTI is not allowed")
        if not client.watch:
            client.watch_since = self.store.applied_txid()
        client.watch.extend((client.db, k) for k in args[1:])
        return OK

    async def _cmd_unwatch(self, client: Client, args: list[bytes]) -> Reply:
        client.watch = []
        return OK

    async def _cmd_exec(self, client: Client, args: list[bytes]) -> Reply:
        if client.multi is None:
            return Err("ERR EXEC without MULTI")
        queued, failed, watch = client.multi, client.multi_failed, client.watch
        client.multi, client.watch = None, []
        if failed:
            return Err("EXECABORT Transaction discarded because of previous errors.")
        if not queued:
            return []
        all_reads = all(classify(a) is Kind.READ for _, a in queued)
        caller = client.who.forward
        try:
            if all_reads and not watch:
                return list(await self.store.read(queued, client.read_level, caller))
            if self.readonly_replica and self._replica():
                return Err("READONLY You can't write against a read only replica.")
            got = await self.store.write(Request(queued, watch, client.watch_since,
                                                 caller=caller))  # fmt: skip
        except LiteclusterError as exc:
            return _failure(exc)
        return NULL_ARRAY if got is None else list(got)

    # ---- pub/sub ------------------------------------------------------------------------------

    async def _cmd_publish(self, client: Client, args: list[bytes]) -> Reply:
        if (denied := acl.noperm(client.who, Kind.WRITE, "publish")) is not None:
            return denied
        if self.readonly_replica and self._replica():
            return Err("READONLY You can't write against a read only replica.")
        try:
            await self.store.write(Request([], publish=[(args[1], args[2])],
                                           caller=client.who.forward))  # fmt: skip
        except LiteclusterError as exc:
            return _failure(exc)
        return self.pubsub.receivers(args[1])

    async def _subscribe(self, client: Client, args: list[bytes], pattern: bool) -> Reply | _Pushes:
        kind = b"psubscribe" if pattern else b"subscribe"
        if (denied := acl.noperm(client.who, Kind.READ, kind.decode())) is not None:
            return denied
        mine = client.patterns if pattern else client.channels
        confirmations: list[list[Reply]] = []
        for channel in args[1:]:
            mine.add(channel)
            self.pubsub.subscribe(client, channel, pattern=pattern)
            confirmations.append([kind, channel, client.subscriptions])
        return _Pushes(confirmations)

    async def _unsubscribe(self, client: Client, args: list[bytes], pattern: bool) -> _Pushes:
        kind = b"punsubscribe" if pattern else b"unsubscribe"
        mine = client.patterns if pattern else client.channels
        targets = args[1:] or sorted(mine)
        confirmations: list[list[Reply]] = []
        if not targets:
            confirmations.append([kind, None, client.subscriptions])
        for channel in targets:
            mine.discard(channel)
            self.pubsub.unsubscribe(client, channel, pattern=pattern)
            confirmations.append([kind, channel, client.subscriptions])
        return _Pushes(confirmations)

    async def _cmd_subscribe(self, client: Client, args: list[bytes]) -> Reply | _Pushes:
        return await self._subscribe(client, args, False)

    async def _cmd_psubscribe(self, client: Client, args: list[bytes]) -> Reply | _Pushes:
        return await self._subscribe(client, args, True)

    async def _cmd_unsubscribe(self, client: Client, args: list[bytes]) -> _Pushes:
        return await self._unsubscribe(client, args, False)

    async def _cmd_punsubscribe(self, client: Client, args: list[bytes]) -> _Pushes:
        return await self._unsubscribe(client, args, True)

    async def _cmd_pubsub(self, client: Client, args: list[bytes]) -> Reply:
        sub = args[1].lower() if len(args) > 1 else b""
        if sub == b"channels" and len(args) <= 3:
            return list(self.pubsub.active_channels(args[2] if len(args) == 3 else None))
        if sub == b"numsub":
            return [x for c in args[2:] for x in (c, self.pubsub.numsub(c))]
        if sub == b"numpat" and len(args) == 2:
            return len(self.pubsub.patterns)
        return Err(f"ERR unknown subcommand or wrong number of arguments for "
                   f"'{sub.decode('utf-8', 'replace')}'. Try PUBSUB HELP.")  # fmt: skip


@dataclass(frozen=True)
class _Pushes:
    """The replies of (un)subscribe: one confirmation per channel, each its own push."""

    items: list[list[Reply]]


def _failure(exc: LiteclusterError) -> Err:
    """The error reply for a failed request, by the error's properties (docs/kv.md): ``TRYAGAIN``
    only when nothing was applied, ``INDETERMINATE`` when a write may or may not have been applied
    (a client that retried it on TRYAGAIN could apply it twice), ``COMMITTED`` when it was applied
    but is not visible here yet, else ``ERR``."""
    text = exc.message.replace("\r", " ").replace("\n", " ")
    if isinstance(exc, PermissionDeniedError):  # the primary refused a forwarded command
        return Err(f"NOPERM {text}")
    if exc.indeterminate:
        return Err(f"INDETERMINATE the outcome is unknown, the write may or may not have been "
                   f"applied: {text}")  # fmt: skip
    if exc.committed:
        return Err(f"COMMITTED the write was applied but is not visible on this node yet: {text}")
    if exc.retryable:
        return Err(f"TRYAGAIN {text}")
    return Err(f"ERR {text}")
