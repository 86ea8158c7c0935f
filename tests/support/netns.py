"""Network namespaces for partition tests: each node in a namespace of its own, joined to a
bridge on this machine whose address is where etcd listens (and where the test talks from).

    host (bridge lcbXXXX, 10.A.B.1) ── veth ── namespace lcXXXX-1 (10.A.B.2) ── node n1
                                     ── veth ── namespace lcXXXX-2 (10.A.B.3) ── node n2 ...

A partition is a pair of iptables DROP rules inside one node's namespace (packets vanish, as on
a real network: connections hang rather than being refused). Everything is torn down by
``close``, which a fixture calls even when the test fails. Needs root, ``ip`` and ``iptables``.
"""

from __future__ import annotations

import functools
import ipaddress
import os
import secrets
import shutil
import subprocess
from pathlib import Path

from litecluster.cli.localcluster import LocalNode
from support import wait_for
from support.etcd_server import EtcdServer
from support.ha_cluster import roles
from support.nodes import FAST, Nodes


@functools.cache
def unavailable() -> str | None:
    """Why namespaces cannot be used here (a reason for pytest.skip), or None."""
    if os.geteuid() != 0:
        return "network namespaces and iptables need root"
    for tool in ("ip", "iptables"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed"
    probe = f"lcprobe{secrets.token_hex(3)}"
    made = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True)
    if made.returncode != 0:
        return f"cannot create a network namespace: {made.stderr.strip()}"
    try:
        rules = subprocess.run(
            ["ip", "netns", "exec", probe, "iptables", "-S"], capture_output=True, text=True
        )
    finally:
        subprocess.run(["ip", "netns", "del", probe], check=False)
    return None if rules.returncode == 0 else f"iptables fails: {rules.stderr.strip()}"


def _run(*cmd: str) -> None:
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    if out.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)}: {out.stderr.strip()}")


def _free_subnet() -> ipaddress.IPv4Network:
    used = subprocess.run(["ip", "-4", "route"], capture_output=True, text=True).stdout
    for _ in range(100):
        net = ipaddress.IPv4Network(
            f"10.{secrets.randbelow(200) + 50}.{secrets.randbelow(256)}.0/24"
        )
        if f"{net.network_address}/" not in used:
            return net
    raise RuntimeError("no free 10.x.y.0/24 subnet")


class NetLab:
    """A bridge on this machine and namespaces attached to it (unique names, so that runs in
    parallel do not meet)."""

    def __init__(self) -> None:
        self.tag = secrets.token_hex(3)
        self.bridge = f"lcb{self.tag}"
        self.net = _free_subnet()
        hosts = self.net.hosts()
        self.host_ip = str(next(hosts))
        self._hosts = hosts
        self.namespaces: list[str] = []
        _run("ip", "link", "add", self.bridge, "type", "bridge")
        try:
            _run("ip", "addr", "add", f"{self.host_ip}/{self.net.prefixlen}", "dev", self.bridge)
            _run("ip", "link", "set", self.bridge, "up")
        except BaseException:
            self.close()
            raise

    def namespace(self) -> tuple[str, str]:
        """A new namespace on the bridge: (its name, its address)."""
        ns = f"lc{self.tag}-{len(self.namespaces) + 1}"
        veth = f"lv{self.tag}{len(self.namespaces) + 1}"
        ip = str(next(self._hosts))
        _run("ip", "netns", "add", ns)
        self.namespaces.append(ns)
        _run("ip", "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", ns)
        _run("ip", "link", "set", veth, "master", self.bridge, "up")
        _run("ip", "-n", ns, "addr", "add", f"{ip}/{self.net.prefixlen}", "dev", "eth0")
        _run("ip", "-n", ns, "link", "set", "eth0", "up")
        _run("ip", "-n", ns, "link", "set", "lo", "up")
        return ns, ip

    def cut(self, ns: str, ip: str, port: int | None = None) -> None:
        """Drop every packet between namespace ``ns`` and ``ip`` (only its TCP ``port``)."""
        out = ["-d", ip] + (["-p", "tcp", "--dport", str(port)] if port else [])
        inp = ["-s", ip] + (["-p", "tcp", "--sport", str(port)] if port else [])
        _run("ip", "netns", "exec", ns, "iptables", "-A", "OUTPUT", *out, "-j", "DROP")
        _run("ip", "netns", "exec", ns, "iptables", "-A", "INPUT", *inp, "-j", "DROP")

    def heal(self, ns: str) -> None:
        _run("ip", "netns", "exec", ns, "iptables", "-F")

    def close(self) -> None:
        """Remove the namespaces (their veth ends, and so the pairs, go with them) and the
        bridge. Run after the processes inside were killed."""
        for ns in self.namespaces:
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, check=False)
        subprocess.run(["ip", "link", "del", self.bridge], capture_output=True, check=False)
        self.namespaces = []


class NsCluster:
    """etcd on the bridge and three nodes, each in its own namespace; n1 is started first and
    becomes the primary (``first_env``: extra environment for n1 only, e.g. a drifting clock).
    ``close`` kills the nodes and etcd, then removes the namespaces and the bridge."""

    def __init__(
        self, root: Path, args: list[str], env: dict[str, str], first_env: dict[str, str]
    ) -> None:
        self.lab = NetLab()
        self.nodes = Nodes(root)
        self.etcd: EtcdServer | None = None
        self.where: dict[str, tuple[str, str]] = {}
        """node id -> (namespace, address)"""
        try:
            self.etcd = EtcdServer(root, host=self.lab.host_ip)
            for i in range(1, 4):
                ns, ip = self.lab.namespace()
                node = LocalNode(
                    root / f"n{i}", f"n{i}", self.nodes.token_file, listen=f"{ip}:0",
                    http=f"{ip}:0", extra_args=["--etcd", self.etcd.url, *args],
                    env={**FAST, **env, **(first_env if i == 1 else {})},
                    command_prefix=["ip", "netns", "exec", ns],
                )  # fmt: skip
                self.nodes.all.append(node)
                self.where[node.node_id] = (ns, ip)
        except BaseException:
            self.close()
            raise

    def start(self) -> None:
        first, *rest = self.members
        first.start()
        wait_for(lambda: roles([first])[first.node_id] == "primary", 30, "n1 to lead")
        for m in rest:
            m.start(wait=False)
        for m in rest:
            m.wait_ready()

    @property
    def members(self) -> list[LocalNode]:
        return self.nodes.all

    def ns(self, node: LocalNode) -> str:
        return self.where[node.node_id][0]

    def cut_from_etcd(self, node: LocalNode) -> None:
        assert self.etcd is not None
        self.lab.cut(self.ns(node), self.lab.host_ip, self.etcd.client_port)

    def cut_between(self, node: LocalNode, other: LocalNode) -> None:
        self.lab.cut(self.ns(node), self.where[other.node_id][1])

    def cut_replication(self, replica: LocalNode, primary: LocalNode) -> None:
        """Drop the replication stream from ``primary`` to ``replica`` only: the primary's HTTP
        port still answers the replica (its forwarded writes)."""
        port = int(primary.listen.rsplit(":", 1)[1])
        self.lab.cut(self.ns(replica), self.where[primary.node_id][1], port)

    def heal(self, node: LocalNode) -> None:
        self.lab.heal(self.ns(node))

    def close(self) -> None:
        try:
            self.nodes.close()
            if self.etcd is not None:
                self.etcd.stop()
        finally:
            self.lab.close()
