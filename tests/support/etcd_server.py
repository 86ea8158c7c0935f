"""A real etcd server for tests (Debian's etcd-server; ./dev test installs it as root)."""

from __future__ import annotations

from litecluster.cli.localcluster import LocalEtcd as EtcdServer
from litecluster.cli.localcluster import free_port

__all__ = ["EtcdServer", "free_port"]
