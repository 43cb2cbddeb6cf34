"""TLS to Redis and PostgreSQL, verified, with certificates made in the test.

A CA, a server certificate for 127.0.0.1 and a client certificate come from
``cryptography``. Redis listens with ``tls-port`` and requires client
certificates; PostgreSQL runs with ``ssl=on``. ``pkg-migrate`` migrates over TLS,
a real ``pkg-sidecar`` activates a snapshot from PostgreSQL and follows an
``activate:`` from Redis, both over TLS with the server's certificate verified;
a client trusting another CA is refused by both.
"""

from __future__ import annotations

import datetime
import ipaddress
import json
import ssl
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from sidecar_fixtures import Sidecar, run, spec, store_snapshots, wait_for

from evaluator_sidecar.signals.connect import connect_redis
from pkg_testbed.postgres import PostgresServer
from pkg_testbed.procs import free_port
from pkg_testbed.redis import RedisServer

pytestmark = pytest.mark.integration


def _name(common: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])


def _write_key(key: ec.EllipticCurvePrivateKey, path: Path) -> None:
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    path.chmod(0o600)


def _issue(
    folder: Path,
    name: str,
    issuer: tuple[x509.Certificate, ec.EllipticCurvePrivateKey] | None,
    *,
    server: bool = False,
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(name))
        .issuer_name(issuer[0].subject if issuer else _name(name))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=issuer is None, path_length=None), critical=True)
    )
    if server:
        builder = builder.add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
    cert = builder.sign(issuer[1] if issuer else key, hashes.SHA256())
    (folder / f"{name}.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    _write_key(key, folder / f"{name}.key")
    return cert, key


@dataclass
class Pki:
    folder: Path

    def path(self, name: str) -> str:
        return str(self.folder / name)


@pytest.fixture(scope="module")
def pki(testbed_dir: Path) -> Pki:
    # Under the test bed's folder: PostgreSQL runs as another user and must read its files.
    folder = testbed_dir / f"tls-{uuid.uuid4().hex[:8]}"
    folder.mkdir(mode=0o755)
    ca = _issue(folder, "ca", None)
    _issue(folder, "server", ca, server=True)
    _issue(folder, "client", ca)
    _issue(folder, "other-ca", None)  # a CA that signed nothing here
    return Pki(folder)


@pytest.fixture(scope="module")
def tls_redis(pki: Pki, testbed_dir: Path) -> Iterator[tuple[RedisServer, int]]:
    tls_port = free_port()
    server = RedisServer(
        testbed_dir / f"redis-tls-{uuid.uuid4().hex[:8]}",
        extra_args=[
            "--tls-port",
            str(tls_port),
            "--tls-cert-file",
            pki.path("server.crt"),
            "--tls-key-file",
            pki.path("server.key"),
            "--tls-ca-cert-file",
            pki.path("ca.crt"),
            "--tls-auth-clients",
            "yes",
        ],
    )
    server.start()
    yield server, tls_port
    server.stop()


@pytest.fixture(scope="module")
def tls_postgres(pki: Pki, testbed_dir: Path) -> Iterator[PostgresServer]:
    key = pki.folder / "server-pg.key"
    key.write_bytes((pki.folder / "server.key").read_bytes())
    key.chmod(0o600)
    server = PostgresServer(
        testbed_dir / f"postgres-tls-{uuid.uuid4().hex[:8]}",
        settings={
            "ssl": "on",
            "ssl_cert_file": pki.path("server.crt"),
            "ssl_key_file": str(key),
        },
    )
    server.own(key)
    server.start()
    yield server
    server.stop()


def tls_dsn(server: PostgresServer, pki: Pki, database: str, ca: str = "ca.crt") -> str:
    return (
        f"postgresql://pkg@127.0.0.1:{server.port}/{database}"
        f"?sslmode=verify-full&sslrootcert={pki.path(ca)}"
    )


def redis_tls_options(pki: Pki, ca: str = "ca.crt") -> dict[str, str]:
    return {
        "tls_ca_file": pki.path(ca),
        "tls_cert_file": pki.path("client.crt"),
        "tls_key_file": pki.path("client.key"),
    }


def test_redis_over_tls_verifies_the_server_and_presents_a_client_certificate(
    pki: Pki, tls_redis: tuple[RedisServer, int]
) -> None:
    _server, port = tls_redis

    async def go() -> None:
        good = connect_redis(f"rediss://127.0.0.1:{port}/0", **redis_tls_options(pki))
        assert await good.ping()
        await good.aclose()
        wrong_ca = connect_redis(
            f"rediss://127.0.0.1:{port}/0", **redis_tls_options(pki, "other-ca.crt")
        )
        with pytest.raises(RedisConnectionError, match=r"(?i)certificate verify failed"):
            await wrong_ca.ping()
        await wrong_ca.aclose()
        # No client certificate: the server (tls-auth-clients yes) refuses the handshake.
        anonymous = Redis.from_url(f"rediss://127.0.0.1:{port}/0", ssl_ca_certs=pki.path("ca.crt"))
        with pytest.raises(RedisConnectionError):
            await anonymous.ping()
        await anonymous.aclose()

    run(go())


def test_postgres_over_tls_verifies_the_server(pki: Pki, tls_postgres: PostgresServer) -> None:
    async def go() -> None:
        conn = await asyncpg.connect(tls_dsn(tls_postgres, pki, "postgres"))
        try:
            assert await conn.fetchval("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
        finally:
            await conn.close()
        with pytest.raises(ssl.SSLCertVerificationError):
            await asyncpg.connect(tls_dsn(tls_postgres, pki, "postgres", "other-ca.crt"))

    run(go())


def test_migrate_and_a_sidecar_run_over_tls_to_both_servers(
    tmp_path: Path, pki: Pki, tls_redis: tuple[RedisServer, int], tls_postgres: PostgresServer
) -> None:
    database = f"pkg_tls_{uuid.uuid4().hex[:8]}"
    tls_postgres.create_database(database)
    dsn = tls_dsn(tls_postgres, pki, database)
    migrate = subprocess.run(
        [str(Path(sys.executable).parent / "pkg-migrate"), "--dsn", dsn],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert migrate.returncode == 0, migrate.stderr
    tag = uuid.uuid4().hex[:6]
    v1, v2 = f"rules@1.0.0-tls-{tag}", f"rules@2.0.0-tls-{tag}"
    store_snapshots(dsn, [spec(v1), spec(v2)], promote=v1)

    _server, port = tls_redis
    options = redis_tls_options(pki)
    device = f"tls-{tag}"
    sidecar = Sidecar(
        tmp_path,
        device_id=device,
        database_url=dsn,
        redis_url=f"rediss://127.0.0.1:{port}/0",
        target=f"tls-{tag}",
        extra={
            "PKG_REDIS_TLS_CA_FILE": options["tls_ca_file"],
            "PKG_REDIS_TLS_CERT_FILE": options["tls_cert_file"],
            "PKG_REDIS_TLS_KEY_FILE": options["tls_key_file"],
        },
    ).start()

    async def admin(*args: Any) -> Any:
        client = connect_redis(f"rediss://127.0.0.1:{port}/0", **options)
        try:
            return await client.execute_command(*args)
        finally:
            await client.aclose()

    async def sidecar_connections() -> list[bool]:
        conn = await asyncpg.connect(dsn)
        try:
            rows = await conn.fetch(
                "SELECT s.ssl FROM pg_stat_activity a JOIN pg_stat_ssl s USING (pid) "
                "WHERE a.datname = $1 AND a.pid <> pg_backend_pid()",
                database,
            )
            return [row["ssl"] for row in rows]
        finally:
            await conn.close()

    def heartbeat_version() -> str | None:
        raw = run(admin("GET", f"pkg:hb:prod:{device}"))
        return None if raw is None else json.loads(raw).get("version")

    try:
        wait_for(lambda: sidecar.version() == v1, timeout=30, what=f"the sidecar to run {v1}")
        connections = run(sidecar_connections())
        assert connections, "the sidecar holds a pooled connection"
        assert all(connections), connections
        run(admin("PUBLISH", "pkg_updates", f"activate:{v2}"))
        wait_for(lambda: sidecar.version() == v2, timeout=30, what=f"the sidecar to run {v2}")
        wait_for(lambda: heartbeat_version() == v2, timeout=15, what="a heartbeat over TLS")
    finally:
        sidecar.stop()
