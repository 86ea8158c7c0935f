"""Redis data structures on SQLite: the key/value layer of litecluster (a library: no
network, no node). See docs/kv.md.

* :func:`execute` runs one command on a connection (the primary's writer for writes, any
  connection, replica included, for reads) and returns an :class:`Outcome`.
* :func:`run` is the same for several commands sharing one :class:`Ctx` (MULTI/EXEC).
* :func:`classify` says where a command runs (:class:`Kind`: read, write, special) or gives
  Redis's error for it; :class:`LocalReader` runs reads on a local copy (a node's file or an
  embedded replica's), the empty store before the first write included.
* :func:`expire_cycle` deletes expired keys in bounded batches (the primary, in background).
* :mod:`litecluster.kv.resp` is the RESP2/RESP3 codec, :mod:`litecluster.kv.reply` the
  reply model, :mod:`litecluster.kv.catalog` the command metadata.
"""

from litecluster.kv.commands import (
    COMMANDS,
    Outcome,
    classify,
    command_keys,
    execute,
    lookup,
    run,
)
from litecluster.kv.db import DATABASES, Ctx, expire_cycle
from litecluster.kv.reader import LocalReader
from litecluster.kv.registry import Kind
from litecluster.kv.schema import ensure_schema, has_schema

__all__ = [
    "COMMANDS",
    "Ctx",
    "DATABASES",
    "Kind",
    "LocalReader",
    "Outcome",
    "classify",
    "command_keys",
    "ensure_schema",
    "execute",
    "expire_cycle",
    "has_schema",
    "lookup",
    "run",
]
