"""``DIR/node.addr``: where a running node listens, for the tools that start and find it.

Written atomically (temporary file, rename, directory fsync) after each role change, so a
reader sees the old or the new document, never half of one; removed on a clean stop. Its
``pid`` tells a reader which process wrote it (``cli/localcluster.py`` waits for its own).
"""

from __future__ import annotations

import json
from pathlib import Path

from litecluster.engine.txlog import fsync_dir

ADDR_FILE = "node.addr"


def write_addr(data_dir: Path, **fields: object) -> None:
    path = data_dir / ADDR_FILE
    tmp = path.with_name(ADDR_FILE + ".tmp")
    tmp.write_text(json.dumps(fields))
    tmp.replace(path)
    fsync_dir(data_dir)


def remove_addr(data_dir: Path) -> None:
    (data_dir / ADDR_FILE).unlink(missing_ok=True)
