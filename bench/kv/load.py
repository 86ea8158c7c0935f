"""The load of the key/value benchmark (``python -m bench.kv``): ``redis-benchmark`` runs and
latency distributions (the durable-write load and the redis-server pair are in
:mod:`bench.common.resp`, shared with ``bench.sync``).

* :func:`redis_benchmark` runs Redis's own ``redis-benchmark`` (Debian ``redis-tools``) with
  ``--csv`` against a port and returns one :class:`BenchRow` per test (ops/s, latency
  percentiles from its histogram).
* :class:`Dist` summarises latencies (percentiles and a CDF for the plots).
"""

from __future__ import annotations

import csv
import shutil
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

BENCHMARK_HINT = "apt-get install redis-tools (./dev test installs it as root)"
QUANTILES = [*range(0, 99), 99.0, 99.5, 99.9, 99.99, 100.0]
"""The percentiles kept of every latency distribution (the CDFs of the plots)."""


class Missing(RuntimeError):
    """A program the benchmark needs is not installed (the message says how to install it)."""


def need_redis_benchmark() -> str:
    path = shutil.which("redis-benchmark")
    if path is None:
        raise Missing(f"redis-benchmark not found on PATH: {BENCHMARK_HINT}")
    return path


def tool_version(program: str) -> str:
    """``redis-server --version`` and the like, first line ('' when it cannot be run)."""
    try:
        out = subprocess.run([program, "--version"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return ""
    return out.stdout.strip().splitlines()[0] if out.stdout.strip() else ""


# ---- latency distributions -----------------------------------------------------------------------


@dataclass(frozen=True)
class Dist:
    """A latency distribution in one unit (µs or ms): percentiles, mean and a CDF."""

    p50: float
    p99: float
    max: float
    mean: float
    n: int
    quantiles: list[float]
    """The values at :data:`QUANTILES`."""

    @classmethod
    def of(cls, values: Sequence[float] | np.ndarray, scale: float) -> Dist | None:
        """``values`` divided by ``scale`` (e.g. ns to ms: 1e6); None when empty."""
        arr = np.asarray(values, dtype=np.float64) / scale
        if arr.size == 0:
            return None
        qs = [float(x) for x in np.percentile(arr, QUANTILES)]
        return cls(
            float(np.percentile(arr, 50)),
            float(np.percentile(arr, 99)),
            float(arr.max()),
            float(arr.mean()),
            int(arr.size),
            qs,
        )


# ---- redis-benchmark -----------------------------------------------------------------------------


@dataclass(frozen=True)
class BenchRow:
    """One test (SET, GET, ...) of one redis-benchmark run."""

    test: str
    rps: float
    avg_ms: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    max_ms: float


@dataclass(frozen=True)
class BenchRun:
    system: str
    """``litecluster`` or ``redis``."""
    variant: str
    repeat: int
    rows: list[BenchRow]
    wall_s: float
    errors: str
    """What redis-benchmark said on stderr besides its password warning ('' when nothing)."""

    def row(self, test: str) -> BenchRow | None:
        return next((r for r in self.rows if r.test == test), None)


def redis_benchmark(
    port: int, password: str | None, args: Sequence[str], timeout: float
) -> tuple[list[BenchRow], str, float]:
    """Run ``redis-benchmark -h 127.0.0.1 -p PORT [-a PASSWORD] ARGS --csv``: its rows, what it
    said on stderr (warnings about the password on the command line left out) and the wall
    time in seconds."""
    cmd = [need_redis_benchmark(), "-h", "127.0.0.1", "-p", str(port)]
    if password:
        cmd += ["-a", password]
    t0 = time.monotonic()
    out = subprocess.run([*cmd, *args, "--csv"], capture_output=True, text=True, timeout=timeout)
    wall = time.monotonic() - t0
    said = [
        line
        for line in out.stderr.splitlines()
        if line.strip() and "Using a password with '-a'" not in line
    ]
    if out.returncode != 0:
        said.insert(0, f"exit status {out.returncode}")
    return parse_csv(out.stdout), "\n".join(said)[:2000], wall


def parse_csv(text: str) -> list[BenchRow]:
    """The rows of ``redis-benchmark --csv`` (header: test, rps, avg, min, p50, p95, p99, max)."""
    rows = []
    for rec in csv.reader(line for line in text.splitlines() if line.startswith('"')):
        if not rec or rec[0] == "test" or len(rec) < 8:
            continue
        try:
            nums = [float(x) for x in rec[1:8]]
        except ValueError:
            continue
        rps, avg, _min, p50, p95, p99, mx = nums
        rows.append(BenchRow(rec[0], rps, avg, p50, p95, p99, mx))
    return rows
