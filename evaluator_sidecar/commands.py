"""The ``pkg`` console script: the offline commands of :mod:`evaluator_sidecar.cli`, and
``pkg serve`` from the sidecar's standalone mode (:mod:`evaluator_sidecar.sidecar.standalone`).

It sits outside the import layers (like ``evaluator_sidecar.__main__``): the offline CLI
and the sidecar's runtime never import each other, and this module joins them.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from evaluator_sidecar import cli

__all__ = ["main"]


def _serve(args: argparse.Namespace) -> int:
    # Imported here: the offline commands start without the server's libraries.
    from evaluator_sidecar.sidecar.standalone import serve  # noqa: PLC0415

    return serve(args)


def main(argv: Sequence[str] | None = None) -> int:
    """``pkg ...``: returns the exit code."""
    return cli.main(argv, serve=_serve)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
