"""The docs that must stay true as the code changes."""

from __future__ import annotations

import re
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


def test_the_module_map_names_no_module_that_is_gone() -> None:
    doc = (ROOT / "docs" / "architecture.md").read_text()
    package = ROOT / "src" / "litecluster"
    start = doc.index("## Module map")
    named = re.findall(r"^\| `([^`]+\.py)` \|", doc[start:], re.M)
    gone = [rel for rel in named if not (package / rel).is_file()]
    assert named, "the module map lists no module"
    assert gone == [], f"drop these from the module map in docs/architecture.md: {gone}"


def test_the_docs_cite_no_file_outside_the_repository() -> None:
    outside = [
        p.relative_to(ROOT).as_posix()
        for p in [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
        if "../shared" in p.read_text() or "DESIGN.md" in p.read_text()
    ]
    assert outside == []
