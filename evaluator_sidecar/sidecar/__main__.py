"""``pkg-sidecar`` (also ``python -m evaluator_sidecar``): run the evaluator sidecar.

Configured only by ``PKG_`` environment variables (see
:mod:`evaluator_sidecar.sidecar.settings`); a bad one stops the start with one
paragraph naming it. The HTTP API starts first (``/healthz`` answers at
once, ``/readyz`` and ``/v1/evaluate`` answer 503 until a snapshot is
loaded), then the manager loads the desired snapshot and starts listening,
resyncing and beating. SIGTERM or SIGINT stop it cleanly. With
``PKG_SNAPSHOT_FILE`` it serves that file instead, with no PostgreSQL or Redis
(:mod:`evaluator_sidecar.sidecar.standalone`, the same as ``pkg serve FILE``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys
from collections.abc import Sequence

from evaluator_sidecar.settings import SettingsError, load_settings
from evaluator_sidecar.sidecar.logs import configure_logging, log_event
from evaluator_sidecar.sidecar.settings import SidecarSettings

__all__ = ["main", "run"]

logger = logging.getLogger("evaluator_sidecar.sidecar")


async def run(settings: SidecarSettings, *, stop: asyncio.Event | None = None) -> None:
    """Serve until ``stop`` is set (or SIGTERM/SIGINT arrives)."""
    from evaluator_sidecar.sidecar.http import SidecarAPI, serve_api  # noqa: PLC0415
    from evaluator_sidecar.sidecar.manager import PKGManager  # noqa: PLC0415
    from evaluator_sidecar.sidecar.process import (  # noqa: PLC0415
        manager_options,
        set_global_pkg_manager,
    )
    from evaluator_sidecar.signals.connect import connect_redis  # noqa: PLC0415 - fast `--help`
    from evaluator_sidecar.store.client import PKGClient  # noqa: PLC0415

    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)

    client = PKGClient(
        settings.database_url,
        env=settings.env,
        min_size=1,
        max_size=2,
        command_timeout=settings.db_timeout_seconds,
    )
    redis = connect_redis(
        **settings.redis_options(),
        socket_connect_timeout=2,
        socket_keepalive=True,
        health_check_interval=30,
    )
    manager = PKGManager(client, redis, **manager_options(settings))
    api = SidecarAPI(manager)
    server = await serve_api(
        api, settings.http_host, settings.http_port, settings.max_request_bytes
    )
    log_event(
        logger,
        logging.INFO,
        "sidecar_listening",
        host=settings.http_host,
        port=server.port,
        env=settings.env,
        target=settings.target,
        region=settings.region,
        device_id=settings.device_id,
    )
    try:
        await manager.start()
        set_global_pkg_manager(manager)
        await stop.wait()
    finally:
        log_event(logger, logging.INFO, "sidecar_stopping", device_id=settings.device_id)
        set_global_pkg_manager(None)
        await server.close()
        await manager.stop()
        with contextlib.suppress(Exception):
            await redis.aclose()
        with contextlib.suppress(Exception):
            await client.close()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="pkg-sidecar",
        description=(
            "Run the PKG evaluator sidecar. Configure it with PKG_ environment variables; "
            "`python -c 'import evaluator_sidecar.sidecar.settings as s; print(s.__doc__)'` "
            "lists them."
        ),
    )
    parser.parse_args(argv)
    try:
        settings = load_settings(SidecarSettings)
    except SettingsError as exc:
        print(f"pkg-sidecar: {exc}", file=sys.stderr)
        return 2
    configure_logging(settings.log_level, settings.log_format)
    # The standard event loop: uvloop made no measurable difference to the server's CPU
    # per request (BENCHMARKS.md, "Sidecar HTTP API"), so it is not a dependency.
    try:
        if settings.snapshot_file is not None:
            # Standalone: the snapshot file instead of PostgreSQL and Redis.
            from evaluator_sidecar.sidecar.standalone import (  # noqa: PLC0415
                run_standalone,
                standalone_settings,
            )

            asyncio.run(run_standalone(standalone_settings(settings)))
        else:
            asyncio.run(run(settings))
    except KeyboardInterrupt:
        return 130
    except OSError as exc:  # e.g. the HTTP port is taken
        print(f"pkg-sidecar: cannot serve: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
