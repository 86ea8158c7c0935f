"""The key/value and bootstrap benchmarks and `litecluster bench` run end to end in smoke mode
and write plausible reports, plots and the README headline."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from test_bench_smoke import (
    REPO,
    SYNC_END,
    SYNC_START,
    _leftovers,
    _redis_in,
    _smoke,
    _table,
    _tables,
    _value,
)

KV = "bench.kv"
KV_START = "<!-- bench:kv:start -->"
KV_END = "<!-- bench:kv:end -->"


@pytest.mark.timeout(240)
def test_kv_benchmark_smoke(tmp_path: Path) -> None:
    """A K=1 cluster with --resp, redis-servers (plain, and an AOF pair): redis-benchmark,
    durable writes and in-process reads give plausible rows, and no process is left behind."""
    if shutil.which("redis-benchmark") is None:
        pytest.skip("redis-benchmark not installed (apt-get install redis-tools)")
    out = tmp_path / "BENCHMARKS.md"
    head = f"# Title\n\n{SYNC_START}\nsync section\n{SYNC_END}\n\nTail kept.\n"
    out.write_text(head)
    workdir, result = tmp_path / "w", tmp_path / "kv.json"
    proc = _smoke(KV, out, workdir, 230, "--json", str(result))
    assert proc.returncode == 0, proc.stderr[-4000:]
    text = out.read_text()
    assert text.startswith(head.rstrip("\n"))
    assert text.count(KV_START) == 1
    assert text.endswith(KV_END + "\n")
    section = text[text.index(KV_START) :]
    assert "--smoke" in section
    assert "### Failures" not in section, section
    assert "### What redis-benchmark reported" not in section, section
    for fact in ("| CPU |", "| Cores |", "| redis |", "| fdatasync"):
        assert fact in section

    tables = _tables(section)
    targets = _table(tables, "Targets")
    assert len(targets) == 8  # GET x2, SET x3, kv.get p50, ratio to redis-py, durable ratio
    for row in targets:
        assert _value(row["Measured"]) > 0
        assert row["Verdict"] in ("**met**", "**MISSED**")

    bench = _table(tables, "redis-benchmark")
    assert {r["Test"] for r in bench} == {"GET", "SET", "INCR", "LPUSH", "HSET"}
    for row in bench:
        assert _value(row["litecluster ops/s"]) > 0
        assert _value(row["redis-server ops/s"]) > 0
        assert _value(row["litecluster / redis"]) > 0
        assert 0 < _value(row["litecluster p50 (ms)"]) <= _value(row["litecluster p99 (ms)"])
        assert row["Runs with errors"] == "0"

    reads = _table(tables, "In-process reads")
    assert len(reads) >= 5  # kv.get, raw, redis-py (3 placements without a single vCPU), RESP
    for row in reads:
        assert 0 < _value(row["p50 (µs)"]) <= _value(row["p99 (µs)"])
    assert reads[0]["Path"].startswith("Embedded replica: `client.kv.get(k)`")

    writes = _table(tables, "Durable replicated writes")
    assert [r["System"].split(",")[0] for r in writes] == [
        "litecluster",
        "redis-server `appendonly yes`",
    ]
    for row in writes:
        assert _value(row["Writes/s"]) > 0
        assert _value(row["Errors"]) == 0
        assert 0 < _value(row["p50 (ms)"]) <= _value(row["p99 (ms)"])

    data = json.loads(result.read_text())
    assert {(b["system"], b["variant"]) for b in data["bench"]} >= {("litecluster", "getset")}
    assert len(data["reads"][0]["paths"]["kv_get"]["quantiles"]) > 50

    assert _leftovers(workdir) == []
    assert _redis_in(workdir) == []
    assert not any(workdir.glob("repeat-*"))


BOOT = "bench.bootstrap"
BOOT_START = "<!-- bench:bootstrap:start -->"


@pytest.mark.timeout(240)
def test_bootstrap_benchmark_smoke(tmp_path: Path) -> None:
    """A 20 MB database: a new replica node and an embedded replica bootstrap from a snapshot,
    the node catches up after a restart, and the memory of each process is reported."""
    out = tmp_path / "BENCHMARKS.md"
    out.write_text("# Title\n")
    workdir, result = tmp_path / "w", tmp_path / "boot.json"
    proc = _smoke(BOOT, out, workdir, 230, "--json", str(result))
    assert proc.returncode == 0, proc.stderr[-4000:]
    section = out.read_text().split(BOOT_START, 1)[1]
    assert "--smoke" in section
    assert "### Failures" not in section, section
    tables = _tables(section)
    assert [r["Verdict"] for r in _table(tables, "Targets")] == ["not measured"] * 2  # no 1 GB
    speed = _table(tables, "Snapshot install and catch-up")
    assert len(speed) == 4
    for row in speed:
        assert _value(row["Seconds"]) > 0
        assert _value(row["MB/s"]) > 0
    memory = _table(tables, "Memory")
    for row in memory[:3]:
        assert 10 < _value(row["RSS (MB)"]) < 2000
        assert 10 < _value(row["Peak RSS (MB)"]) < 2000
    (run,) = json.loads(result.read_text())["runs"]
    assert run["size_mb"] == 20
    assert run["catch_up_bytes"] > 0
    assert _leftovers(workdir) == []
    assert not any(workdir.glob("20mb-*"))


SUITE = "bench.suite"
PNG = b"\x89PNG\r\n\x1a\n"


@pytest.mark.timeout(240)
def test_litecluster_bench_smoke_writes_report_plots_and_headline(tmp_path: Path) -> None:
    """`litecluster bench --smoke --out-dir DIR`: every scenario's section, the summary with
    every scenario's targets, the plots and the README headline, all under DIR (about a minute
    on an idle 2-core machine)."""
    out = tmp_path / "out"
    proc = subprocess.run(
        [sys.executable, "-m", "litecluster", "bench", "--smoke", "--out-dir", str(out),
         "--no-install"],
        cwd=tmp_path, capture_output=True, text=True, timeout=230,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-6000:]
    report = (out / "BENCHMARKS.md").read_text()
    for marker in (
        "summary",
        "kv",
        "sql",
        "replication",
        "bootstrap",
        "sync",
        "failover",
        "engine",
    ):
        assert report.count(f"<!-- bench:{marker}:start -->") == 1, marker
        assert report.count(f"<!-- bench:{marker}:end -->") == 1, marker
    summary = report[report.index("<!-- bench:summary:start -->") :]
    summary = summary[: summary.index("<!-- bench:summary:end -->")]
    assert "`litecluster bench --smoke --out-dir" in summary  # the exact command
    assert "-m bench.kv --smoke`" in summary  # and each scenario's
    tables = _tables(summary)
    scenarios = _table(tables, "Scenarios")
    assert len(scenarios) == 7
    for row in scenarios:  # a peer missing on this machine skips its scenario, said so
        assert row["Status in this run"].startswith(("ran", "**skipped**")), row
    targets = _table(tables, "Targets of every scenario")
    assert {r["Scenario"].split("]")[0].lstrip("[") for r in targets} >= {"kv", "sql", "engine"}
    for row in targets:
        assert row["Verdict"] in ("**met**", "**MISSED**", "not measured"), row
    assert "### Not measured yet" not in summary  # every scenario of issue 7 has a script
    assert "### Commit-to-visible with 2 and 3 replicas" in report  # 10 in a full run

    plots = sorted(p.name for p in (out / "bench").glob("*.png"))
    assert {"kv-read-latency.png", "redis-benchmark.png", "kv-durable-write-latency.png",
            "replication-lag.png", "write-throughput-vs-concurrency.png",
            "failover-times.png"} <= set(plots)  # fmt: skip
    for name in plots:
        data = (out / "bench" / name).read_bytes()
        assert data.startswith(PNG), name
        assert len(data) > 5_000, name
        assert f"](bench/{name})" in summary, name

    readme = (out / "README.md").read_text()
    assert readme.startswith("<!-- bench:headline:start -->")
    head = _tables(readme)[""]
    assert len(head) >= 6
    assert any(r["Scenario"].startswith("[kv](BENCHMARKS.md#") for r in head)
    assert "](BENCHMARKS.md#summary-of-every-benchmark-generated)" in readme
    assert "`./dev setup && .venv/bin/litecluster bench`" in readme  # how to reproduce it
    assert f"--out {out / 'BENCHMARKS.md'}" in report  # each script wrote here, not to docs/


def test_litecluster_bench_says_what_it_could_not_start_and_goes_on(tmp_path: Path) -> None:
    """Without redis-server (and no apt-get), the kv scenario is skipped with the package to
    install; the run still writes its summary and exits 0."""
    out = tmp_path / "out"
    out.mkdir()
    (out / "BENCHMARKS.md").write_text(
        "# B\n\n<!-- bench:sql:start -->\n## SQL (generated)\n\n| Date | 2020-01-01 |\n\n"
        "### Targets\n\nProduced by `python -m bench.sql`.\n\n"
        "| Target | Goal | Measured | Verdict |\n|---|---|---|---|\n"
        "| Reads | ≤ 5 µs | 4.0 µs | **met** |\n\n<!-- bench:sql:end -->\n"
    )
    proc = subprocess.run(
        [sys.executable, "-m", SUITE, "--smoke", "--only", "kv", "--no-install",
         "--out-dir", str(out)],
        cwd=REPO, capture_output=True, text=True, timeout=120,
        env={"PATH": str(tmp_path), "HOME": str(tmp_path)},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert "apt-get install redis-server" in proc.stderr
    text = (out / "BENCHMARKS.md").read_text()
    summary = text[text.index("<!-- bench:summary:start -->") :]
    rows = {r["Scenario"].split("]")[0].lstrip("["): r for r in _table(_tables(summary), "Scen")}
    assert rows["kv"]["Status in this run"].startswith("**skipped**: `redis-server` is not")
    assert rows["engine"]["Status in this run"] == "not run: not selected in this run"
    # A section this run did not rewrite keeps its figures, labelled with its own run's date.
    (sql,) = [r for r in _table(_tables(summary), "Targets of") if r["Target"] == "Reads"]
    assert "earlier run, 2020-01-01" in sql["Scenario"]
    assert sql["Measured"] == "4.0 µs"
    assert not list(out.glob("bench/*.png"))  # no results, no plots
