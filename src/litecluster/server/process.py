"""The ``litecluster serve`` process around a :class:`~litecluster.server.node.Node`: the event
loop (uvloop when installed), signals, and the exit code.

SIGTERM and SIGINT stop the node gracefully; SIGHUP reads the token file and the users file
again (credential rotation, docs/security.md); SIGUSR1 prints every thread's stack and SIGUSR2
every asyncio task's stack to stderr, for diagnosing a stuck node in production. The exit code
is 1 when a background task of the node ended on its own (see ``Node.failed``), else 0.
"""

from __future__ import annotations

import asyncio
import faulthandler
import signal
import sys
from typing import Any

from litecluster.server.config import NodeConfig
from litecluster.server.logs import setup_logging
from litecluster.server.node import Node


def _dump_tasks() -> None:
    """SIGUSR2: print every asyncio task's stack to stderr (a stuck node's diagnosis)."""
    for task in asyncio.all_tasks():
        task.print_stack(file=sys.stderr)


async def _serve(config: NodeConfig, configure_logging: bool) -> int:
    node = Node(config)
    if configure_logging:
        setup_logging(node.node_id, config.log_format, config.log_level)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, node.stopping.set)
    loop.add_signal_handler(signal.SIGUSR2, _dump_tasks)
    loop.add_signal_handler(signal.SIGHUP, node.reload_credentials)
    try:
        await node.start()
        await node.stopping.wait()
    finally:
        await node.stop()
    return 1 if node.failed is not None else 0


def serve(config: NodeConfig, *, configure_logging: bool = True) -> int:
    """Run a node until SIGTERM or SIGINT (uvloop when installed).

    SIGUSR1 prints every thread's stack and SIGUSR2 every asyncio task's stack to stderr, for
    diagnosing a stuck node in production.
    """
    faulthandler.register(signal.SIGUSR1, all_threads=True)
    try:
        import uvloop

        runner: Any = uvloop.run
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux
        runner = asyncio.run
    code: int = runner(_serve(config, configure_logging))
    return code
