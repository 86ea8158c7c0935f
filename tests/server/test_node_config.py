"""Node configuration: sources, precedence and validation errors that name the setting."""

from __future__ import annotations

from pathlib import Path

import pytest

from litecluster.errors import ConfigError, NodeError, StaleEpochError
from litecluster.replication.config import Address
from litecluster.replication.state import NodeState
from litecluster.server.config import load_config, read_tokens


def test_flags_override_environment_override_file_override_defaults(tmp_path: Path) -> None:
    toml = tmp_path / "node.toml"
    toml.write_text(
        'data-dir = "/data/a"\nlisten = "127.0.0.1:5000"\nhttp = "127.0.0.1:5001"\n'
        "heartbeat_interval = 0.5\ndatabases = ['main', 'flags']\n"
    )
    env = {"LITECLUSTER_LISTEN": "127.0.0.1:6000", "LITECLUSTER_REPLICA_DURABLE": "false"}
    cfg = load_config({"listen": None, "http": "0.0.0.0:7001"}, env, toml)
    assert cfg.data_dir == Path("/data/a")
    assert cfg.listen == Address("127.0.0.1", 6000)
    assert cfg.http == Address("0.0.0.0", 7001)
    assert cfg.heartbeat_interval == 0.5
    assert cfg.databases == ("main", "flags")
    assert cfg.replica_durable is False
    assert cfg.peer_timeout == 5.0  # default
    assert cfg.is_primary
    assert cfg.source("listen") == "LITECLUSTER_LISTEN"
    assert cfg.source("http") == "flag"


@pytest.mark.parametrize(
    ("flags", "env", "field", "fragment"),
    [
        ({"listen": "nope"}, {}, "listen", "HOST:PORT"),
        ({"listen": "127.0.0.1:99999"}, {}, "listen", "HOST:PORT"),
        ({}, {"LITECLUSTER_EPOCH": "zero"}, "epoch", "LITECLUSTER_EPOCH"),
        ({}, {"LITECLUSTER_EPOCH": "0"}, "epoch", "must be 1 or more"),
        ({"heartbeat_interval": 3.0}, {}, "peer_timeout", "twice"),
        ({"databases": "main,bad/name"}, {}, "databases", "bad database name"),
        (
            {"tls_cert": "/nonexistent.pem", "tls_key": "/nonexistent.key"},
            {},
            "tls_cert",
            "not found",
        ),
        ({"tls_cert": "/x.pem"}, {}, "tls_key", "go together"),
        ({"log_format": "xml"}, {}, "log_format", "kv or json"),
        ({"etcd": "10.0.0.9:2379"}, {}, "etcd", "http:// or https://"),
        ({"etcd": "http://10.0.0.9:2379", "etcd_cacert": __file__}, {}, "etcd", "https://"),
        ({"etcd": "https://e:2379", "etcd_cert": __file__}, {}, "etcd_key", "go together"),
        ({"etcd": "https://e:2379", "etcd_username": "root"}, {}, "etcd_password_file", "needs"),
        ({"etcd": "https://e:2379", "etcd_cacert": "/nope.pem"}, {}, "etcd_cacert", "not found"),
        ({}, {"LITECLUSTER_REPLICA_DURABLE": "maybe"}, "replica_durable", "true or false"),
        ({}, {"LITECLUSTER_RESP_READ_LEVEL": "weak"}, "resp_read_level", "none, strong or"),
        ({"sql_allow_pragma": ["user_version", "x; DROP"]}, {}, "sql_allow_pragma", "PRAGMA name"),
        ({"http_allow_origin": ["https://a.example/path"]}, {}, "http_allow_origin", "origin"),
        ({}, {"LITECLUSTER_HTTP_ALLOW_ORIGIN": "a.example"}, "http_allow_origin", "origin"),
    ],
)
def test_bad_values_name_the_field_the_value_and_the_source(
    tmp_path: Path, flags: dict[str, object], env: dict[str, str], field: str, fragment: str
) -> None:
    with pytest.raises(ConfigError) as info:
        load_config({"data_dir": str(tmp_path), **flags}, env)
    assert info.value.context["field"] == field
    assert fragment in str(info.value)


def test_unknown_keys_and_bad_toml_are_reported_with_the_file(tmp_path: Path) -> None:
    toml = tmp_path / "node.toml"
    toml.write_text('data_dir = "/x"\nlisten_addr = "127.0.0.1:1"\n')
    with pytest.raises(ConfigError, match="unknown setting") as info:
        load_config({}, {}, toml)
    assert info.value.context["field"] == "listen_addr"
    toml.write_text("data_dir = \n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config({}, {}, toml)
    with pytest.raises(ConfigError, match="not found"):
        load_config({}, {}, tmp_path / "missing.toml")
    with pytest.raises(ConfigError, match="no data directory"):
        load_config({}, {})


def test_token_is_required_long_enough_and_read_from_file_or_env(tmp_path: Path) -> None:
    cfg = load_config({"data_dir": str(tmp_path)}, {})
    with pytest.raises(ConfigError, match="no cluster token") as info:
        read_tokens(cfg)
    assert "openssl rand" in info.value.hint
    cfg = load_config({"data_dir": str(tmp_path)}, {"LITECLUSTER_TOKEN": "short"})
    with pytest.raises(ConfigError, match="too short"):
        read_tokens(cfg)
    f = tmp_path / "token"
    f.write_text("a" * 32 + "\n")
    f.chmod(0o600)
    cfg = load_config({"data_dir": str(tmp_path), "token_file": str(f)}, {})
    assert read_tokens(cfg).current == "a" * 32


def test_node_state_keeps_identity_refuses_other_clusters_and_lower_epochs(tmp_path: Path) -> None:
    state = NodeState(tmp_path)
    with pytest.raises(NodeError, match="another node is running"):
        NodeState(tmp_path)
    state.adopt("", "c1", 1)
    node_id = state.node_id
    assert node_id.startswith("n-")
    state.see_epoch(4)
    with pytest.raises(StaleEpochError):
        state.see_epoch(3)
    state.close()
    again = NodeState(tmp_path)
    assert (again.node_id, again.cluster_id, again.epoch) == (node_id, "c1", 4)
    with pytest.raises(NodeError, match="another cluster"):
        again.adopt("", "c2", 1)
    again.close()
    (tmp_path / "node.json").write_text("{not json")
    with pytest.raises(NodeError, match="damaged"):
        NodeState(tmp_path)


def test_log_lines_are_one_event_with_node_id_in_kv_and_json() -> None:
    import json
    import logging

    from litecluster.server.logs import EventFormatter

    record = logging.LogRecord(
        "litecluster.primary", logging.WARNING, __file__, 1,
        "auth.refused peer=%s node_id=%s reason=%s", ("127.0.0.1:5", "r9", "bad_token"), None,
    )  # fmt: skip
    kv = EventFormatter("n1", "kv").format(record)
    assert "\n" not in kv
    assert kv.endswith(
        "level=warning node=n1 auth.refused peer=127.0.0.1:5 node_id=r9 reason=bad_token"
    )
    js = json.loads(EventFormatter("n1", "json").format(record))
    assert js["event"] == "auth.refused"
    assert js["node"] == "n1"
    assert js["peer"] == "127.0.0.1:5"
    assert js["reason"] == "bad_token"
    assert js["level"] == "warning"


def test_every_setting_is_documented_in_docs_node_md() -> None:
    import dataclasses

    from litecluster.server.config import NodeConfig

    text = (Path(__file__).resolve().parents[2] / "docs" / "node.md").read_text()
    missing = [
        f.name
        for f in dataclasses.fields(NodeConfig)
        if not f.name.startswith("_") and f"`{f.name}`" not in text
    ]
    assert missing == []


def test_the_replication_layer_gets_a_replication_config_with_the_nodes_values(
    tmp_path: Path,
) -> None:
    from litecluster.replication.config import ReplicationConfig

    cfg = load_config(
        {"data_dir": str(tmp_path), "peer_timeout": "7", "resp": "127.0.0.1:0"},
        {"LITECLUSTER_SEGMENT_BYTES": "8192", "LITECLUSTER_TOKEN": "t" * 32},
    )
    rep = cfg.replication()
    assert type(rep) is ReplicationConfig
    assert (rep.data_dir, rep.primary, rep.peer_timeout, rep.segment_bytes) == (
        tmp_path, None, 7.0, 8192,
    )  # fmt: skip
    # Credentials and front-end settings stay with the node.
    assert not hasattr(rep, "token")
    assert not hasattr(rep, "resp")
    follow = cfg.replication(primary=Address("10.0.0.1", 4001))
    assert follow.primary == Address("10.0.0.1", 4001)
    assert follow.peer_timeout == 7.0
    assert cfg.primary is None


def test_allowed_pragmas_and_origins_come_from_flags_environment_or_file(tmp_path: Path) -> None:
    toml = tmp_path / "node.toml"
    toml.write_text('sql_allow_pragma = ["user_version"]\n')
    cfg = load_config({"data_dir": str(tmp_path)}, {}, toml)
    assert cfg.sql_allow_pragma == ("user_version",)
    assert cfg.replication().sql_allow_pragma == ("user_version",), "the writer reads it"
    env = {"LITECLUSTER_HTTP_ALLOW_ORIGIN": "https://a.example,http://127.0.0.1:8080"}
    cfg = load_config({"data_dir": str(tmp_path), "sql_allow_pragma": ["foreign_keys"]}, env)
    assert cfg.sql_allow_pragma == ("foreign_keys",)
    assert cfg.http_allow_origin == ("https://a.example", "http://127.0.0.1:8080")
    assert load_config(
        {"data_dir": str(tmp_path), "http_allow_origin": ["*"]}, {}
    ).http_allow_origin == ("*",)
