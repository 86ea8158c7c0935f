from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from support import Cluster, make_cluster


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    c = make_cluster(tmp_path / "c")
    yield c
    c.close()
