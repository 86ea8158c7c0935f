"""The README's Python examples run, in order, against a real local cluster."""

from __future__ import annotations

import re
from pathlib import Path

from support.nodes import AUTH_ON, Nodes

README = Path(__file__).resolve().parents[2] / "README.md"


def _kv_examples() -> list[str]:
    text = README.read_text()
    section = text.split("## Key/value", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```python\n(.*?)```", section, flags=re.S)


def test_the_key_value_examples_run(tmp_path: Path) -> None:
    blocks = _kv_examples()
    assert len(blocks) >= 2
    n = Nodes(tmp_path)
    try:
        primary = n.node("p", env=AUTH_ON)  # the examples pass the token, as applications do
        n.node("r", primary, env=AUTH_ON)
        scope = {
            "HTTP": primary.http, "PRIMARY": primary.listen,
            "TOKEN_FILE": str(n.token_file), "REPLICA_DIR": str(tmp_path / "app"),
        }  # fmt: skip
        for block in blocks:
            exec(compile(block, str(README), "exec"), scope)
    finally:
        n.close()
