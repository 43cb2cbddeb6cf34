"""``pkg-operator``: run the operator (kopf, with this project's settings and handlers).

It reads the ``PKG_*`` settings, configures logging, builds the handler registry
and runs kopf cluster-wide (or in ``PKG_NAMESPACES``), with peering so that of
several replicas only one works at a time, and a liveness endpoint.
"""

from __future__ import annotations

import argparse
import logging
import sys

import kopf

from pkg_operator.settings import SettingsError, load_settings

__all__ = ["RECURSION_LIMIT", "main"]

#: The API server stores custom resources nested up to 10,000 levels deep (its JSON
#: decoder's limit), while Python's default recursion limit (1,000) makes the JSON
#: decoding in kopf's watch stream raise: one such object would stop the whole
#: operator, on every restart. With this limit it decodes whatever the API server
#: hands over, and the snapshot handler refuses the object in its status. Decoding
#: 10,000 levels needs far less C stack than the main thread has.
RECURSION_LIMIT = 25_000


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="pkg-operator",
        description="Run the PKG operator. Settings come from PKG_* environment variables "
        "(see `python -c 'import pkg_operator.settings as s; print(s.__doc__)'`).",
    )
    parser.parse_args(argv)
    sys.setrecursionlimit(max(sys.getrecursionlimit(), RECURSION_LIMIT))
    try:
        settings = load_settings()
    except SettingsError as exc:
        print(f"pkg-operator: {exc}", file=sys.stderr)
        return 2

    kopf.configure(
        verbose=settings.log_level == "DEBUG",
        log_format=kopf.LogFormat.JSON if settings.log_format == "json" else kopf.LogFormat.FULL,
    )
    logging.getLogger().setLevel(settings.log_level)
    if settings.log_level != "DEBUG":
        # kopf reports every successful timer run at INFO: one line per deployment per tick.
        logging.getLogger("kopf.objects").setLevel(logging.WARNING)

    # Imported late: the handlers import the evaluator, the database and Redis clients,
    # which a settings error should not have to load.
    from pkg_operator.handlers import build_registry  # noqa: PLC0415

    namespaces = settings.namespace_list
    kopf.run(
        registry=build_registry(settings),
        clusterwide=not namespaces,
        namespaces=namespaces,
        standalone=settings.standalone,
        priority=settings.peering_priority,
        peering_name=settings.peering_name,
        liveness_endpoint=settings.liveness_endpoint,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
