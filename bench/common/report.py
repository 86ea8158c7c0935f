"""Shared pieces of the benchmarks' reports: statistics, machine and run facts, and the
building blocks of every generated section of docs/BENCHMARKS.md (tables, spreads, verdicts,
the section between its markers).

Every SQLite file here is opened through :func:`litecluster.engine.sqlite.connect` (sqlean). The stdlib
``sqlite3`` module must never be imported in a benchmark process: two SQLite libraries in one
process break each other's POSIX locks.
"""

from __future__ import annotations

import datetime as dt
import os
import platform
import shlex
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, TypeVar

import numpy as np

from litecluster.engine.sqlite import SQLITE_VERSION

REPO = Path(__file__).resolve().parents[2]
# ---- statistics --------------------------------------------------------------------------------


def percentiles_ms(values_ns: Sequence[int] | np.ndarray, ps: Iterable[float]) -> list[float]:
    arr = np.asarray(values_ns, dtype=np.float64) / 1e6
    if arr.size == 0:
        return [float("nan") for _ in ps]
    return [float(np.percentile(arr, p)) for p in ps]


@dataclass(frozen=True)
class Spread:
    """Median and range of one figure over the repeats of a scenario."""

    median: float
    low: float
    high: float
    n: int

    @classmethod
    def of(cls, values: Iterable[float | None]) -> Spread | None:
        vals = [float(v) for v in values if v is not None]
        if not vals:
            return None
        return cls(statistics.median(vals), min(vals), max(vals), len(vals))


def fmt_num(value: float, digits: int = 3) -> str:
    """A number with ``digits`` significant digits and thousands separators."""
    if value != value:  # NaN
        return "n/a"
    if value == 0:
        return "0"
    mag = abs(value)
    if mag >= 10 ** (digits - 1):
        return f"{value:,.0f}"
    decimals = digits - 1
    while decimals > 0 and mag >= 10 ** (digits - 1 - decimals):
        decimals -= 1
    return f"{value:,.{decimals}f}"


def fmt_spread(s: Spread | None, digits: int = 3) -> str:
    if s is None:
        return "n/a"
    if s.n == 1:
        return fmt_num(s.median, digits)
    return f"{fmt_num(s.median, digits)} ({fmt_num(s.low, digits)}\N{EN DASH}{fmt_num(s.high, digits)})"


# ---- the machine -------------------------------------------------------------------------------


def fsync_probe(directory: Path, n: int = 200) -> list[float]:
    """p50/p90/p99 (ms) of ``fdatasync`` after a 4 KiB append to a file in ``directory``."""
    path = directory / "fsync-probe.bin"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    times: list[int] = []
    try:
        for _ in range(n):
            os.write(fd, bytes(4096))
            t0 = time.perf_counter_ns()
            os.fdatasync(fd)
            times.append(time.perf_counter_ns() - t0)
    finally:
        os.close(fd)
        path.unlink()
    return percentiles_ms(times, (50.0, 90.0, 99.0))


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def load_average() -> str:
    return ", ".join(f"{x:.2f}" for x in os.getloadavg())


def machine_facts() -> dict[str, str]:
    import psutil

    mem = psutil.virtual_memory().total / 2**30
    return {
        "CPU": cpu_model(),
        "Cores": f"{os.cpu_count()} logical ({psutil.cpu_count(logical=False)} physical)",
        "Memory": f"{mem:.1f} GiB",
        "OS": f"{platform.system()} {platform.release()}",
        "Python": f"{platform.python_implementation()} {sys.version.split()[0]}",
        "SQLite": f"{SQLITE_VERSION} (sqlean-py)",
        "Date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "Load average at start (1, 5, 15 min)": load_average(),
    }


# ---- the run -----------------------------------------------------------------------------------

FSYNC_FACT = "fdatasync (4 KiB append)"


class RunInfo(Protocol):
    """What every benchmark's results carry besides its measurements."""

    command: str
    facts: dict[str, str]
    elapsed_s: float
    errors: list[str]


R = TypeVar("R", bound=RunInfo)


def _git(*args: str) -> str:
    try:
        out = subprocess.run(
            ["git", *args], cwd=REPO, capture_output=True, text=True, check=True, timeout=10
        )
    except (OSError, subprocess.SubprocessError):
        return ""
    return out.stdout.strip()


def code_version() -> str:
    head = _git("rev-parse", "--short", "HEAD") or "unknown"
    dirty = _git("status", "--porcelain", "--", "src")
    return f"litecluster at git {head}" + (" (src/ has uncommitted changes)" if dirty else "")


def command_line() -> str:
    """The command that started this process as a user would type it from the repository root:
    ``python -m bench.sql --smoke`` for a benchmark run as a module."""
    exe = Path(sys.executable)
    try:
        python = os.path.relpath(exe, Path.cwd()) if exe.is_relative_to(Path.cwd()) else "python"
    except ValueError:
        python = "python"
    spec = getattr(sys.modules["__main__"], "__spec__", None)
    if spec is None or not spec.name:
        return shlex.join([python, *sys.argv])
    return shlex.join([python, "-m", spec.name.removesuffix(".__main__"), *sys.argv[1:]])


def fsync_fact(directory: Path, when: str) -> str:
    """The :func:`fsync_probe` percentiles in ``directory``, as the fact measured at ``when``."""
    probe = fsync_probe(directory)
    return f"p50 {probe[0]:.2f} ms, p90 {probe[1]:.2f} ms, p99 {probe[2]:.2f} ms at the {when}"


def start_facts(directory: Path) -> dict[str, str]:
    """The machine, the code and the fsync latency in ``directory`` at the start of a run.

    At the end, add ``"; " + fsync_fact(directory, "end")`` to :data:`FSYNC_FACT` while the
    directory still exists, then call :func:`finish_run`.
    """
    facts = {**machine_facts(), "Code": code_version()}
    facts[FSYNC_FACT] = fsync_fact(directory, "start")
    return facts


def finish_run(
    res: R,
    t_start: float,
    write: Callable[[Path, R], None],
    out: Path,
    log: Callable[[str], None],
    code_note: str = "",
) -> None:
    """The facts known at the end (load average; the code, when it changed during the run, with
    ``code_note`` after), the run time since ``t_start``; then ``write(out, res)``."""
    res.facts["Load average at end (1, 5, 15 min)"] = load_average()
    if (end_version := code_version()) != res.facts["Code"]:
        res.facts["Code"] += f" at the start; {end_version} at the end{code_note}"
    res.elapsed_s = time.perf_counter() - t_start
    write(out, res)
    log(f"wrote {out} after {res.elapsed_s / 60:.1f} min")


# ---- the reports -------------------------------------------------------------------------------

T = TypeVar("T")


def table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> list[str]:
    """A Markdown table."""
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return out


def spread(runs: Iterable[T], get: Callable[[T], float | None]) -> Spread | None:
    return Spread.of(get(r) for r in runs)


def ratio_spread(pairs: Iterable[tuple[float | None, float | None]]) -> Spread | None:
    """Median/range of the ratios ``a / b`` (one pair per repeat; a missing figure is skipped)."""
    return Spread.of(a / b if a is not None and b else None for a, b in pairs)


def fmt_ratio(s: Spread | None) -> str:
    if s is None:
        return "n/a"
    if s.n == 1:
        return f"{s.median:.2f}\N{MULTIPLICATION SIGN}"
    return f"{s.median:.2f}\N{MULTIPLICATION SIGN} ({s.low:.2f}\N{EN DASH}{s.high:.2f})"


def verdict(ok: bool | None) -> str:
    if ok is None:
        return "not measured"
    return "**met**" if ok else "**MISSED**"


def produced_by(res: RunInfo) -> str:
    return f"Produced by `{res.command}`."


def table_section(
    res: RunInfo,
    title: str,
    note: str,
    header: Sequence[str],
    rows: Iterable[Sequence[str]],
) -> list[str]:
    """A ``### title`` section: what produced it, then ``note`` (if any), then the table."""
    said = produced_by(res) + (f" {note}" if note else "")
    return [f"### {title}", "", said, "", *table(header, rows), ""]


def machine_section(res: RunInfo) -> list[str]:
    rows = [(k, v) for k, v in res.facts.items()]
    rows.append(("Run time", f"{res.elapsed_s / 60:.1f} min"))
    return table_section(res, "Machine and run", "", ("", ""), rows)


def errors_section(res: RunInfo) -> list[str]:
    if not res.errors:
        return []
    return [
        "### Failures",
        "",
        produced_by(res) + " These runs failed; their tables are missing or partial.",
        "",
        *(f"* `{e}`" for e in res.errors),
        "",
    ]


def render_section(
    res: R,
    markers: tuple[str, str],
    script: str,
    title: str,
    sections: Iterable[Callable[[R], list[str]]],
) -> str:
    """The generated section: between the ``markers``, a ``## title`` and each section's lines."""
    start, end = markers
    lines = [
        start,
        f"<!-- Generated by {script}: do not edit between these markers. -->",
        "",
        f"## {title}",
        "",
    ]
    for section in sections:
        lines += _named(res, section(res))
    lines.append(end)
    return "\n".join(lines) + "\n"


def _named(res: RunInfo, part: list[str]) -> list[str]:
    """``part`` with its command named under its ``###`` heading when it does not say it (a
    *Method* quotes configuration and a few measured figures too)."""
    if len(part) < 3 or not part[0].startswith("### ") or part[2].startswith("Produced by"):
        return part
    return [part[0], "", produced_by(res), *part[1:]]


def write_section(
    path: Path, body: str, markers: tuple[str, str], default: str, *, exact_tail: bool = False
) -> None:
    """Replace the text from the start marker to the end marker of ``path`` with ``body`` (which
    holds both markers); without both markers, append ``body`` after a blank line. A missing file
    starts as ``default``; everything outside the markers is kept.

    By default the markers count in either order, and the text after the end marker starts after
    exactly one blank line. ``exact_tail``: the markers count only in order, the text after the
    end marker is kept exactly as it was, and the file ends with a newline.
    """
    start, end = markers
    text = path.read_text(encoding="utf-8") if path.exists() else default
    found = start in text and end in text
    if found and exact_tail:
        found = text.index(start) < text.index(end)
    if found:
        before = text[: text.index(start)]
        after = text[text.index(end) + len(end) :]
        if exact_tail:
            text = before + body.rstrip("\n") + after
            if not text.endswith("\n"):
                text += "\n"
        else:
            after = after.lstrip("\n")
            text = before + body + ("\n" + after if after else "")
    else:
        text = text.rstrip("\n") + "\n\n" + body
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
