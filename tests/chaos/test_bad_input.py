"""Bad input, counted: hundreds of malformed manifests, each refused or reported, none Ready.

The corpus (pkg_testbed.chaos.corpus: mutations of valid PolicySnapshots and
PolicyDeployments plus hand-written edge cases) is applied with ``kubectl apply
--server-side`` in batches of many documents against the real API server, with one
operator running. Each case must end as its class says: refused by the API server with
a message naming what is wrong, or stored and reported by the operator in a condition
(``Ready`` False for a snapshot, ``Progressing`` False for a deployment) with the
expected CamelCase reason and a message. None may become Ready, the operator must not
exit or log a traceback, and a valid snapshot applied after the whole corpus must still
become Ready within a bound (measured and recorded: the operator is not stalled).
"""

from __future__ import annotations

import json
import re
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from pkg_testbed.chaos import corpus as corpus_mod
from pkg_testbed.chaos.corpus import REFUSED, STATUS, Case
from pkg_testbed.chaos.records import ScenarioRecord, record
from pkg_testbed.cluster import Cluster, wait_for
from pkg_testbed.product import OperatorProcess

pytestmark = pytest.mark.chaos

#: Documents per ``kubectl apply``: many, so that the corpus applies in seconds.
BATCH = 60
#: How long the operator may take to report every accepted case, and the valid snapshot
#: applied after them to become Ready.
REPORT_TIMEOUT_S = 120.0
READY_BOUND_S = 30.0
CAMEL = re.compile(r"^[A-Z][a-z0-9]+(?:[A-Z][a-z0-9]*)*$")
#: What a 5xx from the API server looks like in kubectl's output.
SERVER_ERROR = re.compile(r"InternalError|Internal error occurred|\(500\)|ServiceUnavailable")
CONDITIONS_PATH = (
    '{range .items[*]}{.kind}{"\\t"}{.metadata.name}{"\\t"}{.status.conditions}{"\\n"}{end}'
)


@dataclass
class Tally:
    refused: int = 0
    reported: int = 0
    failures: list[str] = field(default_factory=list)
    failed_cases: set[str] = field(default_factory=set)
    reasons: Counter[str] = field(default_factory=Counter)

    def fail(self, case: Case, problem: str) -> None:
        self.failed_cases.add(case.name)
        self.failures.append(f"{case.name} ({case.category}: {case.what}): {problem}")


def apply_batch(cluster: Cluster, namespace: str, folder: Path) -> str:
    """``kubectl apply --server-side -f FOLDER``; kubectl's error output (it goes on past
    refused documents and applies the rest)."""
    result = cluster.kubectl_result(
        "apply", "--server-side", "--field-manager=chaos", "-n", namespace, "-f", str(folder)
    )
    return str(result.stderr)


def refusal_message(errors: list[str], namespace: str, name: str) -> str | None:
    for chunk in errors:
        if f"{namespace}/{name};" in chunk or f'"{name}"' in chunk:
            return chunk.strip()
    return None


def reported(cluster: Cluster, namespace: str) -> dict[tuple[str, str], list[dict[str, Any]]]:
    """Every object's conditions, read through jsonpath: some objects of the corpus are
    nested too deep for this process's JSON decoder."""
    text = cluster.kubectl(
        "get", "psnap,pdep", "-n", namespace, "-o", f"jsonpath={CONDITIONS_PATH}"
    )
    out: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for line in text.splitlines():
        kind, name, conditions = [*line.split("\t", 2), ""][:3]
        out[(kind, name)] = json.loads(conditions) if conditions.strip() else []
    return out


def verdict(case: Case, conditions: list[dict[str, Any]]) -> str | None:
    """None when ``case`` is reported as it must be, else what is wrong; "" while pending."""
    by_type = {c.get("type"): c for c in conditions}
    if by_type.get("Ready", {}).get("status") == "True":
        return "became Ready=True"
    kind = "Ready" if case.kind == "PolicySnapshot" else "Progressing"
    shown = by_type.get(kind) or {}
    if shown.get("status") != "False":
        return ""
    reason, message = shown.get("reason") or "", shown.get("message") or ""
    if reason != case.reason:
        return f"{kind} reason {reason!r}, expected {case.reason!r} ({message[:200]})"
    if not CAMEL.match(reason) or len(message.strip()) < 10:
        return f"unclear {kind} condition: reason {reason!r}, message {message!r}"
    return None


def field_key(path: str | None) -> str | None:
    """The last key of a mutated path (``spec.rules.0.priority`` -> ``priority``)."""
    if path is None:
        return None
    return [part for part in path.split(".") if not part.isdigit()][-1]


def apply_prerequisites(cluster: Cluster, namespace: str, corpus: corpus_mod.Corpus) -> None:
    for document in corpus.prerequisites:
        cluster.kubectl(
            "apply", "--server-side", "-n", namespace, "-f", "-", stdin=json.dumps(document)
        )

    def settled() -> bool:
        state = reported(cluster, namespace)
        owner = {c["type"]: c for c in state.get(("PolicySnapshot", "dup-owner"), [])}
        other = {c["type"]: c for c in state.get(("PolicySnapshot", "not-ready"), [])}
        return (
            owner.get("Ready", {}).get("status") == "True"
            and other.get("Ready", {}).get("status") == "False"
        )

    wait_for(settled, timeout=60, what="the corpus's owner snapshot Ready, not-ready refused")


def check_refusals(
    cluster: Cluster, namespace: str, cases: list[Case], stderr: str, tally: Tally
) -> None:
    errors = [c for c in re.split(r"(?=Error from server|error: )", stderr) if c.strip()]
    existing = set(reported(cluster, namespace))
    for case in cases:
        stored = (case.kind, case.name) in existing
        if case.expect == STATUS:
            if not stored:
                message = refusal_message(errors, namespace, case.name)
                tally.fail(case, f"refused by the API server, expected a status: {message}")
            continue
        if stored:
            tally.fail(case, "accepted by the API server, expected a refusal")
            continue
        message = refusal_message(errors, namespace, case.name)
        if message is None:
            # An error that names no object (a request over the size limit): apply it
            # alone to read its own message.
            result = cluster.kubectl_result(
                "apply", "--server-side", "-n", namespace, "-f", "-", stdin=case.manifest()
            )
            message = str(result.stderr).strip()
        named = field_key(case.field)
        if SERVER_ERROR.search(message):
            tally.fail(case, f"a server error (5xx): {message[:300]}")
        elif len(message) < 20:
            tally.fail(case, f"refused without a clear message: {message!r}")
        elif named is not None and named not in message:
            tally.fail(case, f"the refusal does not name {named!r}: {message[:300]}")
        else:
            tally.refused += 1


def wait_reports(cluster: Cluster, namespace: str, cases: list[Case], tally: Tally) -> None:
    pending = {c.name: c for c in cases if c.expect == STATUS}
    deadline = time.monotonic() + REPORT_TIMEOUT_S
    last: dict[str, str] = {}
    while pending and time.monotonic() < deadline:
        state = reported(cluster, namespace)
        for name, case in list(pending.items()):
            found = verdict(case, state.get((case.kind, name), []))
            if found is None:
                tally.reported += 1
                tally.reasons[str(case.reason)] += 1
                del pending[name]
            elif found:
                tally.fail(case, found)
                del pending[name]
            else:
                last[name] = json.dumps(state.get((case.kind, name), []))[:300]
        time.sleep(0.5)
    for name, case in pending.items():
        tally.fail(case, f"not reported within {REPORT_TIMEOUT_S:g} s: {last.get(name)}")


def ready_after_corpus(cluster: Cluster, namespace: str) -> float:
    """Seconds for a valid snapshot, applied after the whole corpus, to become Ready."""
    version = f"after-corpus@1.0.0-{namespace}"
    document = corpus_mod.base_native("after-corpus", version)
    started = time.monotonic()
    cluster.kubectl(
        "apply", "--server-side", "-n", namespace, "-f", "-", stdin=json.dumps(document)
    )

    def ready() -> bool:
        state = reported(cluster, namespace).get(("PolicySnapshot", "after-corpus"), [])
        return any(c.get("type") == "Ready" and c.get("status") == "True" for c in state)

    wait_for(ready, timeout=READY_BOUND_S, what="a valid snapshot Ready after the corpus")
    return time.monotonic() - started


def clean_up(cluster: Cluster, namespace: str) -> None:
    """Delete what the corpus stored, while the operator still runs its finalizers, so that
    operators of later tests (they watch every namespace) do not inherit the corpus."""
    cluster.kubectl("delete", "psnap,pdep", "--all", "-n", namespace, "--wait=false")
    wait_for(
        lambda: not cluster.kubectl("get", "psnap,pdep", "-n", namespace, "-o", "name").strip(),
        timeout=90,
        what="the corpus's objects deleted",
    )


def run_corpus(
    cluster: Cluster,
    namespace: str,
    *,
    operator: OperatorProcess,
    cases: list[Case],
    corpus: corpus_mod.Corpus,
    workdir: Path,
    scenario: str,
) -> Tally:
    tally = Tally()
    ready_s: float | None = None
    started = time.monotonic()
    try:
        apply_prerequisites(cluster, namespace, corpus)
        stderr = ""
        for i in range(0, len(cases), BATCH):
            folder = workdir / f"batch-{i // BATCH:02d}"
            list(corpus_mod.write_batch(cases[i : i + BATCH], folder))
            stderr += apply_batch(cluster, namespace, folder)
        check_refusals(cluster, namespace, cases, stderr, tally)
        wait_reports(cluster, namespace, cases, tally)
        if not operator.proc.running:
            tally.failures.append("the operator exited")
        ready_s = ready_after_corpus(cluster, namespace)
        # The whole log, not its tail: a handler failing on one object logs a traceback
        # per retry, and the corpus's own warnings would push it out of the tail.
        log = operator.proc.log_path.read_text(encoding="utf-8", errors="replace")
        for sign in ("Traceback", "RecursionError", "CRITICAL", "Throttling"):
            if sign in log:
                line = next(ln for ln in log.splitlines() if sign in ln)
                tally.failures.append(f"the operator's log holds {sign!r}: {line[:300]}")
        if not operator.proc.running:
            tally.failures.append("the operator exited")
        clean_up(cluster, namespace)
    finally:
        kinds = Counter(c.expect for c in cases)
        record(
            ScenarioRecord(
                scenario=scenario,
                group="input",
                faults=len(cases),
                passes=len(cases) - len(tally.failed_cases),
                converge_s=None if ready_s is None else round(ready_s, 2),
                failures=tally.failures,
                notes=(
                    f"{len(cases)} malformed manifests applied in batches of {BATCH}; a valid "
                    "snapshot applied after them became Ready in converge_s seconds"
                ),
                extra={
                    "cases": len(cases),
                    "refused_by_api": tally.refused,
                    "reported_in_status": tally.reported,
                    "expected_refused": kinds[REFUSED],
                    "expected_status": kinds[STATUS],
                    "bad_outcomes": len(tally.failures),
                    "reasons": dict(tally.reasons),
                    "categories": dict(Counter(c.category for c in cases)),
                    "seconds": round(time.monotonic() - started, 1),
                },
            )
        )
    print(
        f"\n{scenario}: {len(cases)} cases, {tally.refused} refused by the API server, "
        f"{tally.reported} reported in status, {len(tally.failures)} bad outcomes; a valid "
        f"snapshot Ready {ready_s or 0:.2f} s after the corpus"
    )
    return tally


@pytest.mark.chaos_quick
def test_a_slice_of_the_malformed_corpus_is_refused_or_reported_and_the_operator_keeps_up(
    cluster: Cluster,
    namespace: str,
    start_operator: Callable[..., OperatorProcess],
    tmp_path: Path,
) -> None:
    corpus = corpus_mod.build(namespace)
    cases = corpus.sample(per_category=2)
    operator = start_operator()
    tally = run_corpus(
        cluster,
        namespace,
        operator=operator,
        cases=cases,
        corpus=corpus,
        workdir=tmp_path,
        scenario="input/bad-manifests-slice",
    )
    assert tally.failures == []
    assert tally.refused + tally.reported == len(cases)


def test_every_malformed_manifest_is_refused_or_reported_and_none_becomes_ready(
    cluster: Cluster,
    namespace: str,
    start_operator: Callable[..., OperatorProcess],
    tmp_path: Path,
) -> None:
    corpus = corpus_mod.build(namespace)
    assert len(corpus.cases) >= 200
    operator = start_operator()
    tally = run_corpus(
        cluster,
        namespace,
        operator=operator,
        cases=corpus.cases,
        corpus=corpus,
        workdir=tmp_path,
        scenario="input/bad-manifests",
    )
    assert tally.failures == []
    assert tally.refused + tally.reported == len(corpus.cases)
