"""Clusters of node processes electing their primary through a real etcd, and the suite's
report (recovery times, writes lost per failover in asynchronous mode), printed at the end of
the run."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from litecluster.cli.localcluster import LocalNode
from support.etcd_server import EtcdServer, SecureEtcd
from support.ha_cluster import TTL
from support.netns import NsCluster, unavailable
from support.nodes import Nodes


def _cluster(tmp_path: Path, extra: list[str], env: dict[str, str] | None = None,
             etcd: EtcdServer | None = None,
             ) -> Iterator[tuple[Nodes, list[LocalNode], EtcdServer]]:  # fmt: skip
    etcd = etcd or EtcdServer(tmp_path)
    n = Nodes(tmp_path)
    try:
        args = ["--etcd", etcd.url, "--lease-ttl", str(TTL), *extra]
        members = [n.node(f"n{i}", args=args, env=env, start=False) for i in range(1, 4)]
        for m in members:
            m.start(wait=False)
        for m in members:
            m.wait_ready()
        yield n, members, etcd
    finally:
        n.close()
        etcd.stop()


@pytest.fixture
def ha(tmp_path: Path) -> Iterator[tuple[Nodes, list[LocalNode]]]:
    """Three nodes in asynchronous mode."""
    for n, members, _ in _cluster(tmp_path, []):
        yield n, members


@pytest.fixture
def ha_etcd(tmp_path: Path) -> Iterator[tuple[list[LocalNode], EtcdServer]]:
    """Three nodes in asynchronous mode, and their etcd (to stop and restart it)."""
    for _, members, etcd in _cluster(tmp_path, []):
        yield members, etcd


@pytest.fixture
def sync_ha(tmp_path: Path) -> Iterator[list[LocalNode]]:
    """Three nodes acknowledging a write once one replica holds it (3 s at most)."""
    for _, members, _ in _cluster(
        tmp_path, ["--sync-replicas", "1"], {"LITECLUSTER_SYNC_TIMEOUT": "3"}
    ):
        yield members


@pytest.fixture
def sync_ha_etcd(tmp_path: Path) -> Iterator[tuple[list[LocalNode], EtcdServer]]:
    """``sync_ha``, and its etcd (whose leader key an embedded replica may read)."""
    for _, members, etcd in _cluster(
        tmp_path, ["--sync-replicas", "1"], {"LITECLUSTER_SYNC_TIMEOUT": "3"}
    ):
        yield members, etcd


@pytest.fixture
def sync_ha_resp(tmp_path: Path) -> Iterator[list[LocalNode]]:
    """``sync_ha`` with a RESP port on each node (its address in the node's ``node.addr``)."""
    for _, members, _ in _cluster(
        tmp_path, ["--sync-replicas", "1", "--resp", "127.0.0.1:0"],
        {"LITECLUSTER_SYNC_TIMEOUT": "3"},
    ):  # fmt: skip
        yield members


@pytest.fixture
def secure_sync_ha(tmp_path: Path) -> Iterator[tuple[list[LocalNode], SecureEtcd]]:
    """Three nodes in synchronous mode whose etcd serves https only, requires a client
    certificate and runs with authentication on (short-lived tokens)."""
    etcd = SecureEtcd(tmp_path, token_ttl=2)
    secure = ["--etcd-cacert", str(etcd.cacert), "--etcd-cert", str(etcd.client_cert),
              "--etcd-key", str(etcd.client_key), "--etcd-username", etcd.username,
              "--etcd-password-file", str(etcd.password_file)]  # fmt: skip
    for _, members, _ in _cluster(
        tmp_path, ["--sync-replicas", "1", *secure], {"LITECLUSTER_SYNC_TIMEOUT": "3"}, etcd
    ):
        yield members, etcd


@pytest.fixture
def ns_cluster(tmp_path: Path) -> Iterator[Callable[..., NsCluster]]:
    """``make(sync=True, first_env=None, env=None)``: three nodes in network namespaces of
    their own (netns.py), n1 the primary; synchronous mode by default; ``env`` for every node,
    ``first_env`` for n1 only. Skips without root/namespaces."""
    why = unavailable()
    if why:
        pytest.skip(why)
    made: list[NsCluster] = []

    def make(*, sync: bool = True, first_env: dict[str, str] | None = None,
             env: dict[str, str] | None = None) -> NsCluster:  # fmt: skip
        args = ["--lease-ttl", str(TTL), *(["--sync-replicas", "1"] if sync else [])]
        every = {**({"LITECLUSTER_SYNC_TIMEOUT": "3"} if sync else {}), **(env or {})}
        cluster = NsCluster(tmp_path, args, every, first_env or {})
        made.append(cluster)
        cluster.start()
        return cluster

    try:
        yield make
    finally:
        for cluster in made:
            cluster.close()


@pytest.fixture
def fault_report(record_property: Callable[[str, object], None]) -> Callable[[str, object], None]:
    """``report(name, value)``: a measurement shown in the run's summary (and the JUnit XML).
    Kept in the test's report, so that it reaches the summary from pytest-xdist workers too."""
    return record_property


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    lines = [
        f"{report.nodeid.split('::', 1)[-1]}: {name} = {value}"
        for reports in terminalreporter.stats.values()
        for report in reports
        if isinstance(report, pytest.TestReport) and report.when == "call"
        and "faults/" in report.nodeid
        for name, value in report.user_properties
    ]  # fmt: skip
    if lines:
        terminalreporter.section("fault suite measurements")
        for line in lines:
            terminalreporter.write_line(line)
