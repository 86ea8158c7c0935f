"""The etcd client against a production-shaped etcd: https only, client certificates required,
authentication on (a user and password, tokens that expire)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from litecluster.errors import ConfigError
from litecluster.ha.etcd import EtcdAccess, EtcdAuthError, EtcdClient, EtcdUnavailableError
from support.certs import make_server_cert
from support.etcd_server import SecureEtcd


@pytest.fixture(scope="module")
def etcd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecureEtcd]:
    server = SecureEtcd(tmp_path_factory.mktemp("secure-etcd"), token_ttl=1)
    yield server
    server.stop()


def _access(etcd: SecureEtcd, **changes: object) -> EtcdAccess:
    full = EtcdAccess(
        cacert=etcd.cacert, cert=etcd.client_cert, key=etcd.client_key,
        username=etcd.username, password_file=etcd.password_file,
    )  # fmt: skip
    return replace(full, **changes)  # type: ignore[arg-type]


def test_tls_with_a_client_certificate_and_a_user_reads_and_writes(etcd: SecureEtcd) -> None:
    async def main() -> None:
        c = EtcdClient([etcd.url], access=_access(etcd))
        lease = await c.grant(5)
        created = await c.create("/s/leader", b"me", lease=lease)
        assert created.succeeded
        kv = await c.get("/s/leader")
        assert kv is not None
        assert kv.value == b"me"
        assert kv.lease == lease
        await c.revoke(lease)
        assert await c.get("/s/leader") is None
        await c.close()

    asyncio.run(main())


def test_without_a_client_certificate_or_the_ca_etcd_is_unreachable(etcd: SecureEtcd) -> None:
    async def main(access: EtcdAccess) -> str:
        c = EtcdClient([etcd.url], access=access, timeout=2)
        try:
            with pytest.raises(EtcdUnavailableError) as err:
                await c.get("/s/x")
            return str(err.value)
        finally:
            await c.close()

    asyncio.run(main(_access(etcd, cert=None, key=None)))  # refused in the TLS handshake
    assert "CERTIFICATE_VERIFY_FAILED" in asyncio.run(main(_access(etcd, cacert=None)))


def test_a_wrong_password_is_an_auth_error_that_heals_when_the_file_is_fixed(
    etcd: SecureEtcd, tmp_path: Path
) -> None:
    pw = tmp_path / "pw"
    pw.write_text("wrong\n")

    async def main() -> None:
        c = EtcdClient([etcd.url], access=_access(etcd, password_file=pw))
        with pytest.raises(EtcdAuthError) as err:
            await c.put("/s/k", b"v")
        assert not err.value.retryable
        assert "root" in str(err.value)
        assert "etcd_password_file" in str(err.value)
        pw.write_text(etcd.password + "\n")  # the file is read at each authentication
        await c.put("/s/k", b"v")
        kv = await c.get("/s/k")
        assert kv is not None
        assert kv.value == b"v"
        await c.close()

    asyncio.run(main())


def test_an_expired_token_is_renewed_once_for_concurrent_requests(etcd: SecureEtcd) -> None:
    async def main() -> None:
        c = EtcdClient([etcd.url], access=_access(etcd))
        await c.put("/s/n", b"0")
        first = c._token
        assert first is not None

        # etcd forgets a simple token left unused for --auth-token-ttl (1 s here). Every
        # use renews it, so the check itself must come less often than the TTL: the idle
        # time is what is under test, not a stand-in for a condition.
        for _ in range(10):
            await asyncio.sleep(etcd.token_ttl + 1)
            if etcd.call("kv/range", {"key": "L3Mvbg=="}, first).status_code == 401:
                break
        else:
            raise AssertionError("etcd never expired the token")
        tokens: set[str] = set()
        real = c._authenticate

        async def counting(stale: str | None) -> str:
            token = await real(stale)
            tokens.add(token)
            return token

        c._authenticate = counting  # type: ignore[method-assign]
        got = await asyncio.gather(*(c.get("/s/n") for _ in range(8)))
        assert all(kv is not None and kv.value == b"0" for kv in got)
        assert len(tokens) == 1, "one new token for all of them"
        assert first not in tokens
        await c.close()

    asyncio.run(main())


def test_a_client_certificate_with_a_common_name_gets_a_hint(
    etcd: SecureEtcd, tmp_path: Path
) -> None:
    cert, key = make_server_cert(tmp_path, etcd.ca, etcd.ca_key)  # CN=litecluster-node

    async def main() -> None:
        c = EtcdClient([etcd.url], access=_access(etcd, cert=cert, key=key))
        with pytest.raises(EtcdAuthError) as err:
            await c.get("/s/x")
        assert "CommonName" in str(err.value)
        assert "without a CN" in str(err.value)
        await c.close()

    asyncio.run(main())


def test_access_settings_that_go_together() -> None:
    with pytest.raises(ConfigError):
        EtcdAccess(cert=Path("/c.pem"))
    with pytest.raises(ConfigError):
        EtcdAccess(username="root")
