"""The one place a ``redis.asyncio.Redis`` client is built, for the sidecar and the operator.

:func:`connect_redis` takes the URL (``redis://``, ``rediss://`` for TLS, ``unix://``)
and, optionally, Sentinel addresses and TLS files, and returns a client whose
connections follow the master that Sentinel names. With sentinels, the URL's host and
port are ignored; its user name, password, database number and scheme still apply
(``rediss://`` makes both the sentinels' and the master's connections TLS).

Why Sentinel needs nothing more from callers: a ``SentinelConnectionPool`` asks the
sentinels for the master on every new connection and drops a connection that gets
``READONLY`` (a demoted master). Sentinel itself kills clients of instances it
reconfigures, so a pub/sub connection breaks at a failover, and the sidecar's
listener reconnects, now to the new master, and re-reads the levels.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.connection import SSLConnection, UnixDomainSocketConnection, parse_url
from redis.asyncio.sentinel import Sentinel

__all__ = ["connect_redis"]


def _tls_options(ca_file: str, cert_file: str, key_file: str) -> dict[str, Any]:
    options: dict[str, Any] = {}
    if ca_file:
        options["ssl_ca_certs"] = ca_file
    if cert_file:
        options["ssl_certfile"] = cert_file
    if key_file:
        options["ssl_keyfile"] = key_file
    return options


def connect_redis(
    url: str,
    *,
    sentinels: Sequence[tuple[str, int]] = (),
    master_name: str = "mymaster",
    sentinel_password: str = "",
    tls_ca_file: str = "",
    tls_cert_file: str = "",
    tls_key_file: str = "",
    **client_options: Any,
) -> Redis:
    """A client for ``url``, or for Sentinel's current master of ``master_name``.

    ``client_options`` (timeouts, keepalive, health checks) go to every data
    connection. Connecting is lazy: the first command connects (and fails) as usual.
    """
    tls = _tls_options(tls_ca_file, tls_cert_file, tls_key_file)
    if not sentinels:
        if tls and not url.startswith("rediss://"):
            raise ValueError("TLS files are set but PKG_REDIS_URL is not rediss://")
        return Redis.from_url(url, **tls, **client_options)
    parsed = parse_url(url)
    connection_class = parsed.pop("connection_class", None)
    if connection_class is UnixDomainSocketConnection:
        raise ValueError("Sentinel needs a redis:// or rediss:// URL, not unix://")
    use_tls = connection_class is SSLConnection
    if tls and not use_tls:
        raise ValueError("TLS files are set but PKG_REDIS_URL is not rediss://")
    parsed.pop("host", None)
    parsed.pop("port", None)
    data_options: dict[str, Any] = {**parsed, **client_options}
    sentinel_options: dict[str, Any] = {
        k: v for k, v in client_options.items() if k.startswith("socket_")
    }
    if sentinel_password:
        sentinel_options["password"] = sentinel_password
    if use_tls:
        data_options.update(ssl=True, **tls)
        sentinel_options.update(ssl=True, **tls)
    manager = Sentinel(list(sentinels), sentinel_kwargs=sentinel_options)
    client: Redis = manager.master_for(master_name, **data_options)
    return client
