"""The webhook's certificate kept current: in its Secret, in the ``caBundle``, in the server.

Every replica runs :func:`keep_current`: it reads the Secret, lets
:func:`pkg_operator.inject.certs.plan` decide what it must hold, writes it when that
differs (a write conditional on the version read, so that when two replicas renew at
once one wins and the other takes the winner's), sets the ``caBundle`` of the webhook
configuration, and hands the serving certificate to the HTTPS server. It repeats every
``PKG_WEBHOOK_CERT_CHECK_SECONDS``; a replica therefore serves a certificate the others
renewed within one check, well inside ``renew_before``.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import os
import ssl
import tempfile
from collections.abc import Callable

from pkg_operator import kube
from pkg_operator.inject import certs
from pkg_operator.metrics import CERT_EXPIRY
from pkg_operator.settings import OperatorSettings

__all__ = ["CERT_EXPIRY", "ServingCert", "keep_current", "sync_once"]

log = logging.getLogger(__name__)


class ServingCert:
    """The HTTPS server's SSL context; new handshakes use a certificate loaded later."""

    def __init__(self) -> None:
        self.context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.context.minimum_version = ssl.TLSVersion.TLSv1_2
        self.loaded: bytes | None = None

    def load(self, cert_pem: bytes, key_pem: bytes) -> bool:
        """Serve this certificate from now on; False when it is the one already served."""
        if cert_pem == self.loaded:
            return False
        # ssl loads certificates from files only: hand it an anonymous in-memory file
        # (memfd), which needs no writable file system, else a private temporary file.
        try:
            fd = os.memfd_create("pkg-webhook-tls", 0)
        except (AttributeError, OSError):
            with tempfile.NamedTemporaryFile(suffix=".pem") as handle:
                handle.write(cert_pem + b"\n" + key_pem)
                handle.flush()
                self.context.load_cert_chain(handle.name)
        else:
            try:
                os.write(fd, cert_pem + b"\n" + key_pem)
                self.context.load_cert_chain(f"/proc/self/fd/{fd}")
            finally:
                os.close(fd)
        self.loaded = cert_pem
        return True


def _lifetimes(settings: OperatorSettings) -> certs.Lifetimes:
    return certs.Lifetimes(
        cert=dt.timedelta(seconds=settings.webhook_cert_validity_seconds),
        renew_before=dt.timedelta(seconds=settings.webhook_cert_renew_before_seconds),
        ca=dt.timedelta(seconds=settings.webhook_ca_validity_seconds),
    )


async def sync_once(
    settings: OperatorSettings,
    serving: ServingCert,
    now: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
) -> certs.CertPlan:
    """One check: Secret, caBundle, served certificate. Returns what the Secret holds."""
    namespace, name = settings.webhook_secret_ref
    for _attempt in range(5):
        found = await kube.read_secret(namespace, name)
        decided = certs.plan(
            found.data if found else None,
            settings.webhook_dns_name_list,
            now(),
            _lifetimes(settings),
        )
        if not decided.changed:
            break
        try:
            await kube.write_secret(
                namespace, name, decided.data, found.resource_version if found else None
            )
        except kube.Conflict:
            log.info(
                "webhook Secret %s/%s was written by another replica; reading it again",
                namespace,
                name,
            )
            continue
        log.info(
            "webhook certificate renewed in Secret %s/%s: %s (expires %s)",
            namespace,
            name,
            decided.reason,
            decided.not_after.isoformat(),
        )
        break
    else:
        raise kube.KubeError(f"Secret {namespace}/{name} kept changing under five attempts")
    if settings.webhook_configuration:
        changed = await kube.ensure_ca_bundle(
            settings.webhook_configuration, decided.data[certs.BUNDLE]
        )
        if changed is None:
            log.warning(
                "MutatingWebhookConfiguration %s does not exist: the API server cannot call the "
                "webhook until it is created (the chart creates it); checking again in %g s",
                settings.webhook_configuration,
                settings.webhook_cert_check_seconds,
            )
        elif changed:
            log.info(
                "caBundle of %d webhook(s) in %s updated", changed, settings.webhook_configuration
            )
    if serving.load(decided.data[certs.TLS_CERT], decided.data[certs.TLS_KEY]):
        log.info("webhook serves the certificate expiring %s", decided.not_after.isoformat())
    CERT_EXPIRY.set(decided.not_after.timestamp())
    return decided


async def keep_current(settings: OperatorSettings, serving: ServingCert) -> None:
    """Check every PKG_WEBHOOK_CERT_CHECK_SECONDS until cancelled; failures are logged and
    retried (the certificate in use stays valid for ``renew_before`` at least)."""
    while True:
        await asyncio.sleep(settings.webhook_cert_check_seconds)
        try:
            await sync_once(settings, serving)
        except Exception:
            log.exception(
                "checking the webhook certificate failed; retrying in %g s",
                settings.webhook_cert_check_seconds,
            )
