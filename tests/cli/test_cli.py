"""The CLI: every command documented, real work through it, clean errors instead of tracebacks."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from litecluster.cli.main import main
from support import Cluster, make_cluster, wait_for


def _commands(
    group: click.Group, prefix: tuple[str, ...] = ()
) -> list[tuple[tuple[str, ...], click.Command]]:
    found: list[tuple[tuple[str, ...], click.Command]] = []
    for name, cmd in group.commands.items():
        found.append(((*prefix, name), cmd))
        if isinstance(cmd, click.Group):
            found.extend(_commands(cmd, (*prefix, name)))
    return found


@pytest.mark.parametrize(
    ("path", "cmd"), _commands(main), ids=lambda v: " ".join(v) if isinstance(v, tuple) else ""
)
def test_every_command_has_help(path: tuple[str, ...], cmd: click.Command) -> None:
    assert cmd.help, f"{' '.join(path)} has no help text"
    assert len(cmd.help.strip()) > 20
    result = CliRunner().invoke(main, [*path, "--help"])
    assert result.exit_code == 0
    assert "Usage:" in result.output


def _filled(tmp_path: Path) -> Cluster:
    c = make_cluster(tmp_path / "c")
    c.writer.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)")
    for i in range(50):
        c.writer.execute("INSERT INTO t(v) VALUES (?)", (f"row {i}",))
    c.capture_all()
    return c


def test_checksum_verify_and_txlog_commands(tmp_path: Path) -> None:
    c = _filled(tmp_path)
    rep = c.add_replica()
    runner = CliRunner()
    out = runner.invoke(main, ["checksum", str(c.primary_path)])
    assert out.exit_code == 0
    assert f"{c.capture.position.checksum:016x}" in out.output

    ok = runner.invoke(main, ["verify", "--primary", str(c.primary_path), str(rep.db_path)])
    assert ok.exit_code == 0, ok.output
    assert "OK: replica matches" in ok.output
    by_log = runner.invoke(main, ["verify", "--log", str(c.root / "txlog"), str(rep.db_path)])
    assert by_log.exit_code == 0, by_log.output

    c.writer.execute("INSERT INTO t(v) VALUES ('only on the primary')")
    c.capture_all()
    bad = runner.invoke(main, ["verify", "--primary", str(c.primary_path), str(rep.db_path)])
    assert bad.exit_code == 1
    assert "does NOT match" in bad.output
    assert "differing pages" in bad.output

    inspect = runner.invoke(main, ["txlog", "inspect", str(c.root / "txlog"), "--last", "3"])
    assert inspect.exit_code == 0, inspect.output
    assert f"txids 1..{c.log.last_txid}" in inspect.output
    assert inspect.output.count("PAGES") == 3
    verify_log = runner.invoke(main, ["txlog", "verify", str(c.root / "txlog")])
    assert verify_log.exit_code == 0
    assert f"{c.log.last_txid} records verified" in verify_log.output
    c.close()


def test_snapshot_create_and_install_commands(tmp_path: Path) -> None:
    c = _filled(tmp_path)
    want = c.capture.position
    c.close()  # `snapshot create` opens the primary and its log itself
    runner = CliRunner()
    snap = tmp_path / "s.snap"
    made = runner.invoke(
        main,
        [
            "snapshot",
            "create",
            "--db",
            str(c.primary_path),
            "--log",
            str(c.root / "txlog"),
            str(snap),
        ],
    )
    assert made.exit_code == 0, made.output
    assert str(want) in made.output
    target = tmp_path / "fresh.db"
    installed = runner.invoke(main, ["snapshot", "install", str(snap), str(target)])
    assert installed.exit_code == 0, installed.output
    same = runner.invoke(main, ["verify", "--primary", str(c.primary_path), str(target)])
    assert same.exit_code == 0, same.output


def test_errors_are_messages_not_tracebacks(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.db"
    garbage.write_bytes(b"not a database at all" * 500)
    runner = CliRunner()
    for args in (
        ["checksum", str(garbage)],
        ["verify", "--primary", str(garbage), str(garbage)],
        ["snapshot", "install", str(garbage), str(tmp_path / "r.db")],
    ):
        result = runner.invoke(main, args)
        assert result.exit_code == 1, (args, result.output)
        assert "Error:" in result.output
        assert "Traceback" not in result.output
        assert not isinstance(result.exception, Exception) or isinstance(
            result.exception, SystemExit
        )


def test_demo_runs_and_verifies_replicas(tmp_path: Path) -> None:
    # A real process, as a user would run it.
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "litecluster.cli.main",
            "demo",
            "--seconds",
            "3",
            "--dir",
            str(tmp_path / "demo"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.count("identical to the primary") == 2
    assert "restarted n3" in proc.stdout
    assert "caught up from the log" in proc.stdout
    assert " lag " in proc.stdout
    assert "Traceback" not in proc.stderr
    # The nodes were stopped: nothing of theirs is left running or listening.
    assert not list((tmp_path / "demo").glob("n*/node.addr"))


def test_demo_keep_leaves_a_cluster_that_status_can_read(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "litecluster", "demo", "--seconds", "2", "--keep",
         "--dir", str(tmp_path / "demo")],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    pids = []
    try:
        assert proc.returncode == 0, proc.stdout + proc.stderr
        kill_line = next(line for line in proc.stdout.splitlines() if "stop it: kill" in line)
        pids = [int(p) for p in kill_line.split("kill", 1)[1].split(";")[0].split()]
        assert len(pids) == 3
        status_cmd = next(line for line in proc.stdout.splitlines() if "litecluster status" in line)
        args = status_cmd.split("litecluster status", 1)[1].split()
        assert "--token-file" in args, "the printed command passes the token"
        out = subprocess.run(
            [sys.executable, "-m", "litecluster", "status", *args, "--json"],
            capture_output=True, text=True, check=True,
        ).stdout  # fmt: skip
        assert {row["node_id"] for row in json.loads(out)["nodes"]} == {"n1", "n2", "n3"}
    finally:
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
    # SIGTERM stops every node of the kept cluster (a replica once hung in its reconnect loop).
    wait_for(lambda: not any(_alive(pid) for pid in pids), 30, "the kept nodes to stop")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_demo_failover_elects_a_new_primary_and_loses_nothing(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "litecluster", "demo", "--failover", "--seconds", "4",
         "--dir", str(tmp_path / "fo")],
        capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "kill -9" in proc.stdout
    assert "first write acknowledged after the kill" in proc.stdout
    assert "acknowledged writes missing on the new primary: 0" in proc.stdout
