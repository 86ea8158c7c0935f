"""The replication layer's boundaries: its own settings, its own TLS inputs, no import cycle
and nothing imported from the layers built on it."""

from __future__ import annotations

import ssl
from pathlib import Path

import grimp
import pytest

from litecluster.errors import ConfigError
from litecluster.replication.tls import server_context
from support.certs import make_ca, make_server_cert

ABOVE = ("litecluster.ha", "litecluster.server", "litecluster.client", "litecluster.cli")


def test_replication_imports_no_layer_above_and_has_no_import_cycle() -> None:
    graph = grimp.build_graph("litecluster")
    modules = {m for m in graph.modules if m.startswith("litecluster.replication")}
    upward: list[tuple[str, str]] = []
    cycles: list[tuple[str, str]] = []
    for module in sorted(modules):
        for imported in sorted(graph.find_modules_directly_imported_by(module)):
            if imported.startswith(ABOVE):
                upward.append((module, imported))
            elif imported in modules and graph.chain_exists(importer=imported, imported=module):
                cycles.append((module, imported))
    assert upward == []
    assert cycles == []


def test_server_context_serves_tls_only_with_both_cert_and_key(tmp_path: Path) -> None:
    ca, ca_cert, ca_key = make_ca(tmp_path, "ca")
    cert, key = make_server_cert(tmp_path, ca_cert, ca_key)
    assert server_context(None, None) is None
    assert server_context(cert, None) is None
    ctx = server_context(cert, key)
    assert ctx is not None
    assert ctx.minimum_version == ssl.TLSVersion.TLSv1_2
    with pytest.raises(ConfigError, match="cannot load the TLS certificate") as info:
        server_context(ca, key)  # a certificate that does not match the key
    assert info.value.context["field"] == "tls_cert"
    assert info.value.context["value"] == str(ca)
