"""``python -m evaluator_sidecar``: the same as ``pkg-sidecar`` (see evaluator_sidecar.sidecar)."""

import sys

from evaluator_sidecar.sidecar.__main__ import main

if __name__ == "__main__":
    sys.exit(main())
