"""Fixtures of the key/value tests: one redis-server per test session (per xdist worker)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from support.kv_harness import RedisServer, Twin


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def twin(redis_server: RedisServer, tmp_path: Path) -> Iterator[Twin]:
    t = Twin(tmp_path / "kv.db", redis_server.port)
    t.reset()
    yield t
    t.close()
