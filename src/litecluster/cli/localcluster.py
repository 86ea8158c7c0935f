"""Node processes on this machine: start, wait until ready, kill, restart (for the demo,
tests and benchmarks).

Each node is a real ``litecluster serve`` process with its own data directory, listening on
127.0.0.1. Ports default to 0 (the node picks free ones and writes them to ``DIR/node.addr``);
a restart reuses the ports the node had, so its peers find it again.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import httpx

from litecluster.client.sync import read_token
from litecluster.errors import NodeError


def wait_until(cond: Callable[[], bool], timeout: float, interval: float = 0.05) -> bool:
    """Poll ``cond`` until it holds (True) or ``timeout`` seconds passed (its last answer)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(interval)
    return cond()


@dataclass
class LocalNode:
    data_dir: Path
    node_id: str
    token_file: Path
    primary: str | None = None
    """The primary's replication address (``HOST:PORT``); None for the primary itself."""
    listen: str = "127.0.0.1:0"
    http: str = "127.0.0.1:0"
    extra_args: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    log_path: Path | None = None
    command_prefix: list[str] = field(default_factory=list)
    """Runs the node through another program, e.g. ``["ip", "netns", "exec", NS]`` (which
    must exec the node in place: its pid is how readiness is recognised)."""
    proc: subprocess.Popen[bytes] | None = None
    _log: IO[bytes] | None = None

    def command(self) -> list[str]:
        cmd = [sys.executable, "-m", "litecluster", "serve", "--data-dir", str(self.data_dir),
               "--node-id", self.node_id, "--listen", self.listen, "--http", self.http,
               "--token-file", str(self.token_file)]  # fmt: skip
        if self.primary:
            cmd += ["--primary", self.primary]
        return cmd + self.extra_args

    def start(self, *, wait: bool = True, timeout: float = 30.0) -> LocalNode:
        (self.data_dir / "node.addr").unlink(missing_ok=True)
        log_path = self.log_path or self.data_dir.with_name(self.data_dir.name + ".log")
        self._log = open(log_path, "ab")  # noqa: SIM115 (closed in _reap)
        env = {**os.environ, "PYTHONUNBUFFERED": "1", **self.env}
        self.proc = subprocess.Popen(
            [*self.command_prefix, *self.command()], stdout=self._log, stderr=subprocess.STDOUT,
            env=env, start_new_session=True,
        )  # fmt: skip
        if wait:
            self.wait_ready(timeout)
        return self

    @property
    def log_text(self) -> str:
        path = self.log_path or self.data_dir.with_name(self.data_dir.name + ".log")
        return path.read_text(errors="replace") if path.exists() else ""

    def addr(self) -> dict[str, Any] | None:
        try:
            data: dict[str, Any] = json.loads((self.data_dir / "node.addr").read_text())
        except (FileNotFoundError, ValueError):
            return None
        return data

    def wait_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise NodeError(
                    "node exited during start-up",
                    node=self.node_id,
                    code=self.proc.returncode,
                    log=self.log_text[-2000:],
                )
            a = self.addr()
            if a is not None and self.proc is not None and a["pid"] == self.proc.pid:
                # Keep the bound ports: a restart must come back on the same addresses.
                self.listen, self.http = a["listen"], a["http"]
                return
            time.sleep(0.02)
        raise NodeError("node did not become ready", node=self.node_id, log=self.log_text[-2000:])

    @property
    def url(self) -> str:
        a = self.addr()
        scheme = a["scheme"] if a else "http"
        return f"{scheme}://{self.http}"

    @property
    def headers(self) -> dict[str, str]:
        """The ``Authorization`` header with the cluster token this node presents (the first
        line of its token file)."""
        return {"Authorization": f"Bearer {read_token(self.token_file)}"}

    def status(self, timeout: float = 5.0, **kwargs: Any) -> dict[str, Any]:
        resp = httpx.get(self.url + "/status", timeout=timeout, headers=self.headers, **kwargs)
        resp.raise_for_status()
        data: dict[str, Any] = resp.json()
        return data

    def signal(self, sig: int) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, sig)

    def kill(self) -> None:
        """kill -9 of the node's process group."""
        self.signal(signal.SIGKILL)
        self._reap(10.0)

    def stop(self, timeout: float = 20.0) -> int | None:
        """SIGTERM and wait; returns the exit code."""
        self.signal(signal.SIGTERM)
        return self._reap(timeout)

    def _reap(self, timeout: float) -> int | None:
        code = None
        if self.proc is not None:
            try:
                code = self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.signal(signal.SIGKILL)
                code = self.proc.wait()
        if self._log is not None:
            self._log.close()
            self._log = None
        return code

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class LocalEtcd:
    """A real etcd server on 127.0.0.1 (Debian's ``etcd-server``), for the failover demo and
    tests."""

    def __init__(
        self, directory: Path, *, timeout: float = 30.0, host: str = "127.0.0.1",
        scheme: str = "http",
    ) -> None:  # fmt: skip
        """``host``: the address clients reach etcd on (an address of this machine);
        ``scheme`` https for an etcd whose :meth:`arguments` add its certificates."""
        binary = shutil.which("etcd")
        if binary is None:
            raise NodeError("etcd is not installed", hint="apt-get install etcd-server")
        self.binary, self.directory = binary, directory
        self.client_port, self.peer_port = free_port(), free_port()
        self.url = f"{scheme}://{host}:{self.client_port}"
        self.log_path = directory / "etcd.log"
        self.start(timeout)

    def arguments(self) -> list[str]:
        """etcd's command line (a test's TLS etcd adds its certificates)."""
        peer = f"http://127.0.0.1:{self.peer_port}"
        return [self.binary, "--name", "lc", "--data-dir", str(self.directory / "etcd"),
                "--listen-client-urls", self.url, "--advertise-client-urls", self.url,
                "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
                "--initial-cluster", f"lc={peer}"]  # fmt: skip

    def healthy(self) -> bool:
        return bool(httpx.get(f"{self.url}/health", timeout=1).json().get("health") == "true")

    def start(self, timeout: float = 30.0) -> None:
        """Start (or restart, on the same ports and data) and wait until it is healthy."""
        self._log = open(self.log_path, "ab")  # noqa: SIM115 (closed in stop)
        self.proc = subprocess.Popen(
            self.arguments(), stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True
        )
        deadline = time.monotonic() + timeout
        while True:
            try:
                if self.healthy():
                    return
            except (httpx.HTTPError, ValueError):
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise NodeError("etcd did not start", log=self.log_path.read_text()[-2000:])
            time.sleep(0.05)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self._log.close()
