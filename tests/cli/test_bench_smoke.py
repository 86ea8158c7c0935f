"""The engine and replication benchmarks run end to end in smoke mode and write plausible
reports."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from bench.failover import report as failover_report
from bench.replication import report as replication_report
from bench.replication.run import FANOUT_SETUP, SETUPS
from bench.sync import report as sync_report

REPO = Path(__file__).resolve().parents[2]
ENGINE = "bench.engine"
START = "<!-- bench:engine:start -->"
END = "<!-- bench:engine:end -->"


def _smoke(
    module: str, out: Path, workdir: Path, timeout: float, *extra: str
) -> subprocess.CompletedProcess[str]:
    """Run a benchmark in smoke mode as a user would (``python -m MODULE`` from the repository
    root), writing its report to ``out``."""
    return subprocess.run(
        [sys.executable, "-m", module, "--smoke", "--out", str(out), "--workdir", str(workdir),
         *extra],
        cwd=REPO, capture_output=True, text=True, timeout=timeout,
    )  # fmt: skip


def _tables(text: str) -> dict[str, list[dict[str, str]]]:
    """Markdown tables of the report, by the heading above them (the first table under it)."""
    tables: dict[str, list[dict[str, str]]] = {}
    heading = ""
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("### "):
            heading = line[4:].strip()
        elif line.startswith("|") and i + 1 < len(lines) and lines[i + 1].startswith("|---"):
            head = [c.strip() for c in line.strip("|").split("|")]
            rows = []
            i += 2
            while i < len(lines) and lines[i].startswith("|"):
                cells = [c.strip() for c in lines[i].strip("|").split("|")]
                rows.append(dict(zip(head, cells, strict=True)))
                i += 1
            tables.setdefault(heading, rows)
            continue
        i += 1
    return tables


def _value(cell: str) -> float:
    """The median of a cell such as ``1,234 (1,200-1,300)``, ``0.97x`` or ``< 10 ms``."""
    m = re.match(r"[≥<]?\s*([0-9][0-9,]*\.?[0-9]*)", cell)
    assert m, f"not a number: {cell!r}"
    return float(m.group(1).replace(",", ""))


def _table(tables: dict[str, list[dict[str, str]]], prefix: str) -> list[dict[str, str]]:
    found = [rows for name, rows in tables.items() if name.startswith(prefix)]
    assert found, f"no table under a heading starting with {prefix!r}: {sorted(tables)}"
    return found[0]


@pytest.mark.timeout(120)
def test_engine_benchmark_smoke(tmp_path: Path) -> None:
    out = tmp_path / "BENCHMARKS.md"
    out.write_text(f"# Title\n\nKept by hand.\n\n{START}\nold\n{END}\n\nTail kept too.\n")
    proc = _smoke(ENGINE, out, tmp_path / "w", timeout=110)
    assert proc.returncode == 0, proc.stderr[-4000:]
    text = out.read_text()

    # Only the generated section changed.
    assert text.startswith("# Title\n\nKept by hand.\n\n" + START)
    assert text.rstrip().endswith("Tail kept too.")
    assert "\nold\n" not in text
    assert text.count(START) == 1
    assert text.count(END) == 1
    assert "-m bench.engine --smoke" in text  # the command is named, as a user types it

    tables = _tables(text)
    assert _table(tables, "Machine")
    for fact in ("| CPU |", "| Cores |", "| Python |", "| SQLite |", "| Date |"):
        assert fact in text

    targets = _table(tables, "Targets")
    assert len(targets) == 4
    for row in targets:
        assert _value(row["Measured"]) > 0
        assert row["Verdict"] in ("**met**", "**MISSED**")

    throughput = _table(tables, "Small transactions: throughput")
    labels = [r["Configuration"] for r in throughput]
    assert any("plain SQLite, synchronous=FULL" in label for label in labels)
    assert any("txlog fsync on" in label for label in labels)
    for row in throughput:
        assert _value(row["Writer commits (tx/s)"]) > 0
        assert _value(row["CPU per txn (µs)"]) > 0
        assert _value(row["Throughput vs plain FULL"]) > 0

    latency = _table(tables, "Small transactions: commit-to-visible")
    assert len(latency) >= 5
    for row in latency:
        assert _value(row["Achieved (tx/s)"]) > 0
        p50, p99 = _value(row["p50 (ms)"]), _value(row["p99 (ms)"])
        assert 0 < p50 <= p99

    threads = _table(tables, "Small transactions: where the CPU goes")
    for row in threads:
        assert _value(row["capture CPU/txn (µs)"]) > 0
        if "primary side only" not in row["Configuration"]:
            assert _value(row["apply CPU/txn (µs)"]) > 0

    snapshot = _table(tables, "Bulk: snapshot")
    assert len(snapshot) == 6
    for row in snapshot:
        assert _value(row["MB/s"]) > 0
    assert "Lock-byte page probe" in text

    catch_up = _table(tables, "Bulk: catch-up")
    assert _value(catch_up[0]["Records/s"]) > 0
    assert _value(catch_up[1]["Records/s"]) > 0

    memory = _table(tables, "Memory")
    for row in memory:
        assert 10 < _value(row["Peak RSS, psutil (MB)"]) < 2000

    assert "### Profile" in text
    for thread in ("writer", "capture", "apply", "reader"):
        assert f"**{thread}** thread:" in text


REPLICATION = "bench.replication"
REPL_START = "<!-- bench:replication:start -->"
REPL_END = "<!-- bench:replication:end -->"


@pytest.mark.timeout(240)
def test_replication_benchmark_smoke(tmp_path: Path) -> None:
    """Real node processes: the section is appended after the rest of the file, with numbers."""
    out = tmp_path / "BENCHMARKS.md"
    head = f"# Title\n\nKept by hand.\n\n{START}\nengine section\n{END}\n"
    out.write_text(head)
    workdir = tmp_path / "w"
    proc = _smoke(REPLICATION, out, workdir, timeout=230)
    assert proc.returncode == 0, proc.stderr[-4000:]
    text = out.read_text()

    # The rest of the file is untouched; the section is appended once, at the end.
    assert text.startswith(head.rstrip("\n"))
    assert text.count(REPL_START) == 1
    assert text.count(REPL_END) == 1
    assert text.rstrip().endswith(REPL_END)
    section = text[text.index(REPL_START) :]
    assert "--smoke" in section  # the command is named
    assert "### Failures" not in section, section

    tables = _tables(section)
    for fact in ("| CPU |", "| Cores |", "| Python |", "| SQLite |", "| fdatasync"):
        assert fact in section

    targets = _table(tables, "Targets")
    assert len(targets) == 5  # p50 and p99 for two configurations, and fan-out
    for row in targets:
        assert _value(row["Measured"]) > 0
        assert row["Verdict"] in ("**met**", "**MISSED**")

    lag = _table(tables, "Commit-to-visible")
    assert [_value(r["Offered (tx/s)"]) for r in lag] == [1000, 5000, 1000, 5000]
    for row in lag:
        assert _value(row["Achieved (tx/s)"]) > 0
        p50, p99, p999 = (_value(row[k]) for k in ("p50 (ms)", "p99 (ms)", "p99.9 (ms)"))
        assert 0 < p50 <= p99 <= p999 < 10_000
        assert _value(row["Never seen"]) == 0

    wide = _table(tables, "Commit-to-visible with 2 and 3 replicas")  # 10 in a full run
    assert [(r["Replicas"], _value(r["Offered (tx/s)"])) for r in wide] == [
        ("2", 1000), ("3", 1000), ("2", 5000), ("3", 5000)
    ]  # fmt: skip
    for row in wide:
        assert 0 < _value(row["p50 (ms)"]) <= _value(row["p99 (ms)"]) < 10_000
        assert _value(row["Never seen"]) == 0

    rate = _table(tables, "Maximum sustained")
    assert len(rate) == 4
    for row in rate:
        assert _value(row["Commits/s at the primary"]) > 0
        assert _value(row["vs plain SQLite"]) > 0
    for row in rate[0::2]:  # litecluster rows: the replicas caught up
        assert row["Configuration"].startswith("litecluster")
        assert _value(row["Drain (s)"]) < 60

    net = _table(tables, "Network cost")
    assert len(net) == 2
    for row in net:
        shipped = _value(row["Shipped per record and replica (bytes)"])
        assert 50 < shipped < _value(row["Uncompressed record (bytes)"])
        assert _value(row["Pages per record"]) >= 1

    cpu = _table(tables, "CPU of the node processes")
    assert len(cpu) >= 6
    for row in cpu:
        assert _value(row["CPU per replica per 1,000 records applied (ms)"]) > 0

    fanout = _table(tables, "Fan-out")
    assert [r["Replicas"] for r in fanout] == ["0", "1", "2"]
    for row in fanout:
        assert _value(row["Commits/s at the primary"]) > 0

    # Every node process is gone, and so is its data directory.
    leftovers = [
        p.info["pid"]
        for p in psutil.process_iter(["pid", "cmdline"])
        if str(workdir) in " ".join(p.info["cmdline"] or [])
    ]
    assert leftovers == []
    assert not any(workdir.glob("*/primary"))


def test_replication_report_replaces_only_its_section(tmp_path: Path) -> None:
    res = replication_report.Results(
        command="python -m bench.replication --smoke",
        facts={"CPU": "test"},
        config={
            "rates": (1000.0, 5000.0),
            "paced_seconds": 1.0,
            "max_seconds": 1.0,
            "fanout_seconds": 1.0,
            "warmup_s": 0.0,
            "replicas": 2,
            "value_bytes": 100,
            "poll_us": 50.0,
            "repeats": 1,
        },
        setups=SETUPS,
        fanout_setup=FANOUT_SETUP,
        fanout_counts=(0, 1, 10),
    )
    out = tmp_path / "B.md"
    out.write_text(f"# T\n\nHand.\n\n{REPL_START}\nold\n{REPL_END}\n\nTail kept.\n")
    replication_report.write_report(out, res)
    replication_report.write_report(out, res)
    text = out.read_text()
    assert text.startswith(f"# T\n\nHand.\n\n{REPL_START}\n")
    assert text.endswith(f"{REPL_END}\n\nTail kept.\n")
    assert "\nold\n" not in text
    assert text.count(REPL_START) == 1
    assert "not measured" in text  # no runs: verdicts say so instead of inventing numbers


SQL = "bench.sql"
SQL_START = "<!-- bench:sql:start -->"
SQL_END = "<!-- bench:sql:end -->"


def _redis_in(workdir: Path) -> list[int]:
    """redis-server processes started in ``workdir`` (redis rewrites its command line, so the
    working directory tells them apart)."""
    found = []
    for p in psutil.process_iter(["pid", "name"]):
        if p.info["name"] != "redis-server":
            continue
        try:
            cwd = p.cwd()
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
        if cwd.startswith(str(workdir)):
            found.append(p.info["pid"])
    return found


@pytest.mark.timeout(240)
def test_sql_benchmark_smoke(tmp_path: Path) -> None:
    """Nodes and a redis-server: the section is appended, the rest of the file kept byte for
    byte, every table holds plausible numbers, and no process is left behind."""
    out = tmp_path / "BENCHMARKS.md"
    head = f"# Title\n\nKept by hand.\n\n{REPL_START}\nreplication section\n{REPL_END}\n\n"
    out.write_text(head)
    workdir = tmp_path / "w"
    proc = _smoke(SQL, out, workdir, timeout=230)
    assert proc.returncode == 0, proc.stderr[-4000:]
    text = out.read_text()
    assert text.startswith(head)
    assert text.count(SQL_START) == 1
    assert text.count(SQL_END) == 1
    assert text.endswith(SQL_END + "\n")
    section = text[text.index(SQL_START) :]
    assert "--smoke" in section  # the command is named
    assert "### Failures" not in section, section
    for fact in ("| CPU |", "| Cores |", "| Python |", "| SQLite |", "| fdatasync"):
        assert fact in section

    tables = _tables(section)
    targets = _table(tables, "Targets")
    assert len(targets) == 5  # read p50, 2 ratios to redis, writes acknowledged and replicated
    for row in targets:
        assert _value(row["Measured"]) > 0
        assert row["Verdict"] in ("**met**", "**MISSED**")
    for row in targets[1:3]:  # the ratios against redis
        assert "\N{MULTIPLICATION SIGN}" in row["Measured"]

    reads = {r["Path"].split(":")[0]: r for r in _table(tables, "Point reads")}
    dqlite = shutil.which("dqlite-demo") is not None and shutil.which("dqlite") is not None
    assert len(reads) == 10 + dqlite  # + stdlib sqlite3, + dqlite over HTTP when installed
    assert any("stdlib `sqlite3`" in name for name in reads)
    assert dqlite == any("dqlite-demo" in name for name in reads)
    for row in reads.values():
        p50, p99 = _value(row["p50 (µs)"]), _value(row["p99 (µs)"])
        assert 0 < p50 <= p99 < 1_000_000
        assert _value(row["redis GET p50 / this p50"]) > 0
    raw = next(r for name, r in reads.items() if "sqlean connection" in name)
    assert _value(raw["p50 vs raw connection"]) == 1.0
    assert any("redis-py" in name for name in reads)

    writes = _table(tables, "Writes over HTTP")
    assert len(writes) == 4  # every load generator
    for row in writes:
        assert _value(row["Acknowledged (writes/s)"]) > 0
        assert _value(row["Replicated (writes/s)"]) > 0
        assert _value(row["Errors"]) == 0
        assert _value(row["vs plain FULL"]) > 0
        assert _value(row["Primary CPU"]) > 0

    groups = _table(tables, "Group commit")
    assert len(groups) == 4
    for row in groups:
        assert _value(row["Groups"]) >= 1
        assert 1 <= _value(row["Mean size"]) <= _value(row["Max size"]) <= 512
        assert _value(row["p50 size"]) <= _value(row["p90 size"]) <= _value(row["Max size"])

    plain = _table(tables, "Peer: plain SQLite")
    assert len(plain) == 4  # FULL and NORMAL, 1 and 32 threads
    for row in plain:
        assert _value(row["Commits/s"]) > 0
        assert _value(row["litecluster acknowledged / this"]) > 0

    # Every node and redis process is gone, and so are the clusters' directories.
    leftovers = [
        p.info["pid"]
        for p in psutil.process_iter(["pid", "cmdline"])
        if str(workdir) in " ".join(p.info["cmdline"] or [])
    ]
    assert leftovers == []
    assert _redis_in(workdir) == []
    assert not any(workdir.glob("cluster-*"))


def test_sql_benchmark_without_redis_says_how_to_install_it(tmp_path: Path) -> None:
    out = tmp_path / "BENCHMARKS.md"
    proc = subprocess.run(
        [sys.executable, "-m", SQL, "--smoke", "--out", str(out)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": str(tmp_path), "HOME": str(tmp_path)},
    )
    assert proc.returncode == 2
    assert "apt-get install redis-server" in proc.stderr
    assert not out.exists()


def _leftovers(workdir: Path) -> list[int]:
    """Processes whose command line names ``workdir`` (nodes, etcd, dqlite-demo)."""
    return [
        p.info["pid"]
        for p in psutil.process_iter(["pid", "cmdline"])
        if str(workdir) in " ".join(p.info["cmdline"] or [])
    ]


FAILOVER = "bench.failover"
FO_START = "<!-- bench:failover:start -->"
FO_END = "<!-- bench:failover:end -->"


@pytest.mark.timeout(240)
def test_failover_benchmark_smoke(tmp_path: Path) -> None:
    """etcd and 3 nodes, one kill -9 of the primary: the section is appended with the failover
    time and its components, the JSON holds the run, and no process is left behind."""
    out = tmp_path / "BENCHMARKS.md"
    head = f"# Title\n\nKept by hand.\n\n{SQL_START}\nsql section\n{SQL_END}\n"
    out.write_text(head)
    workdir, result = tmp_path / "w", tmp_path / "failover.json"
    proc = _smoke(FAILOVER, out, workdir, 230, "--json", str(result))
    assert proc.returncode == 0, proc.stderr[-4000:]
    text = out.read_text()
    assert text.startswith(head)
    assert text.count(FO_START) == 1
    assert text.endswith(FO_END + "\n")
    section = text[text.index(FO_START) :]
    assert "--smoke" in section
    assert "### Failures" not in section, section
    for fact in ("| CPU |", "| Cores |", "| etcd |", "| fdatasync"):
        assert fact in section

    tables = _tables(section)
    targets = _table(tables, "Targets")
    assert len(targets) == 2  # p50 at TTL 2 s, max at TTL 2 s
    for row in targets:
        assert 0 < _value(row["Measured"]) < 60
        assert row["Verdict"] in ("**met**", "**MISSED**")
    (row,) = _table(tables, "Failover time by lease TTL")
    assert row["Lease TTL"] == "2 s"
    assert row["Runs with a new primary"] == "1 of 1"
    assert 0 < _value(row["min"]) <= _value(row["p50"]) <= _value(row["max"]) < 60
    assert _value(row["Detection p50"]) > 0
    assert _value(row["Election p50"]) > 0
    assert "* TTL 2 s: " in section

    data = json.loads(result.read_text())
    (run,) = data["runs"]
    assert run["ttl"] == 2
    assert run["new_primary"] not in ("", run["killed"])
    assert 0 < run["total_s"] < 60
    parts = [run[k] for k in ("detection_s", "election_s", "promotion_s", "first_write_s")]
    assert all(p is not None and p > -0.05 for p in parts), run  # watch vs log clocks
    assert sum(parts) <= run["total_s"] + 0.1  # components fit in the total (clock reads apart)
    assert run["acked_before"] > 0
    assert run["lost"] is not None

    if shutil.which("dqlite-demo") is None:
        assert "apt-get install go-dqlite" in section
    else:  # dqlite's cluster under the same kill, in the same run
        dq, lc = _table(tables, "Against dqlite")
        assert dq["System"].startswith("dqlite-demo")
        assert dq["Runs with an acknowledged write"] == "1 of 1"
        assert 0 < _value(dq["p50"]) < 60
        assert _value(lc["p50 vs dqlite"]) > 0
        (dq_run,) = data["dqlite_runs"]
        assert 0 < dq_run["total_s"] < 60
        assert dq_run["via"]
        assert dq_run["leader_after"] not in ("", dq_run["killed"])
    assert _leftovers(workdir) == []
    assert not any(workdir.glob("ttl*"))
    assert not any(workdir.glob("dqlite*"))


SYNC = "bench.sync"
SYNC_START = "<!-- bench:sync:start -->"
SYNC_END = "<!-- bench:sync:end -->"


@pytest.mark.timeout(240)
def test_sync_write_benchmark_smoke(tmp_path: Path) -> None:
    """litecluster async, K=1 and K=2 and a dqlite-demo cluster: plausible rows and ratios, and
    no process left behind. Without dqlite-demo the report must say why its rows are missing."""
    out = tmp_path / "BENCHMARKS.md"
    head = f"# Title\n\n{FO_START}\nfailover section\n{FO_END}\n\nTail kept.\n"
    out.write_text(head)
    workdir, result = tmp_path / "w", tmp_path / "sync.json"
    proc = _smoke(SYNC, out, workdir, 230, "--json", str(result))
    assert proc.returncode == 0, proc.stderr[-4000:]
    text = out.read_text()
    assert text.startswith(head.rstrip("\n"))
    assert text.count(SYNC_START) == 1
    assert text.endswith(SYNC_END + "\n")
    section = text[text.index(SYNC_START) :]
    assert "--smoke" in section
    assert "### Failures" not in section, section

    tables = _tables(section)
    writes = _table(tables, "Writes: every system")
    lite = [r for r in writes if r["Variant"].startswith("litecluster")]
    assert len(lite) == 6  # async, K=1, K=2 at 2 concurrency levels
    for row in lite:
        assert _value(row["Writes/s"]) > 0
        assert _value(row["Errors"]) == 0
        assert 0 < _value(row["p50 (ms)"]) <= _value(row["p99 (ms)"])
        assert _value(row["Nodes CPU (cores, all servers)"]) > 0
        assert _value(row["Writes per primary transaction (mean)"]) >= 1
    assert [_value(r["vs asynchronous"]) for r in lite[0::3]] == [1.0, 1.0]
    peers = [r for r in writes if r["Variant"].startswith(("redis-server", "plain SQLite"))]
    if shutil.which("redis-server") is not None:  # 3 redis settings and SQLite, 2 levels each
        assert len(peers) == 8
    for row in peers:
        assert _value(row["Writes/s"]) > 0
        assert 0 < _value(row["p50 (ms)"]) <= _value(row["p99 (ms)"])
    ratios = _table(tables, "Writes: litecluster against each peer")
    assert len(ratios) == 6
    assert all(_value(r["vs plain SQLite"]) > 0 for r in ratios)
    data = json.loads(result.read_text())
    assert {p["variant"] for p in data["phases"]} >= {"async", "k1", "k2", "sqlite"}
    assert _leftovers(workdir) == []
    assert not any(workdir.glob("*-1"))

    target = _table(tables, "Targets")[0]
    if shutil.which("dqlite-demo") is None:
        assert "apt-get install go-dqlite" in section
        assert target["Verdict"] == "not measured"
        pytest.skip("dqlite-demo not installed (apt-get install go-dqlite): dqlite rows unchecked")
    dq = [r for r in writes if r["Variant"].startswith("dqlite")]
    assert len(dq) == 3  # retrying and counting errors at 8 clients, one row at 1 client
    for row in dq:
        assert _value(row["Writes/s"]) > 0
        assert _value(row["vs dqlite"]) <= 1.0
    assert "\N{MULTIPLICATION SIGN}" in target["Measured"]
    assert _value(target["Measured"]) > 0
    assert target["Verdict"] in ("**met**", "**MISSED**")


@pytest.mark.parametrize("script", [FAILOVER, SYNC])
def test_cluster_benchmarks_without_etcd_say_how_to_install_it(tmp_path: Path, script: str) -> None:
    out = tmp_path / "BENCHMARKS.md"
    proc = subprocess.run(
        [sys.executable, "-m", script, "--smoke", "--out", str(out)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": str(tmp_path), "HOME": str(tmp_path)},
    )
    assert proc.returncode == 2
    assert "apt-get install etcd-server" in proc.stderr
    assert not out.exists()


def test_cluster_reports_without_runs_invent_nothing(tmp_path: Path) -> None:
    """Reports of runs that measured nothing say so, and replace only their own section."""
    fo = failover_report.Results("python -m bench.failover", {"CPU": "test"},
                                 {"runs": 20, "ttls": [2, 5], "load_seconds": 1.0,
                                  "load_clients": 4, "retry_pause_s": 0.01})  # fmt: skip
    sy = sync_report.Results("python -m bench.sync", {"CPU": "test"},
                             {"repeats": 5, "seconds": 5.0, "warmup_s": 1.0, "clients": [32, 1],
                              "value_bytes": 100, "lease_ttl": 5, "retry_pause_s": 0.001},
                             skipped={"dqlite": "not measured (--no-dqlite)"})  # fmt: skip
    out = tmp_path / "B.md"
    out.write_text(f"# T\n\n{FO_START}\nold\n{FO_END}\n\nTail kept.\n")
    for _ in range(2):
        failover_report.write_report(out, fo)
        sync_report.write_report(out, sy)
    text = out.read_text()
    assert text.startswith(f"# T\n\n{FO_START}\n")
    assert f"{FO_END}\n\nTail kept.\n" in text
    assert text.endswith(SYNC_END + "\n")
    assert "\nold\n" not in text
    assert text.count(FO_START) == text.count(SYNC_START) == 1
    assert text.count("not measured") >= 3  # failover p50, max per TTL; sync target
    assert "--no-dqlite" in text
