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


def test_the_guarantees_table_names_tests_that_exist() -> None:
    """docs/node.md says which test proves each guarantee: each named file and function must
    exist (a renamed or deleted test must not leave a guarantee looking proven)."""
    doc = (ROOT / "docs" / "node.md").read_text()
    start = doc.index("## Guarantees, by mode and read level")
    section = doc[start : doc.index("\n## ", start + 1)]
    cited = re.findall(r"`(tests/[\w/]+\.py)(?:::(\w+))?`", section)
    assert len(cited) > 20, cited
    missing = []
    for path, name in cited:
        file = ROOT / path
        if not file.is_file():
            missing.append(path)
        elif name and not re.search(rf"^(async )?def {name}\(", file.read_text(), re.M):
            missing.append(f"{path}::{name}")
    assert missing == [], f"docs/node.md cites tests that do not exist: {missing}"
