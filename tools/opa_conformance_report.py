"""The conformance runner's report: counts by family, refused builtins, skip reasons, failures.

Split from ``opa_conformance`` (which runs the cases) so that each stays small;
it reads only the outcomes' fields.
"""

from __future__ import annotations

import collections
import re
from collections.abc import Iterator
from typing import Any

__all__ = ["details", "table"]


def table(outcomes: list[Any]) -> str:
    """Counts by family: pass, fail, skipped by builtin, skipped otherwise."""
    rows: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    for o in outcomes:
        kind = "skip_builtin" if o.builtins else o.status
        rows[o.family][kind] += 1
        rows["TOTAL"][kind] += 1
    cols = ["pass", "fail", "skip_builtin", "skip"]
    lines = [f"{'family':28} " + " ".join(f"{c:>12}" for c in cols)]
    for family in sorted(rows, key=lambda f: (f == "TOTAL", f)):
        lines.append(f"{family:28} " + " ".join(f"{rows[family][c]:>12}" for c in cols))
    return "\n".join(lines)


def details(outcomes: list[Any]) -> Iterator[str]:
    """The lines after the table: what was refused, skipped and failed, and why."""
    reasons: collections.Counter[str] = collections.Counter()
    builtins: collections.Counter[str] = collections.Counter()
    for o in outcomes:
        if o.builtins:
            builtins.update(o.builtins)
        elif o.status == "skip":
            reasons[re.sub(r": .*", "", o.reason)] += 1
    if builtins:
        yield "\nrefused builtins (cases needing each):"
        for name, n in builtins.most_common():
            yield f"  {n:5}  {name}"
    if reasons:
        yield "\nother skips, by reason:"
        for reason, n in reasons.most_common():
            yield f"  {n:5}  {reason}"
    fails = [o for o in outcomes if o.status == "fail"]
    if fails:
        yield f"\nfailures ({len(fails)}):"
        for o in fails:
            yield f"  {o.ident}: {o.reason}"
