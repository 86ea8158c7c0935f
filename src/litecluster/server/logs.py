"""Structured logs: one line per event, ``key=value`` (default) or JSON, with the node id.

Library messages are written as ``event key=value ...``; this formatter adds time, level and
node, and in JSON mode splits the pairs into fields so log pipelines can index them.
"""

from __future__ import annotations

import json
import logging
import shlex
import sys
import time


class EventFormatter(logging.Formatter):
    def __init__(self, node_id: str, fmt: str = "kv") -> None:
        super().__init__()
        self.node_id = node_id
        self.json = fmt == "json"

    def format(self, record: logging.LogRecord) -> str:
        ts = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        ts += f".{int(record.msecs):03d}Z"
        msg = record.getMessage()
        if record.exc_info:
            msg += " exc=" + json.dumps(self.formatException(record.exc_info))
        if not self.json:
            return f"ts={ts} level={record.levelname.lower()} node={self.node_id} {msg}"
        event, _, rest = msg.partition(" ")
        out: dict[str, str] = {"ts": ts, "level": record.levelname.lower(), "node": self.node_id}
        out["event"] = event
        try:
            parts = shlex.split(rest)
        except ValueError:
            parts = [rest]
        for part in parts:
            key, eq, value = part.partition("=")
            if eq:
                out[key] = value
            else:
                out["text"] = (out.get("text", "") + " " + part).strip()
        return json.dumps(out)


def setup_logging(node_id: str, fmt: str, level: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(EventFormatter(node_id, fmt))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # One line per etcd request is noise; failures are logged by the node itself.
    logging.getLogger("httpx").setLevel(logging.WARNING)
