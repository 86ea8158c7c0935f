"""A primary + capture + replica workload for kill -9 tests (``python tests/support/crash_child.py run
JSON_ARGS``). It opens (and so recovers) whatever the previous run left, then commits, captures,
checkpoints, applies and installs snapshots until a crash point set through
``LITECLUSTER_CRASHPOINT`` kills it, or until it runs out of iterations (exit status 0).

It appends what was acknowledged to the ``ack`` file with unbuffered writes, which survive the
kill (the page cache outlives the process):

* ``C seq``: the primary's SQLite COMMIT of row ``seq`` returned;
* ``A txid checksum``: the record is durable in the txlog (``TxLog.read`` returns durable ones);
* ``R txid checksum``: the replica's position after an apply or snapshot install returned.

Only the engine's SQLite (sqlean) is used here.
"""

from __future__ import annotations

import json
import os
import random
import sys
from pathlib import Path
from typing import Any

from litecluster import Capture, CaptureConfig, Replica, ReplicaConfig, TxLog
from litecluster.engine.snapshot import create_snapshot, install_snapshot


def run(args: dict[str, Any]) -> None:
    root = Path(args["root"])
    rng = random.Random(args["seed"])
    ack = os.open(args["ack"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    def note(line: str) -> None:
        os.write(ack, (line + "\n").encode())

    log = TxLog(root / "txlog")
    cap = Capture(root / "primary.db", log, CaptureConfig(checkpoint_frames=args["ckpt_frames"]))
    rep = Replica(root / "replica.db", ReplicaConfig(durable=True))
    acked = log.durable_txid

    def ack_durable() -> None:
        nonlocal acked
        for rec in log.read(acked + 1):
            note(f"A {rec.txid} {rec.post_checksum:016x}")
            acked = rec.txid

    def install() -> None:
        snap = root / "snapshot"
        create_snapshot(cap, snap)
        ack_durable()
        install_snapshot(rep, snap)
        note(f"R {rep.position.txid} {rep.position.checksum:016x}")

    # This run's own recovery of the previous run's crash must not have needed a reset or left
    # the replica diverged (a node would re-snapshot; the test wants to know).
    if cap.resets:
        sys.exit(f"capture recovery appended {cap.resets} RESET record(s)")
    if rep.diverged is not None:
        sys.exit(f"replica recovery found divergence: {rep.diverged}")
    if rep.position.epoch == 0:
        install()  # a new replica starts from a snapshot
    w = cap.connect_writer()
    seq = int(w.execute("SELECT coalesce(max(seq), 0) FROM items").fetchall()[0][0])
    for i in range(args["iterations"]):
        seq += 1
        size = rng.choice((40, 400, 3000, 9000)) if rng.random() < 0.9 else 120_000
        w.execute("BEGIN IMMEDIATE")
        w.execute("INSERT INTO items(seq, data) VALUES (?, randomblob(?))", (seq, size))
        w.execute("UPDATE meta SET last = ? WHERE id = 1", (seq,))
        if seq % 7 == 0:
            w.execute("UPDATE items SET data = x'00' WHERE seq = ?", (rng.randrange(1, seq),))
        w.execute("COMMIT")
        note(f"C {seq}")
        if rng.random() < 0.7:  # otherwise the next poll captures two commits at once
            cap.poll()
        cap.maybe_checkpoint()
        ack_durable()
        pending = list(log.read(rep.position.txid + 1))
        while pending:
            n = rng.randint(1, 3)
            rep.apply(pending[:n])
            pending = pending[n:]
            note(f"R {rep.position.txid} {rep.position.checksum:016x}")
        if i % args["snapshot_every"] == args["snapshot_every"] - 1:
            install()
    w.close()
    rep.close()
    cap.close()
    log.close()
    os.close(ack)


if __name__ == "__main__":
    role, raw = sys.argv[1], sys.argv[2]
    assert role == "run", role
    run(json.loads(raw))
