"""A real etcd server for tests (Debian's etcd-server; ./dev test installs it as root), and
one that serves only TLS with client certificates and runs with authentication on."""

from __future__ import annotations

from pathlib import Path

import httpx

from litecluster.cli.localcluster import LocalEtcd as EtcdServer
from litecluster.cli.localcluster import free_port
from litecluster.replication.tls import client_context
from support.certs import make_ca, make_client_cert, make_server_cert

__all__ = ["EtcdServer", "SecureEtcd", "free_port"]


class SecureEtcd(EtcdServer):
    """etcd over https only, requiring a client certificate signed by its own CA
    (``--client-cert-auth``), with RBAC on: user ``root`` (password in ``password_file``)
    and a short ``token_ttl`` so that tests see tokens expire.

    ``cacert``, ``client_cert`` and ``client_key`` are what a node needs to reach it."""

    def __init__(self, directory: Path, *, token_ttl: int = 300, password: str = "s3cret pw"):
        self.token_ttl = token_ttl
        certs = directory / "etcd-certs"
        certs.mkdir(parents=True, exist_ok=True)
        self.cacert, self.ca, self.ca_key = make_ca(certs, "etcd-ca")
        self.server_cert, self.server_key = make_server_cert(certs, self.ca, self.ca_key)
        self.client_cert, self.client_key = make_client_cert(
            certs, self.ca, self.ca_key, "litecluster"
        )
        self.username, self.password = "root", password
        self.password_file = directory / "etcd-password"
        self.password_file.write_text(password + "\n")
        self.password_file.chmod(0o600)
        super().__init__(directory, scheme="https")
        self._enable_auth()

    def client(self) -> httpx.Client:
        """A client presenting the test client certificate (no etcd token)."""
        ctx = client_context(str(self.cacert), tls=True, cert=self.client_cert, key=self.client_key)
        return httpx.Client(verify=ctx, timeout=5)

    def arguments(self) -> list[str]:
        return [*super().arguments(),
                "--cert-file", str(self.server_cert), "--key-file", str(self.server_key),
                "--trusted-ca-file", str(self.cacert), "--client-cert-auth",
                "--auth-token", "simple", "--auth-token-ttl", str(self.token_ttl)]  # fmt: skip

    def healthy(self) -> bool:
        with self.client() as c:
            return bool(c.get(f"{self.url}/health").json().get("health") == "true")

    def call(self, path: str, body: dict[str, object], token: str | None = None) -> httpx.Response:
        with self.client() as c:
            headers = {"Authorization": token} if token else {}
            return c.post(f"{self.url}/v3/{path}", json=body, headers=headers)

    def token(self) -> str:
        r = self.call("auth/authenticate", {"name": self.username, "password": self.password})
        assert r.status_code == 200, r.text
        return str(r.json()["token"])

    def _enable_auth(self) -> None:
        for path, body in (
            ("auth/user/add", {"name": "root", "password": self.password}),
            ("auth/role/add", {"name": "root"}),
            ("auth/user/grant", {"user": "root", "role": "root"}),
            ("auth/enable", {}),
        ):
            r = self.call(path, body)
            assert r.status_code == 200, (path, r.text)
            assert "error" not in r.json(), (path, r.text)
