"""Every benchmark in one run (``litecluster bench``): the benchmarks of bench/ as scenarios, a
summary of their targets, plots, and a headline table for the README.

Usage::

    python -m bench.suite [--quick | --smoke] [--only NAMES] [--skip NAMES] [--out-dir DIR]
                          [--report FILE] [--readme FILE] [--no-install] [--workdir DIR]

1. Installs what the scenarios need when it is missing and this runs as root with apt-get
   (Debian packages ``redis-server``, ``redis-tools``, ``etcd-server``, ``go-dqlite``); what it
   could not install is said, and the scenarios needing it are skipped (a missing optional peer,
   dqlite, only removes that peer's rows).
2. Runs each scenario's module (:data:`bench.suite.scenarios.SCENARIOS`) one after the other,
   each with the arguments of the mode and ``--out REPORT``: each benchmark measures litecluster and its peers in the same
   run, alternating them, and rewrites its own section of the report (its tables: median and
   min-max over the repeats, ratios to each peer, the machine, the exact command). A failing
   scenario is reported and the run goes on.
3. Writes the summary section (``<!-- bench:summary:start -->``): every scenario's status and
   command, all their targets in one table, the plots, and what no scenario measures yet; the
   PNG plots (matplotlib) go to ``bench/`` beside the report; the headline table
   (``<!-- bench:headline:start -->``) goes to the README, with a link to the report.

The default is the full run (under 30 minutes on a 2-core VM) writing ``docs/BENCHMARKS.md``,
``docs/bench/*.png`` and the README's headline; ``--quick`` (under 3 minutes) writes the same
files, its headline labelled as a quick run; ``--smoke`` (tiny sizes and no dqlite peer, for the
end-to-end test: about a minute; each script's own smoke test covers its peers) leaves the
README alone unless ``--readme`` is given. With
``--out-dir DIR`` the report is ``DIR/BENCHMARKS.md``, the plots ``DIR/bench/`` and the README
``DIR/README.md`` (nothing under docs/ is touched).
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from bench.common.cluster import logger, on_sigterm
from bench.common.report import REPO, command_line, machine_facts
from bench.suite import report as suite_report
from bench.suite.scenarios import SCENARIOS, Outcome, Scenario

MODES = ("smoke", "quick", "full")
PACKAGES = {
    "redis-server": "redis-server",
    "redis-benchmark": "redis-tools",
    "etcd": "etcd-server",
    "dqlite-demo": "go-dqlite",
}
"""Program -> the Debian package that installs it."""
log = logger("bench")


# ---- what the scenarios need -------------------------------------------------------------------


def ensure_programs(programs: set[str], install: bool) -> dict[str, str]:
    """Install the missing ``programs`` through apt-get when allowed and possible; return what
    is still missing, program -> why (with the command that installs it)."""
    missing = sorted(p for p in programs if shutil.which(p) is None)
    why = ""
    if missing and install:
        pkgs = sorted({PACKAGES[p] for p in missing})
        if os.geteuid() != 0 or shutil.which("apt-get") is None:
            why = "not root, or no apt-get: cannot install it here"
        else:
            log(f"installing Debian packages: {' '.join(pkgs)}")
            env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
            try:
                subprocess.run(["apt-get", "update", "-qq"], env=env, check=True,
                               capture_output=True, timeout=600)  # fmt: skip
                subprocess.run(["apt-get", "install", "-y", "-qq", *pkgs], env=env,
                               check=True, capture_output=True, timeout=1200)  # fmt: skip
            except (OSError, subprocess.SubprocessError) as exc:
                err = getattr(exc, "stderr", b"") or b""
                why = f"apt-get failed: {err.decode(errors='replace').strip()[-300:] or exc}"
        missing = [p for p in missing if shutil.which(p) is None]
    elif missing:
        why = "--no-install"
    return {
        p: f"`{p}` is not installed (`apt-get install {PACKAGES[p]}`)" + (f"; {why}" if why else "")
        for p in missing
    }


# ---- running a scenario ------------------------------------------------------------------------


def run_script(cmd: list[str], timeout: float) -> tuple[int, str]:
    """Run ``cmd`` in its own session, its stderr shown as it comes; (exit status, last lines).
    Past ``timeout`` seconds, or when this run is interrupted, its process group gets SIGTERM
    (each script then kills what it started), then SIGKILL."""
    tail: collections.deque[str] = collections.deque(maxlen=15)
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)  # fmt: skip

    def relay() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            sys.stderr.write("  " + line)
            tail.append(line.rstrip())

    reader = threading.Thread(target=relay, daemon=True)
    reader.start()
    try:
        try:
            code = proc.wait(timeout)
        except subprocess.TimeoutExpired:
            tail.append(f"timed out after {timeout:.0f} s")
            _stop(proc)
            code = proc.wait()
    finally:
        _stop(proc)
        reader.join(5)
    return code, "\n".join(tail)


def _stop(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def _shown(path: Path) -> str:
    """``path`` relative to the repository when inside it (the scripts name their command)."""
    path = path.absolute()
    return os.path.relpath(path, REPO) if path.is_relative_to(REPO) else str(path)


def run_scenario(
    sc: Scenario, mode: str, report: Path, data: Path, missing: dict[str, str]
) -> Outcome:
    lacks = [missing[p] for p in sc.needs if p in missing]
    if lacks:
        return Outcome(sc.name, "skipped", "; ".join(lacks))
    args = [*sc.args[mode], "--out", _shown(report)]
    json_path = data / f"{sc.name}.json" if sc.json else None
    if json_path is not None:
        json_path.unlink(missing_ok=True)
        args += ["--json", _shown(json_path)]
    shown = f"{Path(sys.executable).name} -m {sc.module} {' '.join(sc.args[mode])}".strip()
    log(f"{sc.name}: {shown}")
    t0 = time.monotonic()
    cmd = [_shown(Path(sys.executable)), "-m", sc.module, *args]  # run in REPO
    code, tail = run_script(cmd, sc.timeout_s[mode])
    seconds = time.monotonic() - t0
    notes = [missing[p] for p in sc.optional if p in missing]
    if code != 0:
        last = tail.splitlines()[-1] if tail else ""
        log(f"{sc.name} FAILED (exit {code}) after {seconds:.0f} s")
        return Outcome(sc.name, "failed", f"exit status {code}: {last}"[:400], shown, seconds)
    log(f"{sc.name} done in {seconds:.0f} s")
    ok_json = json_path if json_path is not None and json_path.exists() else None
    return Outcome(sc.name, "ran", "; ".join(notes), shown, seconds, ok_json)


# ---- the run -----------------------------------------------------------------------------------


def pick(only: str | None, skip: str | None) -> list[Scenario]:
    names = [s.name for s in SCENARIOS]
    for given in (only, skip):
        for n in (given or "").split(","):
            if n and n not in names:
                raise SystemExit(f"unknown scenario {n!r}; the scenarios are {', '.join(names)}")
    chosen = set((only or ",".join(names)).split(",")) - set((skip or "").split(","))
    return [s for s in SCENARIOS if s.name in chosen]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog=f"python -m {__package__}", description=__doc__.split("\n\n")[0]
    )
    mode_group = ap.add_mutually_exclusive_group()
    mode_group.add_argument("--quick", action="store_true", help="under 3 minutes")
    mode_group.add_argument("--smoke", action="store_true", help="tiny sizes (for tests)")
    ap.add_argument("--only", help="comma-separated scenarios to run (default: all)")
    ap.add_argument("--skip", help="comma-separated scenarios not to run")
    ap.add_argument("--out-dir", type=Path, help="write the report, plots and README here")
    ap.add_argument("--report", type=Path, help="the report (default docs/BENCHMARKS.md)")
    ap.add_argument("--readme", type=Path, help="where the headline table goes (default README.md)")
    ap.add_argument("--no-install", action="store_true", help="never run apt-get")
    ap.add_argument("--workdir", type=Path, help="keep the scenarios' JSON results here")
    args = ap.parse_args(argv)

    on_sigterm()
    mode = "smoke" if args.smoke else "quick" if args.quick else "full"
    chosen = pick(args.only, args.skip)
    out_dir = args.out_dir
    report = args.report or (out_dir / "BENCHMARKS.md" if out_dir else REPO / "docs/BENCHMARKS.md")
    readme = args.readme or (out_dir / "README.md" if out_dir else None)
    if readme is None and mode != "smoke":
        readme = REPO / "README.md"  # the headline shows the latest run, labelled with its mode
    plots = report.parent / "bench"
    data = args.workdir or Path(tempfile.mkdtemp(prefix="lcbench-"))
    data.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    facts = machine_facts()
    command = command_line()
    if os.environ.get("LITECLUSTER_BENCH_COMMAND"):  # run by `litecluster bench`
        command = os.environ["LITECLUSTER_BENCH_COMMAND"]
    log(f"{command}: {mode} run of {', '.join(s.name for s in chosen) or 'nothing'}")

    needed = {p for s in chosen for p in (*s.needs, *s.optional)}
    missing = ensure_programs(needed, install=not args.no_install)
    for why in missing.values():
        log(f"cannot start: {why}")
    outcomes: list[Outcome] = []
    try:
        for sc in SCENARIOS:
            if sc not in chosen:
                outcomes.append(Outcome(sc.name, "not run", "not selected in this run"))
                continue
            outcomes.append(run_scenario(sc, mode, report, data, missing))
        written = suite_report.write_plots(
            {o.name: o.json_path for o in outcomes if o.json_path is not None}, plots, log
        )
        run = suite_report.Run(command, mode, facts, time.monotonic() - t0, outcomes, written,
                               list(missing.values()))  # fmt: skip
        suite_report.write_summary(report, run, SCENARIOS)
        if readme is not None:
            suite_report.write_headline(readme, report, run, SCENARIOS)
    finally:
        if args.workdir is None:
            shutil.rmtree(data, ignore_errors=True)
    where = f"{report}" + (f", {readme}" if readme else "") + f", {plots}/"
    log(f"wrote {where} after {(time.monotonic() - t0) / 60:.1f} min")
    failed = [o.name for o in outcomes if o.status == "failed"]
    if failed:
        log(f"failed scenarios: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
