"""Clusters for the failover and synchronous-write benchmarks (``bench.failover``, ``bench.sync``):
litecluster nodes electing their primary through a real etcd, and a 3-node dqlite cluster
(go-dqlite's ``dqlite-demo``); and the run's plumbing every benchmark shares.

* :class:`HaCluster`: ``litecluster serve --etcd URL --lease-ttl T --cluster NAME
  [--sync-replicas K]`` processes on 127.0.0.1 (:class:`litecluster.cli.localcluster.LocalNode`),
  with the role of each node, the elected primary, a wait for a settled cluster (one primary,
  every other node streaming from it and caught up), and kill/restart of one node.
* :class:`Etcd`: :class:`litecluster.cli.localcluster.LocalEtcd` as a context manager.
* :class:`DqliteCluster`: ``dqlite-demo`` processes (``--api``/``--db``, the others
  ``--join`` the first), ready once ``dqlite -s ADDR demo .cluster`` lists every node as a voter.
* The run's plumbing: :func:`attempt` (a failure becomes a line of the report, the run goes
  on), :func:`on_sigterm`, :func:`logger`, :func:`write_json`, :func:`tool_versions`,
  :func:`log_events` (timestamps of a node's log lines), :func:`cpu_seconds`,
  :func:`fine_timers` (1 µs timer slack for paced loads).

Every process is started in its own session and killed (``kill -9`` of its process group) when
its cluster is closed, whatever happened: use the clusters as context managers.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import functools
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType, TracebackType
from typing import IO, Any, Protocol

import httpx
import numpy as np
import psutil

from litecluster.cli.localcluster import LocalEtcd, LocalNode, free_port

DB = "main"
STATUS_TIMEOUT = 5.0
DQLITE_HINT = "apt-get install go-dqlite"
ETCD_HINT = "apt-get install etcd-server"


class Missing(RuntimeError):
    """A program the benchmark needs is not installed (the message says how to install it)."""


def need(program: str, hint: str) -> str:
    path = shutil.which(program)
    if path is None:
        raise Missing(f"{program} not found on PATH: {hint}")
    return path


# ---- the run -----------------------------------------------------------------------------------


class RunErrors(Protocol):
    """Anything with a list of errors (the results of a run)."""

    errors: list[str]


@contextlib.contextmanager
def attempt(res: RunErrors, name: str, log: Callable[[str], None]) -> Iterator[None]:
    """An error in the body is listed in the report (first line) and logged; the run goes on."""
    try:
        yield
    except Exception as exc:
        text = str(exc).strip() or repr(exc)
        res.errors.append(f"{name}: {type(exc).__name__}: {text.splitlines()[0][:300]}")
        log(f"{name} FAILED: {text[:2000]}")


def _terminate(signum: int, _frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)  # unwinds through every finally: processes are killed


def on_sigterm() -> None:
    """SIGTERM unwinds the run like an exception, so every process started is killed."""
    signal.signal(signal.SIGTERM, _terminate)


def logger(name: str) -> Callable[[str], None]:
    def log(msg: str) -> None:
        print(f"[{name} {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)

    return log


def _plain(obj: Any) -> Any:
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: _plain(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, dict):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_plain(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, float) and obj != obj:
        return None  # NaN is not JSON
    return obj


def write_json(path: Path, results: Any) -> None:
    """The results (dataclasses, lists, numpy arrays) as JSON at ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(_plain(results), indent=1) + "\n", encoding="utf-8")


def _version(cmd: list[str], pattern: str) -> str | None:
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    m = re.search(pattern, out)
    return m.group(1).strip() if m else None


def tool_versions(*programs: str) -> dict[str, str]:
    """Versions of the peers' programs, as machine facts (those not installed are left out)."""
    out = {}
    if "etcd" in programs and (v := _version(["etcd", "--version"], r"etcd Version: (\S+)")):
        out["etcd"] = v
    if "dqlite" in programs:
        pkg = _version(["dpkg-query", "-W", "go-dqlite"], r"go-dqlite\s+(\S+)")
        lib = _version(["dpkg-query", "-W", "libdqlite0:*"], r"libdqlite0\S*\s+(\S+)")
        if pkg:
            out["dqlite"] = f"go-dqlite {pkg} (dqlite-demo), libdqlite {lib or 'unknown'}"
    return out


def log_events(text: str, event: str) -> list[tuple[float, str]]:
    """(Unix time, line) of each line of a node's log whose event is ``event`` (``kv`` format:
    ``ts=2026-01-01T00:00:00.123Z level=info node=ID EVENT key=value ...``)."""
    out = []
    for line in text.splitlines():
        parts = line.split(" ", 4)
        if len(parts) < 4 or not parts[0].startswith("ts=") or parts[3] != event:
            continue
        try:
            when = dt.datetime.strptime(parts[0][3:], "%Y-%m-%dT%H:%M:%S.%fZ")
        except ValueError:
            continue
        out.append((when.replace(tzinfo=dt.UTC).timestamp(), line))
    return out


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU seconds of the processes (children included: dqlite-demo has none)."""
    total = 0.0
    for pid in pids:
        with contextlib.suppress(psutil.NoSuchProcess):
            t = psutil.Process(pid).cpu_times()
            total += t.user + t.system
    return total


# ---- etcd --------------------------------------------------------------------------------------


class Etcd(LocalEtcd):
    """A real etcd on 127.0.0.1 in ``directory``; stopped (kill -9) when the block ends."""

    def __init__(self, directory: Path) -> None:
        need("etcd", ETCD_HINT)
        directory.mkdir(parents=True, exist_ok=True)
        super().__init__(directory)

    def __enter__(self) -> Etcd:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


# ---- litecluster with etcd ---------------------------------------------------------------------


NO_HTTP_AUTH = {"LITECLUSTER_HTTP_AUTH": "false"}
"""The benchmarks' nodes serve HTTP without authentication, as their peers (rqlite, dqlite's
demo) run in the comparisons: the same work measured on both sides."""


@dataclass(frozen=True)
class HaSetup:
    """One configuration of a 3-node litecluster cluster electing its primary through etcd."""

    cluster: str
    """The cluster name (``--cluster``): clusters sharing an etcd must differ."""
    lease_ttl: int = 5
    sync_replicas: int = 0
    nodes: int = 3
    env: dict[str, str] = field(default_factory=dict)


class HaCluster:
    """``setup.nodes`` node processes in ``root`` (``n1``, ``n2``, ...), their logs beside."""

    def __init__(self, root: Path, etcd_url: str, setup: HaSetup) -> None:
        self.root, self.setup = root, setup
        root.mkdir(parents=True, exist_ok=True)
        self.token_file = root / "token"
        self.token_file.write_text(secrets.token_hex(32))
        self.token_file.chmod(0o600)
        args = ["--etcd", etcd_url, "--lease-ttl", str(setup.lease_ttl),
                "--cluster", setup.cluster]  # fmt: skip
        if setup.sync_replicas:
            args += ["--sync-replicas", str(setup.sync_replicas)]
        self.nodes = [
            LocalNode(
                root / f"n{i}",
                f"n{i}",
                self.token_file,
                log_path=root / f"n{i}.log",
                extra_args=args,
                env={**NO_HTTP_AUTH, **setup.env},
            )
            for i in range(1, setup.nodes + 1)
        ]

    def start(self, timeout: float = 60.0) -> LocalNode:
        """Start every node and wait for a settled cluster; its primary."""
        for n in self.nodes:
            n.start(wait=False)
        for n in self.nodes:
            n.wait_ready(timeout)
        return self.wait_settled(timeout)

    def __enter__(self) -> HaCluster:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:  # fmt: skip
        self.kill()

    def kill(self) -> None:
        """kill -9 whatever is still running (safe to call more than once)."""
        for n in self.nodes:
            with contextlib.suppress(Exception):
                n.kill()

    def node(self, node_id: str) -> LocalNode:
        return next(n for n in self.nodes if n.node_id == node_id)

    def pids(self) -> list[int]:
        return [n.proc.pid for n in self.nodes if n.proc is not None and n.running]

    def statuses(self) -> dict[str, dict[str, Any]]:
        """``/status`` of every running node that answers, by node id."""
        out = {}
        for n in self.nodes:
            if n.running:
                with contextlib.suppress(httpx.HTTPError, ValueError):
                    out[n.node_id] = n.status(timeout=STATUS_TIMEOUT)
        return out

    def primary(self) -> LocalNode | None:
        """The node that says it is primary (None while there is none or more than one)."""
        st = self.statuses()
        found = [i for i, s in st.items() if s["node"]["role"] == "primary"]
        return self.node(found[0]) if len(found) == 1 else None

    def settled(self) -> LocalNode | None:
        """The primary once every running node follows it and is caught up, else None."""
        st = self.statuses()
        running = [n.node_id for n in self.nodes if n.running]
        if set(st) != set(running):
            return None
        prim = [i for i, s in st.items() if s["node"]["role"] == "primary"]
        if len(prim) != 1:
            return None
        p = st[prim[0]]
        head = int(p.get("databases", {}).get(DB, {}).get("txid", 0))
        seen = {r["node_id"]: r for r in p.get("replicas", []) if r.get("state") == "streaming"}
        for node_id in running:
            if node_id == prim[0]:
                continue
            up = st[node_id].get("upstream", {})
            if st[node_id]["node"]["role"] != "replica" or up.get("primary_id") != prim[0]:
                return None
            if up.get("state") != "streaming" or node_id not in seen:
                return None
            acked = int(seen[node_id].get("databases", {}).get(DB, {}).get("txid", 0))
            if acked < head:
                return None
        return self.node(prim[0])

    def wait_settled(self, timeout: float) -> LocalNode:
        deadline = time.monotonic() + timeout
        while True:
            p = self.settled()
            if p is not None:
                return p
            self.check_alive()
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"cluster {self.setup.cluster} did not settle in {timeout:.0f} s: "
                    f"roles {self.roles()}\n{self.log_tails()}"
                )
            time.sleep(0.05)

    def roles(self) -> dict[str, str]:
        return {i: s["node"]["role"] for i, s in self.statuses().items()}

    def check_alive(self, but: str | None = None) -> None:
        for n in self.nodes:
            if n.node_id != but and n.proc is not None and not n.running:
                raise RuntimeError(
                    f"node {n.node_id} exited (code {n.proc.returncode}): {n.log_text[-800:]}"
                )

    def log_tails(self, chars: int = 600) -> str:
        return "\n".join(f"--- {n.node_id} ---\n{n.log_text[-chars:].strip()}" for n in self.nodes)


# ---- dqlite ------------------------------------------------------------------------------------


@dataclass
class DqliteNode:
    index: int
    directory: Path
    api: str
    db: str
    proc: subprocess.Popen[bytes] | None = None
    log: IO[bytes] | None = None


def kill_group(node: DqliteNode) -> None:
    """SIGKILL the node's process group (``kill -9``), without waiting for it."""
    if node.proc is not None and node.proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(node.proc.pid, signal.SIGKILL)


class DqliteCluster:
    """``nodes`` ``dqlite-demo`` processes in ``root``: the first bootstraps the cluster, the
    others join it. Writes are ``PUT /KEY`` (the value as body) on any node's API; the demo
    runs ``INSERT OR REPLACE INTO model(key, value) VALUES(?, ?)`` through the dqlite driver,
    which sends it to the Raft leader (acknowledged once a majority holds it)."""

    def __init__(self, root: Path, nodes: int = 3) -> None:
        self.binary = need("dqlite-demo", DQLITE_HINT)
        self.shell_path = shutil.which("dqlite")
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        self.nodes = [
            DqliteNode(i, root / f"d{i}", f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}")
            for i in range(1, nodes + 1)
        ]

    def _start(self, node: DqliteNode) -> None:
        node.directory.mkdir(parents=True, exist_ok=True)
        cmd = [self.binary, "--api", node.api, "--db", node.db, "--dir", str(node.directory)]
        if node.index > 1:
            cmd += ["--join", self.nodes[0].db]
        node.log = open(self.root / f"d{node.index}.log", "ab")  # noqa: SIM115 (closed in kill)
        node.proc = subprocess.Popen(
            cmd, stdout=node.log, stderr=subprocess.STDOUT, start_new_session=True
        )

    def start(self, timeout: float = 60.0) -> None:
        """Start the nodes one by one; return once every node is a voter and answers writes."""
        deadline = time.monotonic() + timeout
        for node in self.nodes:
            self._start(node)
            self._wait(functools.partial(self._answers, node), deadline, f"node {node.index}")
        self._wait(self._all_voters, deadline, "every dqlite node to be a voter")

    def _wait(self, cond: Callable[[], bool], deadline: float, what: str) -> None:
        while not cond():
            for n in self.nodes:
                if n.proc is not None and n.proc.poll() is not None:
                    raise RuntimeError(f"dqlite node {n.index} exited: {self.log_tail(n)}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"timed out waiting for {what}: {self.log_tail(self.nodes[0])}")
            time.sleep(0.05)

    def _answers(self, node: DqliteNode) -> bool:
        try:
            r = httpx.put(f"http://{node.api}/ready-{node.index}", content=b"1", timeout=5)
        except httpx.HTTPError:
            return False
        return r.status_code == 200 and r.text == "done\n"

    def _query(self, command: str) -> str:
        if self.shell_path is None:
            return ""
        addrs = ",".join(n.db for n in self.nodes)
        try:
            out = subprocess.run([self.shell_path, "-s", addrs, "demo", command],
                                 capture_output=True, text=True, timeout=10)  # fmt: skip
        except (OSError, subprocess.SubprocessError):
            return ""
        return out.stdout

    def shell(self, command: str, timeout: float = 60.0) -> str:
        """Run one command of the ``dqlite`` shell on the cluster's ``demo`` database; its
        output (an error raises)."""
        if self.shell_path is None:
            raise Missing(f"the dqlite shell is not installed ({DQLITE_HINT})")
        addrs = ",".join(n.db for n in self.nodes)
        out = subprocess.run([self.shell_path, "-s", addrs, "demo", command],
                             capture_output=True, text=True, timeout=timeout)  # fmt: skip
        if out.returncode != 0:
            raise RuntimeError(f"dqlite shell failed: {(out.stderr or out.stdout)[:300]}")
        return out.stdout

    def _all_voters(self) -> bool:
        if self.shell_path is None:  # no shell to ask: every node answering writes will do
            return True
        lines = [ln for ln in self._query(".cluster").splitlines() if "|" in ln]
        return len(lines) == len(self.nodes) and all(ln.endswith("|voter") for ln in lines)

    def leader(self) -> DqliteNode:
        """The node whose Raft address the cluster names as leader (the first if unknown)."""
        addr = self._query(".leader").strip()
        return next((n for n in self.nodes if n.db == addr), self.nodes[0])

    def pids(self) -> list[int]:
        return [n.proc.pid for n in self.nodes if n.proc is not None and n.proc.poll() is None]

    def wait_ready(self, timeout: float) -> None:
        """Until every node answers a write and every node is a voter again."""
        deadline = time.monotonic() + timeout
        for node in self.nodes:
            self._wait(functools.partial(self._answers, node), deadline, f"node {node.index}")
        self._wait(self._all_voters, deadline, "every dqlite node to be a voter")

    def reap(self, node: DqliteNode) -> None:
        """Wait for a killed node's process and close its log."""
        if node.proc is not None:
            node.proc.wait()
        if node.log is not None:
            node.log.close()
            node.log = None

    def restart(self, node: DqliteNode) -> None:
        """Start a stopped node again on its data directory (it rejoins the cluster)."""
        self.reap(node)
        self._start(node)

    def log_tail(self, node: DqliteNode, chars: int = 800) -> str:
        path = self.root / f"d{node.index}.log"
        return path.read_text(errors="replace")[-chars:] if path.exists() else ""

    def kill(self) -> None:
        for n in self.nodes:
            if n.proc is not None and n.proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(n.proc.pid, signal.SIGKILL)
            if n.proc is not None:
                n.proc.wait()
            if n.log is not None:
                n.log.close()
                n.log = None

    def __enter__(self) -> DqliteCluster:
        return self

    def __exit__(self, *exc: object) -> None:
        self.kill()


def fine_timers() -> None:
    """Ask Linux for 1 µs timer slack (default 50 µs): short sleeps then last about what they
    ask, for the paced writer and the reader's polling. A no-op elsewhere."""
    if not sys.platform.startswith("linux"):
        return
    with contextlib.suppress(OSError, AttributeError):
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(29, 1000, 0, 0, 0)  # PR_SET_TIMERSLACK, in nanoseconds
