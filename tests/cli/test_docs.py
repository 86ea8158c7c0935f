"""The docs that must stay true as the code changes."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_module_map_names_every_module() -> None:
    doc = (ROOT / "docs" / "architecture.md").read_text()
    package = ROOT / "src" / "litecluster"
    missing = [
        rel
        for p in sorted(package.rglob("*.py"))
        if p.name not in ("__init__.py", "__main__.py")
        and f"`{(rel := p.relative_to(package).as_posix())}`" not in doc
    ]
    assert missing == [], f"add these to the module map in docs/architecture.md: {missing}"
