"""The sandbox around client SQL: SQLite's authorizer on every connection that runs it.

A request's SQL may work on its own database and nothing else: no ATTACH or DETACH (an
ATTACH creates a file at any path the node may write, and stays attached to a pooled
connection), no VACUUM (VACUUM INTO writes a copy anywhere; SQLite runs both forms through an
internal ATTACH, which is what the authorizer sees), no loading code (``load_extension``) and
none of sqlean's file functions, no PRAGMA that changes state (only the read-only ones of
:data:`READ_PRAGMAS` and :data:`QUERY_PRAGMAS`, plus those an operator allows), no temporary
objects (they would outlive the request on a shared connection, and a temporary trigger would
run inside other clients' writes), no raw page access through ``sqlite_dbpage``, no change to litecluster's reserved tables
(:data:`RESERVED_TABLES`: the exactly-once records of queued writes); and a read request
writes nothing.

The authorizer runs at every prepare (for each table, column and function a statement
names), so it is a few frozenset lookups. It is installed once, when the connection is
opened, after the connection's own set-up; ``set_authorizer`` expires the statements
prepared before, so none of them escapes it. litecluster's internal SQL on the writer's
connection (transaction control, the key/value commands) passes the write rules; capture,
checkpoints and schema set-up use connections of their own.
"""

from __future__ import annotations

from dataclasses import dataclass

from litecluster.engine.sqlite import Connection
from litecluster.replication.primary.applied import TABLE as APPLIED_TABLE

# SQLite's authorizer action codes and return values (sqlite3.h; stable C API constants).
_OK, _DENY = 0, 1
_CREATE_INDEX, _CREATE_TABLE, _CREATE_TEMP_INDEX, _CREATE_TEMP_TABLE = 1, 2, 3, 4
_CREATE_TEMP_TRIGGER, _CREATE_TEMP_VIEW, _CREATE_TRIGGER, _CREATE_VIEW = 5, 6, 7, 8
_DELETE, _DROP_INDEX, _DROP_TABLE, _DROP_TEMP_INDEX, _DROP_TEMP_TABLE = 9, 10, 11, 12, 13
_DROP_TEMP_TRIGGER, _DROP_TEMP_VIEW, _DROP_TRIGGER, _DROP_VIEW = 14, 15, 16, 17
_INSERT, _PRAGMA, _READ, _SELECT, _TRANSACTION, _UPDATE = 18, 19, 20, 21, 22, 23
_ATTACH, _DETACH, _ALTER_TABLE, _REINDEX, _ANALYZE = 24, 25, 26, 27, 28
_CREATE_VTABLE, _DROP_VTABLE, _FUNCTION, _SAVEPOINT, _RECURSIVE = 29, 30, 31, 32, 33

_TEMP = frozenset({_CREATE_TEMP_INDEX, _CREATE_TEMP_TABLE, _CREATE_TEMP_TRIGGER,
                   _CREATE_TEMP_VIEW})  # fmt: skip
# Creations that name the temp schema (CREATE TABLE temp.t) instead of saying TEMP: SQLite
# reports them with the plain codes and "temp" as the database, or (a temp trigger on a main
# table) as an insert into the temp schema's table.
_CREATES = frozenset({_CREATE_INDEX, _CREATE_TABLE, _CREATE_TRIGGER, _CREATE_VIEW,
                      _CREATE_VTABLE, _INSERT})  # fmt: skip
_WRITES = frozenset({
    _CREATE_INDEX, _CREATE_TABLE, _CREATE_TRIGGER, _CREATE_VIEW, _DELETE, _DROP_INDEX,
    _DROP_TABLE, _DROP_TEMP_INDEX, _DROP_TEMP_TABLE, _DROP_TEMP_TRIGGER, _DROP_TEMP_VIEW,
    _DROP_TRIGGER, _DROP_VIEW, _INSERT, _UPDATE, _ALTER_TABLE, _REINDEX, _ANALYZE,
    _CREATE_VTABLE, _DROP_VTABLE,
})  # fmt: skip
_TABLE_ACCESS = frozenset({_READ, _INSERT, _UPDATE, _DELETE})

READ_PRAGMAS = frozenset({
    "application_id", "auto_vacuum", "automatic_index", "busy_timeout", "cache_size",
    "cache_spill", "cell_size_check", "collation_list", "compile_options", "data_version",
    "defer_foreign_keys", "encoding", "foreign_key_check", "foreign_keys", "freelist_count",
    "function_list", "integrity_check", "journal_mode", "journal_size_limit",
    "legacy_alter_table", "locking_mode", "max_page_count", "mmap_size", "module_list",
    "page_count", "page_size", "pragma_list", "query_only", "quick_check", "read_uncommitted",
    "recursive_triggers", "reverse_unordered_selects", "schema_version", "secure_delete",
    "synchronous", "table_list", "temp_store", "trusted_schema", "user_version",
    "wal_autocheckpoint",
})  # fmt: skip
"""PRAGMAs a request may run without an argument: each only reports a value. Those that act
when run bare (``optimize``, ``wal_checkpoint``, ``shrink_memory``, ``incremental_vacuum``)
are not here, nor ``database_list`` (it shows the node's file paths)."""

QUERY_PRAGMAS = frozenset({
    "foreign_key_check", "foreign_key_list", "index_info", "index_list", "index_xinfo",
    "integrity_check", "quick_check", "table_info", "table_list", "table_xinfo",
})  # fmt: skip
"""PRAGMAs whose argument names what to inspect, not a value to set."""

DENIED_FUNCTIONS = frozenset({
    "load_extension", "fts3_tokenizer",
    # sqlean's extensions, off unless SQLEAN_ENABLE* is set in the node's environment:
    # files (fileio), SQL run from strings and functions kept in the database (define).
    "readfile", "writefile", "fileio_read", "fileio_write", "fileio_append", "fileio_mkdir",
    "fileio_symlink", "fileio_mode", "mkdir", "symlink", "lsmode", "eval", "define",
    "undefine", "define_free", "define_cache",
})  # fmt: skip

DENIED_TABLES = frozenset({
    "sqlite_dbpage",  # raw pages: writes behind capture's back, reads of any page
    "fileio_ls", "fileio_scan", "lsdir", "scanfile", "fsdir",  # sqlean: the file system
})  # fmt: skip

DENIED_MODULES = DENIED_TABLES | frozenset({"vsv", "define", "csv"})
"""Virtual table modules a request may not create a table of (``vsv`` and ``csv`` read files)."""

RESERVED_TABLES = frozenset({APPLIED_TABLE})
"""litecluster's own tables in a user's database: a request may read them, never change,
drop, alter or hang a trigger on them (that would apply a queued write twice, or never)."""

# (action, which argument names the table) for the changes of a reserved table.
_RESERVED_ARG = {_INSERT: 1, _UPDATE: 1, _DELETE: 1, _DROP_TABLE: 1, _CREATE_TABLE: 1,
                 _ALTER_TABLE: 2, _CREATE_TRIGGER: 2, _CREATE_INDEX: 2}  # fmt: skip

VACUUM_ATTACH = "ATTACH, DETACH and VACUUM are not allowed: a request works on its own database"


@dataclass
class Sandbox:
    """The authorizer of one connection that runs client SQL.

    ``denied`` is set to why the last refused statement was refused (SQLite itself only says
    "not authorized"); :func:`explain` turns the SQLite error into it.
    """

    read_only: bool
    allow_pragmas: frozenset[str] = frozenset()
    denied: str | None = None
    in_request: bool = False
    """Set while a request's statement runs: transaction control is then refused (the node's
    own BEGIN, SAVEPOINT and COMMIT on the same connection are not)."""

    def __call__(
        self, action: int, arg1: str | None, arg2: str | None, db: str | None, _src: str | None
    ) -> int:
        if action in (_SELECT, _RECURSIVE):
            return _OK
        if action in _TABLE_ACCESS and arg1 in DENIED_TABLES:
            return self._deny(f"{arg1} is not available to requests")
        if action == _READ or (action == _FUNCTION and arg2 not in DENIED_FUNCTIONS):
            return _OK
        if self.in_request and action in _RESERVED_ARG:
            table = arg1 if _RESERVED_ARG[action] == 1 else arg2
            if (table or "").lower() in RESERVED_TABLES:
                return self._deny(f"{table} is litecluster's own (queued writes' records): "
                                  "requests may read it, not change it")  # fmt: skip
        if action == _FUNCTION:
            return self._deny(f"the function {arg2}() is not allowed")
        if action == _PRAGMA:
            return self._pragma((arg1 or "").lower(), arg2)
        if action in (_ATTACH, _DETACH):
            return self._deny(VACUUM_ATTACH)
        if action in _TEMP or (action in _CREATES and db == "temp"):
            return self._deny("temporary tables, indexes, views and triggers are not allowed: "
                              "they would outlive the request on a shared connection")  # fmt: skip
        if action in (_TRANSACTION, _SAVEPOINT) and self.in_request:
            return self._deny("transaction control statements are not allowed; use the "
                              "request's transaction flag (a query's statements all read one "
                              "snapshot)")  # fmt: skip
        if self.read_only and action in _WRITES:
            return self._deny("a query request cannot write; use /db/execute")
        if action == _CREATE_VTABLE and arg2 in DENIED_MODULES:
            return self._deny(f"virtual tables of the module {arg2} are not allowed")
        return _OK

    def _pragma(self, name: str, arg: str | None) -> int:
        if name in self.allow_pragmas:
            return _OK
        if (arg is None and name in READ_PRAGMAS) or (arg is not None and name in QUERY_PRAGMAS):
            return _OK
        what = f"PRAGMA {name}" if arg is None else f"PRAGMA {name} with an argument"
        return self._deny(f"{what} is not allowed: it changes state or is not on the "
                          f"read-only list (an operator may allow it: --sql-allow-pragma {name})")  # fmt: skip

    def _deny(self, why: str) -> int:
        self.denied = why
        return _DENY

    def explain(self, error: str) -> str:
        """The message for a statement that failed with SQLite's ``error``: why it was refused,
        if the authorizer refused it (consumed: the next statement starts clean). A refusal
        always fails its statement, whatever SQLite calls it ("not authorized", "authorization
        denied" from VACUUM's inner ATTACH, "access to ... is prohibited" for a column)."""
        why, self.denied = self.denied, None
        return error if why is None else f"not authorized: {why}"


def sandbox(conn: Connection, *, read_only: bool, allow_pragmas: frozenset[str]) -> Sandbox:
    """Put ``conn`` in the sandbox (after its own set-up: the authorizer sees every statement
    from now on, cached ones included) and return the authorizer, for :meth:`Sandbox.explain`."""
    conn.enable_load_extension(False)
    if read_only:
        conn.execute("PRAGMA query_only=ON")
    box = Sandbox(read_only, frozenset(p.lower() for p in allow_pragmas))
    conn.set_authorizer(box)
    return box
