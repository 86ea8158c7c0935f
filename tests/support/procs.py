"""Starting and collecting the child processes of the multi-process tests.

Children are fresh interpreters (``subprocess``, the equivalent of the 'spawn' start method):
nothing is forked from a process that holds SQLite connections.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import litecluster
from litecluster.engine.sqlite import connect

TESTS = Path(__file__).resolve().parent.parent
SRC = Path(litecluster.__file__).resolve().parent.parent  # children import the same library


def child_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LITECLUSTER_CRASHPOINT")}
    env["PYTHONPATH"] = os.pathsep.join([str(SRC), str(TESTS), env.get("PYTHONPATH", "")])
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra or {})
    return env


def spawn(
    script: str, role: str, args: dict[str, Any], env: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    """Start ``tests/support/<script> ROLE JSON`` in a new interpreter and process group."""
    return subprocess.Popen(
        [sys.executable, str(TESTS / "support" / script), role, json.dumps(args)],
        env=child_env(env),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )


def finish(proc: subprocess.Popen[bytes], timeout: float) -> tuple[int, str]:
    """Wait for a child (kill its group on timeout); returns (returncode, its output)."""
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        kill_group(proc)
        out, err = proc.communicate()
        raise AssertionError(
            f"child {proc.args!r} did not finish in {timeout}s\n{err.decode(errors='replace')}"
        ) from None
    return proc.returncode, (out + err).decode(errors="replace")


def kill_group(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        with suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


@contextmanager
def reaped(proc: subprocess.Popen[bytes]) -> Iterator[subprocess.Popen[bytes]]:
    """Make sure the child is gone when the block ends, however it ends."""
    try:
        yield proc
    finally:
        kill_group(proc)
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()


def read_json(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def integrity(path: Path) -> list[tuple[Any, ...]]:
    """PRAGMA integrity_check through the engine's SQLite (never the stdlib in this process)."""
    conn = connect(path)
    try:
        return [tuple(r) for r in conn.execute("PRAGMA integrity_check").fetchall()]
    finally:
        conn.close()


def query(path: Path, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    conn = connect(path)
    try:
        return [tuple(r) for r in conn.execute(sql, params).fetchall()]
    finally:
        conn.close()
