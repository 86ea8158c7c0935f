"""What a node keeps about itself in its data directory: identity, highest epoch, a lock.

``DIR/node.json`` is replaced atomically (temporary file, fsync, rename, directory fsync) so a
crash leaves the old or the new version. ``DIR/node.lock`` is held (flock) while the node runs:
two nodes on one data directory would corrupt each other.
"""

from __future__ import annotations

import fcntl
import json
import os
import secrets
from pathlib import Path

from litecluster.engine.txlog import write_durably
from litecluster.errors import NodeError, StaleEpochError


class NodeState:
    def __init__(self, data_dir: Path) -> None:
        self.dir = data_dir
        self.dir.mkdir(parents=True, exist_ok=True)
        self.path = data_dir / "node.json"
        self._lock_fd = os.open(data_dir / "node.lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self._lock_fd)
            raise NodeError(
                "another node is running on this data directory",
                data_dir=str(data_dir),
                hint="stop it first, or give this node its own --data-dir",
            ) from None
        self.node_id = ""
        self.cluster_id = ""
        self.epoch = 0
        if self.path.exists():
            try:
                data = json.loads(self.path.read_text())
                self.node_id = str(data["node_id"])
                self.cluster_id = str(data["cluster_id"])
                self.epoch = int(data["epoch"])
            except (ValueError, KeyError, TypeError) as exc:
                self.close()
                raise NodeError(
                    f"node state file is damaged: {exc}",
                    file=str(self.path),
                    hint="restore it, or remove it to start this node with a new identity",
                ) from None

    def adopt(self, node_id: str, cluster_id: str, epoch: int) -> None:
        """Fix identity on first start; refuse to join another cluster later."""
        if self.cluster_id and self.cluster_id != cluster_id:
            raise NodeError(
                "this data directory belongs to another cluster",
                data_dir=str(self.dir),
                saved=self.cluster_id,
                configured=cluster_id,
                hint="use a fresh --data-dir to move a node to another cluster",
            )
        changed = False
        if not self.node_id or (node_id and node_id != self.node_id):
            self.node_id = node_id or "n-" + secrets.token_hex(4)
            changed = True
        if not self.cluster_id:
            self.cluster_id = cluster_id
            changed = True
        if epoch > self.epoch:
            self.epoch = epoch
            changed = True
        if changed:
            self.save()

    def see_epoch(self, epoch: int) -> None:
        """Persist a higher epoch before acting on it; a lower one is refused."""
        if epoch < self.epoch:
            raise StaleEpochError(
                "epoch is older than one already seen", epoch=epoch, seen=self.epoch
            )
        if epoch > self.epoch:
            self.epoch = epoch
            self.save()

    def save(self) -> None:
        data = {"node_id": self.node_id, "cluster_id": self.cluster_id, "epoch": self.epoch}
        write_durably(self.path, json.dumps(data).encode())

    def close(self) -> None:
        if self._lock_fd >= 0:
            os.close(self._lock_fd)
            self._lock_fd = -1
