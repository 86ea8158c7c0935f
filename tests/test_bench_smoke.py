"""The engine benchmark runs end to end in smoke mode and writes a plausible report."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
ENGINE = REPO / "bench" / "engine.py"
START = "<!-- bench:engine:start -->"
END = "<!-- bench:engine:end -->"


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
    proc = subprocess.run(
        [
            sys.executable,
            str(ENGINE),
            "--smoke",
            "--out",
            str(out),
            "--workdir",
            str(tmp_path / "w"),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=110,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    text = out.read_text()

    # Only the generated section changed.
    assert text.startswith("# Title\n\nKept by hand.\n\n" + START)
    assert text.rstrip().endswith("Tail kept too.")
    assert "\nold\n" not in text
    assert text.count(START) == 1
    assert text.count(END) == 1
    assert "--smoke" in text  # the command is named

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
