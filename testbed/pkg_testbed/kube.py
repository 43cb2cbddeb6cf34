"""A real Kubernetes control plane, envtest-style: etcd and kube-apiserver, no nodes.

etcd runs on a temporary data directory; kube-apiserver serves TLS on a free
loopback port with certificates generated here, RBAC authorization, a static
token for an admin in ``system:masters``, and service-account signing keys (so
the TokenRequest API can mint tokens for the operator's own ServiceAccount).
It writes a kubeconfig that kubectl, kopf and the Python ``kubernetes`` client
all read.

With no controller-manager, scheduler or kubelet, pods stay Pending and nothing
is garbage-collected; admission webhooks on pod CREATE still run.
"""

from __future__ import annotations

import base64
import datetime as dt
import ipaddress
import json
import secrets
import ssl
import urllib.request
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from pkg_testbed.binaries import ensure
from pkg_testbed.procs import ServerProcess, free_port, wait_until

__all__ = ["KubeControlPlane", "write_ca_and_cert"]


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey) -> None:
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    path.chmod(0o600)


def write_ca_and_cert(folder: Path, common_name: str, sans: list[str]) -> tuple[Path, Path, Path]:
    """A throw-away CA and a serving certificate for ``sans``; returns (ca.crt, tls.crt, tls.key).

    Also used for the operator's admission webhook in tests.
    """
    folder.mkdir(parents=True, exist_ok=True)
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"{common_name}-ca")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=7))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    alt_names: list[x509.GeneralName] = []
    for san in sans:
        try:
            alt_names.append(x509.IPAddress(ipaddress.ip_address(san)))
        except ValueError:
            alt_names.append(x509.DNSName(san))
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=7))
        .add_extension(x509.SubjectAlternativeName(alt_names), critical=False)
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    ca_path, cert_path, key_path = folder / "ca.crt", folder / "tls.crt", folder / "tls.key"
    ca_path.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    _write_key(key_path, key)
    return ca_path, cert_path, key_path


class KubeControlPlane:
    """etcd + kube-apiserver on loopback; ``kubeconfig`` is ready once ``start()`` returns."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.etcd_bin = ensure("etcd")
        self.apiserver_bin = ensure("kube-apiserver")
        self.kubectl_bin = ensure("kubectl")
        self.etcd_port = free_port()
        self.etcd_peer_port = free_port()
        self.port = free_port()
        self.token = secrets.token_hex(16)
        self.kubeconfig = workdir / "kubeconfig"
        self._etcd: ServerProcess | None = None
        self._apiserver: ServerProcess | None = None

    @property
    def server(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._start_etcd()
        self._start_apiserver()
        self._write_kubeconfig()

    def _start_etcd(self) -> None:
        data = self.workdir / "etcd"
        self._etcd = ServerProcess(
            "etcd",
            [
                str(self.etcd_bin),
                "--data-dir",
                str(data),
                "--name",
                "testbed",
                "--listen-client-urls",
                f"http://127.0.0.1:{self.etcd_port}",
                "--advertise-client-urls",
                f"http://127.0.0.1:{self.etcd_port}",
                "--listen-peer-urls",
                f"http://127.0.0.1:{self.etcd_peer_port}",
                "--initial-advertise-peer-urls",
                f"http://127.0.0.1:{self.etcd_peer_port}",
                "--initial-cluster",
                f"testbed=http://127.0.0.1:{self.etcd_peer_port}",
                "--unsafe-no-fsync",
                "--log-level",
                "warn",
            ],
            self.workdir / "etcd.log",
        )
        self._etcd.start()

        def healthy() -> bool:
            with urllib.request.urlopen(
                f"http://127.0.0.1:{self.etcd_port}/health", timeout=1
            ) as r:
                return bool(json.loads(r.read()).get("health") == "true")

        wait_until(healthy, timeout=30, what="etcd", proc=self._etcd)

    def _start_apiserver(self) -> None:
        certs = self.workdir / "pki"
        self.ca_path, cert, key = write_ca_and_cert(
            certs, "kube-apiserver", ["127.0.0.1", "localhost", "10.0.0.1"]
        )
        sa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        sa_path = certs / "sa.key"
        _write_key(sa_path, sa_key)
        sa_pub = certs / "sa.pub"
        sa_pub.write_bytes(
            sa_key.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        )
        tokens = certs / "tokens.csv"
        tokens.write_text(f'{self.token},admin,admin,"system:masters"\n')
        tokens.chmod(0o600)
        self._apiserver = ServerProcess(
            "kube-apiserver",
            [
                str(self.apiserver_bin),
                f"--etcd-servers=http://127.0.0.1:{self.etcd_port}",
                f"--cert-dir={certs}",
                f"--tls-cert-file={cert}",
                f"--tls-private-key-file={key}",
                f"--secure-port={self.port}",
                "--bind-address=127.0.0.1",
                "--advertise-address=127.0.0.1",
                "--service-cluster-ip-range=10.0.0.0/24",
                "--authorization-mode=RBAC",
                "--allow-privileged=true",
                "--disable-admission-plugins=ServiceAccount",
                f"--token-auth-file={tokens}",
                f"--client-ca-file={self.ca_path}",
                "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
                f"--service-account-key-file={sa_pub}",
                f"--service-account-signing-key-file={sa_path}",
                "--enable-priority-and-fairness=false",
                "--v=1",
            ],
            self.workdir / "kube-apiserver.log",
        )
        self._apiserver.start()
        # The first start of an API server on a fresh etcd bootstraps RBAC roles and
        # the default namespaces; on a shared 2-core machine that can take a while.
        wait_until(self._ready, timeout=120, what="kube-apiserver", proc=self._apiserver)

    def _ready(self) -> bool:
        context = ssl.create_default_context(cafile=str(self.ca_path))
        request = urllib.request.Request(
            f"{self.server}/readyz", headers={"Authorization": f"Bearer {self.token}"}
        )
        with urllib.request.urlopen(request, timeout=2, context=context) as response:
            return bool(response.status == 200)

    def stop_apiserver(self) -> None:
        """Stop kube-apiserver only; etcd (the cluster's state) keeps running."""
        if self._apiserver is not None:
            self._apiserver.stop()

    def start_apiserver(self) -> None:
        """Start the stopped kube-apiserver again: same port, certificates and etcd."""
        assert self._apiserver is not None, "start() first"
        self._apiserver.start()
        wait_until(self._ready, timeout=120, what="kube-apiserver", proc=self._apiserver)

    def _write_kubeconfig(self) -> None:
        ca = base64.b64encode(self.ca_path.read_bytes()).decode()
        # JSON is valid YAML, and every kubeconfig reader accepts it.
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "current-context": "testbed",
            "clusters": [
                {
                    "name": "testbed",
                    "cluster": {"server": self.server, "certificate-authority-data": ca},
                }
            ],
            "users": [{"name": "admin", "user": {"token": self.token}}],
            "contexts": [
                {
                    "name": "testbed",
                    "context": {"cluster": "testbed", "user": "admin", "namespace": "default"},
                }
            ],
        }
        self.kubeconfig.write_text(json.dumps(config, indent=2))
        self.kubeconfig.chmod(0o600)

    def stop(self) -> None:
        for proc in (self._apiserver, self._etcd):
            if proc is not None:
                proc.stop()
        self._apiserver = self._etcd = None
