"""The summary section of docs/BENCHMARKS.md and the README's headline table, written by
``litecluster bench`` (``python -m bench.suite``) after its scenarios ran.

Nothing here measures: the figures are the *Targets* tables that each scenario's script wrote
in its own section of the report (parsed back from it), and the plots are drawn from the JSON
results of this run (``bench.suite.plots``). A section that this run did not rewrite is labelled
with the date of the run that produced it.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from bench.common.report import table, write_section
from bench.suite.scenarios import Outcome, Scenario

SUMMARY = ("<!-- bench:summary:start -->", "<!-- bench:summary:end -->")
HEADLINE = ("<!-- bench:headline:start -->", "<!-- bench:headline:end -->")
SUMMARY_TITLE = "Summary of every benchmark (generated)"

HEADLINE_ROWS = {
    "kv": ("GET ops/s", "every SET a new key", "`client.kv.get` from", "redis-py GET p50",
           "Durable replicated"),
    "sql": ("Point read", "acknowledged"),
    "replication": ("p50 on a replica",),
    "sync": ("",),
    "failover": ("p50",),
    "engine": ("",),
    "bootstrap": ("replica node",),
}  # fmt: skip
"""Per scenario, which of its target rows the README shows: for each text, the first row whose
target contains it."""


@dataclass
class Run:
    command: str
    mode: str
    facts: dict[str, str]
    seconds: float
    outcomes: list[Outcome]
    plots: list[tuple[str, str]]
    """(file name, caption) of every plot written."""
    cannot_start: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Section:
    """What the summary takes from one scenario's section of the report."""

    title: str
    command: str
    date: str
    targets: list[dict[str, str]]


# ---- reading the scenarios' sections -----------------------------------------------------------


def parse_tables(text: str) -> dict[str, list[dict[str, str]]]:
    """Markdown tables by the ``###`` heading above them (the first table under each)."""
    tables: dict[str, list[dict[str, str]]] = {}
    heading, lines, i = "", text.splitlines(), 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("### "):
            heading = line[4:].strip()
        elif line.startswith("|") and i + 1 < len(lines) and lines[i + 1].startswith("|---"):
            head = [c.strip() for c in line.strip().strip("|").split(" | ")]
            rows = []
            i += 2
            while i < len(lines) and lines[i].startswith("|"):
                cells = [c.strip() for c in lines[i].strip().strip("|").split(" | ")]
                if len(cells) == len(head):
                    rows.append(dict(zip(head, cells, strict=True)))
                i += 1
            tables.setdefault(heading, rows)
            continue
        i += 1
    return tables


def section_text(report: str, marker: str) -> str | None:
    start, end = f"<!-- bench:{marker}:start -->", f"<!-- bench:{marker}:end -->"
    if start not in report or end not in report or report.index(start) > report.index(end):
        return None
    return report[report.index(start) : report.index(end)]


def read_section(report: str, marker: str) -> Section | None:
    text = section_text(report, marker)
    if text is None:
        return None
    title = next((ln[3:].strip() for ln in text.splitlines() if ln.startswith("## ")), marker)
    m = re.search(r"Produced by `([^`]*)`", text)
    d = re.search(r"^\| Date \| ([^|]*) \|", text, flags=re.M)
    return Section(title, m.group(1) if m else "", d.group(1).strip() if d else "",
                   parse_tables(text).get("Targets", []))  # fmt: skip


def anchor(title: str) -> str:
    """GitHub's anchor of a Markdown heading."""
    slug = re.sub(r"[^\w\- ]", "", title.strip().lower())
    return "#" + slug.replace(" ", "-")


# ---- the summary -------------------------------------------------------------------------------


def _status(o: Outcome) -> str:
    text = {"ran": "ran", "failed": "**failed**", "skipped": "**skipped**", "not run": "not run"}
    return text.get(o.status, o.status) + (f": {o.detail}" if o.detail else "")


def _minutes(seconds: float) -> str:
    return f"{seconds / 60:.1f} min" if seconds else ""


def _scenario_rows(
    run: Run, scenarios: Sequence[Scenario], sections: dict[str, Section | None]
) -> Iterator[tuple[str, ...]]:
    by = {o.name: o for o in run.outcomes}
    for sc in scenarios:
        o = by[sc.name]
        sec = sections.get(sc.name)
        name = f"[{sc.name}]({anchor(sec.title)})" if sec else sc.name
        cmd = f"`{o.command}`" if o.command else ""
        yield (name, sc.covers, _status(o), cmd, _minutes(o.seconds))


def _target_rows(
    run: Run, scenarios: Sequence[Scenario], sections: dict[str, Section | None]
) -> Iterator[tuple[str, ...]]:
    by = {o.name: o for o in run.outcomes}
    for sc in scenarios:
        sec = sections.get(sc.name)
        if sec is None:
            continue
        fresh = by[sc.name].status == "ran"
        where = f"[{sc.name}]({anchor(sec.title)})" + (
            "" if fresh else f" (earlier run, {sec.date})"
        )
        if not sec.targets:
            yield (where, "no targets table in its section", "", "", "")
        for t in sec.targets:
            yield (where, t.get("Target", ""), t.get("Goal", ""), t.get("Measured", ""),
                   t.get("Verdict", ""))  # fmt: skip


def render_summary(report_text: str, report: Path, run: Run, scenarios: Sequence[Scenario]) -> str:
    sections = {sc.name: read_section(report_text, sc.marker) for sc in scenarios}
    f = run.facts
    machine = ", ".join(f.get(k, "?") for k in ("CPU", "Cores", "Memory", "OS"))
    lines = [
        SUMMARY[0],
        "<!-- Generated by python -m bench.suite (`litecluster bench`): do not edit between these "
        "markers. -->",
        "",
        f"## {SUMMARY_TITLE}",
        "",
        f"Produced by `{run.command}` ({run.mode} run) on {f.get('Date', '?')}, in "
        f"{run.seconds / 60:.1f} min, on {machine}. Each scenario is one benchmark of `bench/` "
        "(`python -m bench.NAME`), which measures litecluster and its peers in the same run, "
        "alternating them, and "
        "writes its own section below: every table with the median and the min\N{EN DASH}max "
        "over the repeats, ratios to each peer measured in the same repeat, the machine and "
        "the exact command. This section gathers their targets; the README's headline table "
        "is a selection of them. Reproduce: `./dev setup && .venv/bin/litecluster bench` "
        "(`--quick`: under 3 minutes; `--only`/`--skip` to choose scenarios).",
        "",
        "### Scenarios",
        "",
        *table(
            ("Scenario", "Measures", "Status in this run", "Command", "Run time"),
            _scenario_rows(run, scenarios, sections),
        ),
        "",
        "### Targets of every scenario",
        "",
        "From the *Targets* table of each scenario's section (follow the link for the method "
        "and every other figure).",
        "",
        *table(
            ("Scenario", "Target", "Goal", "Measured", "Verdict"),
            _target_rows(run, scenarios, sections),
        ),
        "",
    ]
    if run.plots:
        lines += ["### Plots", ""]
        for name, caption in run.plots:
            rel = os.path.relpath(report.parent / "bench" / name, report.parent)
            lines += [f"{caption}.", "", f"![{name}]({rel})", ""]
    if run.cannot_start:
        lines += ["### Could not be started", ""]
        lines += [f"* {why}" for why in run.cannot_start] + [""]
    lines.append(SUMMARY[1])
    return "\n".join(lines) + "\n"


def write_summary(report: Path, run: Run, scenarios: Sequence[Scenario]) -> None:
    text = report.read_text(encoding="utf-8") if report.exists() else "# Benchmarks\n"
    body = render_summary(text, report, run, scenarios)
    write_section(report, body, SUMMARY, "# Benchmarks\n", exact_tail=True)


# ---- the README's headline -----------------------------------------------------------------------


def headline_rows(sec: Section, picks: Sequence[str]) -> list[dict[str, str]]:
    out: list[dict[str, str]] = []
    for text in picks:
        row = next((t for t in sec.targets if text in t.get("Target", "") and t not in out), None)
        if row is not None:
            out.append(row)
    return out


def render_headline(report_text: str, readme: Path, report: Path, run: Run,
                    scenarios: Sequence[Scenario]) -> str:  # fmt: skip
    rel = os.path.relpath(report, readme.parent)
    fresh = {o.name for o in run.outcomes if o.status == "ran"}
    rows = []
    for sc in scenarios:
        sec = read_section(report_text, sc.marker)
        if sec is None:
            continue
        name = f"[{sc.name}]({rel}{anchor(sec.title)})"
        if sc.name not in fresh:
            name += f" (earlier run, {sec.date})"
        for t in headline_rows(sec, HEADLINE_ROWS.get(sc.name, ("",))):
            rows.append((name, t["Target"], t["Measured"], t["Goal"], t["Verdict"]))
    f = run.facts
    return "\n".join([
        HEADLINE[0],
        "<!-- Generated by `litecluster bench`: do not edit between these markers. -->",
        "",
        *table(("Scenario", "Measure", "Measured", "Goal", "Verdict"), rows),
        "",
        f"From `{run.command}` ({run.mode} run, {f.get('Date', '?')}, {f.get('CPU', '?')}, "
        f"{f.get('Cores', '?')}) unless marked: medians over the repeats, peers measured in the "
        "same run. "
        + ("" if run.mode == "full" else f"A {run.mode} run: smaller sizes and fewer repeats "
           "than the full run (`litecluster bench`). ")
        + f"Every figure with its spread, the peers, the method and plots: [{rel}]({rel}"
        f"{anchor(SUMMARY_TITLE)}). Reproduce from a clone: `./dev setup && .venv/bin/litecluster "
        "bench` (`--quick`: under 3 minutes).",
        "",
        HEADLINE[1],
    ]) + "\n"  # fmt: skip


def write_headline(readme: Path, report: Path, run: Run, scenarios: Sequence[Scenario]) -> None:
    text = report.read_text(encoding="utf-8") if report.exists() else ""
    body = render_headline(text, readme, report, run, scenarios)
    if not readme.exists():
        readme.parent.mkdir(parents=True, exist_ok=True)
        readme.write_text(body, encoding="utf-8")
        return
    write_section(readme, body, HEADLINE, "", exact_tail=True)


# ---- plots ---------------------------------------------------------------------------------------


def write_plots(
    results: dict[str, Path], directory: Path, log: Callable[[str], None]
) -> list[tuple[str, str]]:
    """Every plot whose scenario left its JSON in this run; (file name, caption) of each."""
    try:
        from bench.suite.plots import PLOTS
    except ImportError as exc:
        log(f"no plots: {exc} (pip install matplotlib; ./dev setup installs it)")
        return []
    written = []
    for scenario, name, draw in PLOTS:
        if scenario not in results:
            continue
        try:
            data = json.loads(results[scenario].read_text(encoding="utf-8"))
            caption = draw(data, directory / name)
        except Exception as exc:  # one bad plot must not lose the others or the report
            log(f"plot {name} FAILED: {type(exc).__name__}: {exc}")
            continue
        written.append((name, caption))
    return written
