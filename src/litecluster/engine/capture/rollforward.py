"""Roll-forward: capture's recovery of a primary database that is behind its own log.

This happens when the WAL lost committed frames that the log already holds: a power loss under
``synchronous=NORMAL`` (a writer that relies on the log, not the WAL, for durability), or a WAL
restored from an older copy. If the database equals the state after some recent record, the
records after it are applied to it through the same verified path as on a replica, and nothing
the log acknowledged is thrown away (see docs/architecture.md, "Roll-forward").
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from litecluster.engine.apply import forget_cache, merge_batch, write_batch
from litecluster.engine.checksum import PageHashes
from litecluster.engine.record import RecordKind
from litecluster.engine.sqlite import Connection
from litecluster.engine.txlog import TxLog
from litecluster.errors import LiteclusterError, WalError


def find_state(txlog: TxLog, checksum: int, last_txid: int, window: int) -> int | None:
    """The newest txid (within the last ``window`` records) after which the database had
    ``checksum``, or None."""
    first = max(txlog.first_txid, last_txid - window + 1)
    found: int | None = None
    for rec in txlog.read(first, last_txid, durable=False):
        if rec.txid == first and rec.pre_checksum == checksum:
            found = first - 1
        if rec.post_checksum == checksum:
            found = rec.txid
    return found


def roll_forward(
    ctl: Connection,
    txlog: TxLog,
    db_path: Path,
    page_size: int,
    hashes: PageHashes,
    last_txid: int,
    window: int,
    relock: Callable[[], bool],
) -> int | None:
    """Re-apply the records the database (at ``hashes``) lost, up to ``last_txid``.

    Called with SQLite's write lock held by a transaction open on ``ctl``: the pages are written
    and committed in it, then ``relock`` opens the caller's next write transaction. On success
    ``hashes`` is updated to the state after ``last_txid`` and the txid the database was found
    at is returned; None (nothing changed) when no recent record matches the database.
    """
    start = find_state(txlog, hashes.checksum, last_txid, window)
    if start is None:
        return None
    records = list(txlog.read(start + 1, last_txid, durable=False))
    if not records or any(r.kind != RecordKind.PAGES for r in records):
        return None
    try:
        txn, pages = merge_batch(hashes, records, str(db_path))
    except LiteclusterError:
        return None
    forget_cache(ctl)
    write_batch(ctl, page_size, txn.min_size, txn.size, pages)
    ctl.execute("COMMIT")
    forget_cache(ctl)
    if not relock():  # the bracket's transaction
        raise WalError("could not re-take the primary's write lock after rolling forward")
    txn.commit()
    return start
