"""The ``litecluster`` command: a thin layer over the library.

Each command builds the library objects and calls one function; library errors become a short
message with the hint and exit status 1, never a traceback.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import click

from litecluster import __version__
from litecluster.cli.demo import DemoConfig, run_demo
from litecluster.engine.apply import Replica, ReplicaConfig
from litecluster.engine.capture.capture import Capture, CaptureConfig
from litecluster.engine.checksum import format_checksum
from litecluster.engine.snapshot import create_snapshot, install_snapshot, read_snapshot_header
from litecluster.engine.sqlite import DatabaseError
from litecluster.engine.txlog import TxLog, repair
from litecluster.engine.verify import database_checksum, verify_against_log, verify_replica
from litecluster.errors import LiteclusterError

F = TypeVar("F", bound=Callable[..., Any])


def _friendly(fn: F) -> F:
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except LiteclusterError as err:
            raise click.ClickException(str(err)) from err
        except DatabaseError as err:
            raise click.ClickException(f"SQLite: {err}") from err
        except OSError as err:
            raise click.ClickException(
                f"{err.strerror or err}: {err.filename or ''}".rstrip(": ")
            ) from err

    return wrapper  # type: ignore[return-value]


@contextlib.contextmanager
def _progress(label: str, total: int) -> Iterator[Callable[[int, int], None]]:
    """A progress bar on stderr, driven by the library's (done, total) callbacks."""
    with click.progressbar(length=total, label=label, file=sys.stderr) as bar:
        shown = [0]

        def update(done: int, _total: int) -> None:
            bar.update(done - shown[0])
            shown[0] = done

        yield update


@click.group()
@click.version_option(__version__, prog_name="litecluster")
@click.option(
    "--log-level", default="WARNING", show_default=True, help="DEBUG, INFO, WARNING or ERROR."
)
def main(log_level: str) -> None:
    """Replicated, highly available SQLite."""
    logging.basicConfig(
        level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s"
    )


@main.command()
@click.option("--seconds", default=10.0, show_default=True, help="How long the workload runs.")
@click.option(
    "--replicas",
    default=2,
    show_default=True,
    type=click.IntRange(1, 16),
    help="Number of replicas.",
)
@click.option(
    "--dir",
    "directory",
    type=click.Path(file_okay=False, path_type=Path),
    help="Use this directory.",
)
@click.option("--keep", is_flag=True, help="Keep the files afterwards and print where they are.")
@click.option("--failover", is_flag=True, help="With etcd: kill the primary and show the takeover.")
@_friendly
def demo(seconds: float, replicas: int, directory: Path | None, keep: bool, failover: bool) -> None:
    """Run a primary and replicas locally on a realistic workload, then verify them."""
    if failover:
        from litecluster.cli.demo_failover import run_failover_demo

        res = run_failover_demo(seconds, click.echo, directory)
        if not res.ok:
            raise click.ClickException("the failover demo did not end as expected (see above)")
        return
    result = run_demo(
        DemoConfig(seconds=seconds, replicas=replicas, directory=directory, keep=keep), click.echo
    )
    if not result.ok:
        raise click.ClickException("a replica does not match the primary")


@main.command()
@click.argument("database", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@_friendly
def checksum(database: Path) -> None:
    """Print the replication checksum of DATABASE (page 1 per-copy fields excluded)."""
    s = database_checksum(database)
    click.echo(f"{format_checksum(s.checksum)}  {s.page_count} pages x {s.page_size} B  {database}")


@main.command()
@click.option(
    "--primary",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Primary database.",
)
@click.option(
    "--log",
    "log_dir",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="Primary's txlog.",
)
@click.argument("replica", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@_friendly
def verify(primary: Path | None, log_dir: Path | None, replica: Path) -> None:
    """Check that REPLICA holds exactly the primary's data.

    With --primary, compare the two files page by page (quiesce writes first). With --log,
    compare the replica with the primary's recorded checksum at the replica's position.
    """
    if (primary is None) == (log_dir is None):
        raise click.UsageError("give exactly one of --primary or --log")
    if log_dir is not None:
        ok, message = verify_against_log(replica, log_dir)
    else:
        assert primary is not None
        r = verify_replica(primary, replica)
        ok = r.equal
        message = f"primary  {r.primary}\nreplica  {r.replica}\nposition {r.replica_position}"
        if not ok:
            message += f"\ndiffering pages (first {len(r.differing_pages)}): {r.differing_pages}"
    click.echo(message)
    if not ok:
        raise click.ClickException("replica does NOT match")
    click.echo("OK: replica matches")


@main.group()
def txlog() -> None:
    """Inspect, verify and repair transaction logs."""


@txlog.command("inspect")
@click.argument("directory", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option(
    "--last", default=10, show_default=True, help="How many of the newest records to list."
)
@_friendly
def txlog_inspect(directory: Path, last: int) -> None:
    """Summarise a log and list its newest records (read-only, safe on a live log)."""
    log = TxLog(directory, readonly=True)
    s = log.stats()
    click.echo(f"{s.segments} segments, {s.bytes:,} bytes, txids {s.first_txid}..{s.last_txid}")
    if s.last_txid and last > 0:
        click.echo(
            f"{'txid':>10} {'epoch':>6} {'kind':>6} {'pages':>6} {'db pages':>9}  post checksum"
        )
        for rec in log.read(max(s.first_txid, s.last_txid - last + 1)):
            click.echo(
                f"{rec.txid:>10} {rec.epoch:>6} {rec.kind.name:>6} {len(rec.pages):>6} {rec.db_size:>9}  "
                f"{format_checksum(rec.post_checksum)}"
            )
    log.close()


@txlog.command("verify")
@click.argument("directory", type=click.Path(exists=True, file_okay=False, path_type=Path))
@_friendly
def txlog_verify(directory: Path) -> None:
    """Read and check every record of a log; report the first damage with file and offset."""
    log = TxLog(directory, readonly=True)
    n = sum(1 for _ in log.read(log.first_txid)) if log.last_txid and log.first_txid else 0
    click.echo(f"OK: {n} records verified (txids {log.first_txid}..{log.last_txid})")
    log.close()


@txlog.command("repair")
@click.argument("directory", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.confirmation_option(
    prompt="Cut the log at its first damaged record (damaged data is kept aside)?"
)
@_friendly
def txlog_repair(directory: Path) -> None:
    """Cut a damaged log at its first bad record; the rest is moved aside, not deleted."""
    cut = repair(directory)
    click.echo("nothing to repair" if cut is None else f"cut {cut[0]} at offset {cut[1]}")


@main.group()
def snapshot() -> None:
    """Create and install snapshots."""


@snapshot.command("create")
@click.option(
    "--db", "db", required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path)
)
@click.option("--log", "log_dir", required=True, type=click.Path(file_okay=False, path_type=Path))
@click.argument("output", type=click.Path(dir_okay=False, path_type=Path))
@_friendly
def snapshot_create(db: Path, log_dir: Path, output: Path) -> None:
    """Snapshot a primary DB (with its txlog, which must not be in use) into OUTPUT."""
    with (
        TxLog(log_dir) as log,
        Capture(db, log, CaptureConfig()) as cap,
        _progress("snapshot", cap.hashes.page_count) as progress,
    ):
        header = create_snapshot(cap, output, progress)
    click.echo(f"snapshot of {header.page_count} pages at position {header.position} -> {output}")


@snapshot.command("install")
@click.argument("snapshot_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.argument("replica", type=click.Path(dir_okay=False, path_type=Path))
@_friendly
def snapshot_install(snapshot_file: Path, replica: Path) -> None:
    """Install SNAPSHOT_FILE on the replica database REPLICA (atomically for its readers)."""
    with open(snapshot_file, "rb") as f:
        header = read_snapshot_header(f)
    with (
        Replica(replica, ReplicaConfig()) as rep,
        _progress("install", header.page_count) as progress,
    ):
        pos = install_snapshot(rep, snapshot_file, progress)
    click.echo(f"installed position {pos} on {replica}")


@main.command()
@click.option(
    "--data-dir", type=click.Path(file_okay=False, path_type=Path), help="Data directory."
)
@click.option("--node-id", help="Node id (default: saved in the data directory, else random).")
@click.option("--listen", help="Replication address HOST:PORT [127.0.0.1:4001].")
@click.option("--http", help="HTTP address HOST:PORT for status, metrics, SQL [127.0.0.1:4002].")
@click.option("--primary", help="Primary's replication address; without it this node is primary.")
@click.option("--token-file", type=click.Path(dir_okay=False), help="Cluster token file.")
@click.option(
    "--users-file", type=click.Path(dir_okay=False),
    help="Users for HTTP Basic and RESP AUTH (JSON, bcrypt hashes; docs/security.md).",
)  # fmt: skip
@click.option("--config", "config_file", type=click.Path(dir_okay=False), help="TOML config file.")
@click.option("--cluster-id", help="Cluster name; nodes of other clusters are refused.")
@click.option("--tls-cert", type=click.Path(dir_okay=False), help="PEM certificate (enables TLS).")
@click.option("--tls-key", type=click.Path(dir_okay=False), help="PEM key of --tls-cert.")
@click.option(
    "--tls-ca", type=click.Path(dir_okay=False), help="CA that signed the primary's cert."
)
@click.option("--epoch", type=int, help="Static epoch; raise it each time the primary changes.")
@click.option("--log-format", type=click.Choice(["kv", "json"]), help="Log line format [kv].")
@click.option("--etcd", help="etcd endpoints (http://H:P,...): elect the primary through etcd.")
@click.option("--etcd-cacert", type=click.Path(dir_okay=False), help="CA of etcd's certificate.")
@click.option("--etcd-cert", type=click.Path(dir_okay=False), help="Client certificate for etcd.")
@click.option("--etcd-key", type=click.Path(dir_okay=False), help="Private key of --etcd-cert.")
@click.option("--etcd-username", help="etcd user (etcd with authentication enabled).")
@click.option(
    "--etcd-password-file", type=click.Path(dir_okay=False), help="File holding the etcd password."
)
@click.option("--cluster", "cluster_name", help="Cluster name (same as --cluster-id).")
@click.option("--lease-ttl", type=int, help="Leader lease TTL in seconds [5].")
@click.option("--priority", type=int, help="Promotion priority among equal candidates [0].")
@click.option("--nofailover", is_flag=True, default=None, help="Never promote this node.")
@click.option("--sync-replicas", type=int, help="Acknowledge writes once K replicas hold them [0].")
@click.option("--resp", help="Serve the Redis protocol on HOST:PORT (key/value data in db 'kv').")
@click.option(
    "--sql-allow-pragma", multiple=True, metavar="NAME",
    help="Allow requests to run PRAGMA NAME, also to set it (repeatable; docs/http-api.md).",
)  # fmt: skip
@click.option(
    "--http-allow-origin", multiple=True, metavar="ORIGIN",
    help="Answer CORS requests from ORIGIN (https://app.example, or *; repeatable).",
)  # fmt: skip
@_friendly
def serve(config_file: str | None, **flags: Any) -> None:
    """Run a node: the primary, or (with --primary) a replica of it.

    Settings come from --config (TOML), LITECLUSTER_* environment variables (e.g.
    LITECLUSTER_TOKEN, LITECLUSTER_DATA_DIR) and these flags, later ones winning.
    """
    from litecluster.server.config import load_config
    from litecluster.server.process import serve as run_node

    if flags.get("cluster_name"):
        flags["cluster_id"] = flags["cluster_name"]
    flags.pop("cluster_name", None)
    for name in ("sql_allow_pragma", "http_allow_origin"):
        flags[name] = list(flags[name]) or None  # not given: the file or environment decides
    config = load_config(flags, config_file=config_file)
    if run_node(config):
        raise click.ClickException("the node stopped after an internal failure (see the log)")


@main.command("hash-password")
@click.option("--user", help="Print a users file entry for USER, not the hash alone.")
@click.option("--perm", "perms", multiple=True, metavar="PERM",
              help="A permission of --user (repeatable): all, execute, query, status, ready, "
              "admin, ...")  # fmt: skip
@click.option("--stdin", "from_stdin", is_flag=True, help="Read the password from stdin.")
@_friendly
def hash_password(user: str | None, perms: tuple[str, ...], from_stdin: bool) -> None:
    """A bcrypt hash of a password, for the users_file (docs/security.md)."""
    import json

    from litecluster.server.credentials import PERMISSIONS
    from litecluster.server.credentials import hash_password as make_hash

    unknown = sorted(set(perms) - PERMISSIONS)
    if unknown:
        raise click.BadParameter(f"unknown permission {unknown[0]!r}", param_hint="--perm")
    if from_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    hashed = make_hash(password)
    if user is None:
        click.echo(hashed)
    else:
        entry = {"username": user, "password": hashed, "perms": list(perms) or ["query"]}
        click.echo(json.dumps(entry))


@main.command()
@click.option(
    "--http", default="127.0.0.1:4002", show_default=True, help="Any node's HTTP address."
)
@click.option("--ca", type=click.Path(exists=True, dir_okay=False), help="CA file for a TLS node.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option(
    "--token-file", type=click.Path(exists=True, dir_okay=False), envvar="LITECLUSTER_TOKEN_FILE",
    help="Cluster token file (else LITECLUSTER_TOKEN) for nodes with HTTP authentication.",
)  # fmt: skip
@_friendly
def status(http: str, ca: str | None, as_json: bool, token_file: str | None) -> None:
    """Show every node of the cluster: role, epoch, position per database, lag, state, and
    the leader: epoch, lease time left and sync set."""
    import json

    from litecluster.client.status import cli_headers, cluster_status, leadership, render, rows

    view = cluster_status(http, ca=ca, headers=cli_headers(token_file))
    if as_json:
        nodes = [r.as_dict() for r in rows(view)]
        out = {
            "nodes": nodes,
            "leadership": leadership(view),
            "primary_error": view["primary_error"],
        }
        click.echo(json.dumps(out, indent=1))
    else:
        click.echo(render(view))


@main.command()
@click.option("--to", "target", required=True, help="Node id of the replica to hand over to.")
@click.option(
    "--http", default="127.0.0.1:4002", show_default=True, help="Any node's HTTP address."
)
@click.option("--ca", type=click.Path(exists=True, dir_okay=False), help="CA file for a TLS node.")
@click.option(
    "--token-file", type=click.Path(exists=True, dir_okay=False), envvar="LITECLUSTER_TOKEN_FILE",
    help="Cluster token file (else LITECLUSTER_TOKEN) for nodes with HTTP authentication.",
)  # fmt: skip
@_friendly
def switchover(target: str, http: str, ca: str | None, token_file: str | None) -> None:
    """Planned handoff of the primary role to TARGET (clusters run with --etcd)."""
    from litecluster.client.manual import switchover as hand_over
    from litecluster.client.status import cli_headers

    old, seconds = hand_over(http, target, ca=ca, headers=cli_headers(token_file))
    click.echo(f"{old} handed over to {target} in {seconds:.2f} s")


@main.command()
@click.option("--http", required=True, help="HTTP address of the replica to promote.")
@click.option(
    "--follow", "followers", multiple=True, metavar="HTTP",
    help="HTTP address of another replica to point at the new primary (repeatable).",
)  # fmt: skip
@click.option(
    "--force", is_flag=True,
    help="Promote even though the old primary still streams to this node (fence it yourself).",
)  # fmt: skip
@click.option("--ca", type=click.Path(exists=True, dir_okay=False), help="CA file for a TLS node.")
@click.option(
    "--token-file", type=click.Path(exists=True, dir_okay=False), envvar="LITECLUSTER_TOKEN_FILE",
    help="Cluster token file (else LITECLUSTER_TOKEN) for nodes with HTTP authentication.",
)  # fmt: skip
@_friendly
def promote(
    http: str, followers: tuple[str, ...], force: bool, ca: str | None, token_file: str | None
) -> None:
    """Make a replica of a static cluster (no --etcd) its primary, at a new epoch.

    Run it once the old primary is down: the replica continues the cluster's history from
    what it has applied. Replicas named with --follow are pointed at it; restart the others
    (and the old primary, if it comes back) with --primary set to the new primary.
    """
    from litecluster.client.manual import follow, promote_node
    from litecluster.client.status import cli_headers

    headers = cli_headers(token_file)
    result = promote_node(http, force=force, ca=ca, headers=headers)
    positions = " ".join(f"{db}={txid}" for db, txid in sorted(result["positions"].items()))
    click.echo(f"{result['node_id']} is the primary at epoch {result['epoch']} ({positions})")
    for other in followers:
        got = follow(other, result["listen"], ca=ca, headers=headers)
        click.echo(f"{got['node_id']} follows {result['node_id']}")


@main.command()
@click.option("--quick", is_flag=True, help="Shorter runs: under 3 minutes on 2 cores.")
@click.option("--smoke", is_flag=True, help="Tiny sizes, seconds per scenario (for tests).")
@click.option(
    "--only", metavar="NAMES",
    help="Comma-separated scenarios to run: kv, sql, replication, bootstrap, sync, failover, "
    "engine.",
)  # fmt: skip
@click.option("--skip", metavar="NAMES", help="Comma-separated scenarios not to run.")
@click.option(
    "--out-dir", type=click.Path(file_okay=False, path_type=Path),
    help="Write BENCHMARKS.md, bench/*.png and README.md here (not docs/ and README.md).",
)  # fmt: skip
@click.option("--no-install", is_flag=True, help="Never install missing peers with apt-get.")
def bench(quick: bool, smoke: bool, only: str | None, skip: str | None, out_dir: Path | None,
          no_install: bool) -> None:  # fmt: skip
    """Run every benchmark of bench/ against its peers (Redis, dqlite, plain SQLite) and write
    docs/BENCHMARKS.md, plots in docs/bench/ and the README's headline (labelled quick after
    --quick; not written by --smoke unless --out-dir is given).

    The full run takes under 30 minutes; missing peers are installed with apt-get when run as
    root (redis-server, redis-tools, etcd-server, go-dqlite), else their scenarios are skipped
    and the report says so. Needs a litecluster checkout (it runs `python -m bench.suite`).
    """
    import os
    import shlex
    import subprocess

    if quick and smoke:
        raise click.UsageError("give at most one of --quick and --smoke")
    repo = Path(__file__).resolve().parents[3]
    if not (repo / "bench" / "suite" / "__main__.py").exists():
        raise click.ClickException(
            f"the benchmarks are not here ({repo / 'bench'}): litecluster bench runs "
            "from a checkout of the repository (git clone, then ./dev setup)"
        )
    args = ["--quick"] if quick else ["--smoke"] if smoke else []
    for flag, value in (("--only", only), ("--skip", skip), ("--out-dir", out_dir)):
        if value:
            args += [flag, str(value)]
    if no_install:
        args.append("--no-install")
    env = {**os.environ, "LITECLUSTER_BENCH_COMMAND": shlex.join(["litecluster", "bench", *args])}
    if out_dir is not None:  # the suite runs in the repository root: keep DIR the caller's
        args[args.index("--out-dir") + 1] = str(out_dir.absolute())
    # From the repository root, so that `bench` is importable whatever the caller's directory.
    cmd = [sys.executable, "-m", "bench.suite", *args]
    code = subprocess.run(cmd, cwd=repo, env=env).returncode
    if code:
        raise SystemExit(code)


if __name__ == "__main__":  # pragma: no cover
    main()
