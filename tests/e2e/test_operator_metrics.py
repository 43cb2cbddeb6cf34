"""The operator's ``/metrics``, scraped over HTTP while it stores, promotes and rolls out.

A real ``pkg-operator`` process, two real sidecars and the test bed: after a snapshot
is stored and promoted, a canary paused at 50 % and then promoted in full, the
endpoint shows each family with the values those steps imply.
"""

from __future__ import annotations

import json
import urllib.request
import uuid
from collections.abc import Callable, Iterator

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from pkg_testbed.cluster import Cluster, condition, snapshot_doc, wait_for
from pkg_testbed.product import OperatorProcess, SidecarProcess

pytestmark = pytest.mark.e2e

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(port: int) -> Samples:
    url = f"http://127.0.0.1:{port}/metrics"
    with urllib.request.urlopen(url, timeout=5) as response:
        assert response.headers["Content-Type"].startswith("text/plain")
        text = response.read().decode()
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: Samples, metric: str, /, **labels: str) -> float:
    return samples.get((metric, frozenset(labels.items())), 0.0)


def annotate(cluster: Cluster, namespace: str, kind: str, name: str, action: str) -> None:
    body = json.dumps({"action": action, "token": uuid.uuid4().hex[:12], "actor": "metrics-e2e"})
    cluster.kubectl(
        "annotate", kind, name, "-n", namespace, "--overwrite", f"pkg.seedcore.io/action={body}"
    )


@pytest.fixture
def sidecars(cluster: Cluster, namespace: str) -> Iterator[list[SidecarProcess]]:
    procs = []
    for i in range(2):
        proc = SidecarProcess(
            cluster.workdir / f"metrics-{namespace}",
            {
                "PKG_DATABASE_URL": cluster.database_url,
                "PKG_REDIS_URL": cluster.redis_url,
                "PKG_ENV": "dev",
                "PKG_TARGET": f"gauge-{namespace}",
                "PKG_REGION": "eu-west",
                "PKG_HEARTBEAT_INTERVAL_SECONDS": "1",
                "PKG_RESYNC_INTERVAL_SECONDS": "2",
                "PKG_LOG_LEVEL": "WARNING",
            },
            device_id=f"gauge-{namespace}:{i}",
        )
        proc.proc.start()
        procs.append(proc)
    for proc in procs:
        proc.start_wait()
    yield procs
    for proc in procs:
        proc.stop()


def test_the_operator_serves_its_metrics_over_http(
    cluster: Cluster,
    namespace: str,
    start_operator: Callable[..., OperatorProcess],
    sidecars: list[SidecarProcess],
) -> None:
    operator = start_operator()
    port = operator.metrics_port
    target = f"gauge-{namespace}"
    v1, v2 = f"metrics@1.0.0-{namespace}", f"metrics@2.0.0-{namespace}"
    for name, version, auto in (("v1", v1, True), ("v2", v2, False)):
        cluster.kubectl(
            "apply", "--server-side", "-n", namespace, "-f", "-",
            stdin=snapshot_doc(name, version, env="dev", auto=auto),
        )  # fmt: skip
    wait_for(
        lambda: condition(cluster.get("psnap", "v1", namespace), "Active").get("status") == "True",
        what="v1 stored and promoted",
    )
    wait_for(
        lambda: condition(cluster.get("psnap", "v2", namespace), "Ready").get("status") == "True",
        what="v2 stored",
    )
    after_store = scrape(port)
    assert (
        value(after_store, "pkg_operator_promotions_total", resource="snapshot", outcome="ok") >= 1
    )
    assert (
        value(after_store, "pkg_operator_reconciles_total", kind="PolicySnapshot", outcome="ok")
        >= 2
    )
    duration_count = value(
        after_store, "pkg_operator_reconcile_duration_seconds_count",
        kind="PolicySnapshot", outcome="ok",
    )  # fmt: skip
    assert duration_count >= 2
    duration_sum = value(
        after_store, "pkg_operator_reconcile_duration_seconds_sum",
        kind="PolicySnapshot", outcome="ok",
    )  # fmt: skip
    assert 0 < duration_sum / duration_count < 10

    # Only the active snapshot can be rolled back: a refusal.
    annotate(cluster, namespace, "psnap", "v2", "rollback")
    wait_for(
        lambda: (cluster.get("psnap", "v2", namespace).get("status") or {}).get("lastAction"),
        what="v2's refusal recorded",
    )

    deployment = {
        "apiVersion": "pkg.seedcore.io/v1alpha1",
        "kind": "PolicyDeployment",
        "metadata": {"name": "gauged"},
        "spec": {
            "snapshotRef": {"name": "v2"},
            "env": "dev",
            "target": target,
            "region": "eu-west",
            "strategy": {"canary": {"steps": [{"setWeight": 50}, {"pause": {}}]}},
            "progressDeadlineSeconds": 90,
            "coverage": {"minPercent": 100, "heartbeatTTLSeconds": 5, "minDevices": 2},
        },
    }
    cluster.apply(namespace, yaml.safe_dump(deployment))
    wait_for(
        lambda: (
            (cluster.get("pdep", "gauged", namespace).get("status") or {}).get("summary")
            == "Paused"
        ),
        timeout=90,
        what="the canary paused at 50%",
    )
    labels = {"namespace": namespace, "name": "gauged"}
    paused = wait_for(
        lambda: (
            (s := scrape(port))
            and value(s, "pkg_operator_rollout_weight_percent", **labels) == 50
            and s
        ),
        what="the weight gauge at 50",
    )
    assert value(paused, "pkg_operator_rollout_step", **labels) == 1  # the pause
    assert value(paused, "pkg_operator_rollout_steps", **labels) == 2
    assert value(paused, "pkg_operator_rollout_coverage_ratio", **labels) == 1.0
    assert value(paused, "pkg_operator_rollout_error_ratio", **labels) == 0  # no traffic
    assert ("pkg_operator_rollout_p99_seconds", frozenset(labels.items())) in paused
    # An indefinite pause waits for a person: nothing is due, so no deadline to miss.
    assert value(paused, "pkg_operator_rollout_deadline_timestamp_seconds", **labels) == 0
    assert (
        value(
            paused, "pkg_operator_actions_refused_total", kind="PolicySnapshot", action="rollback"
        )
        == 1
    )
    batches = value(paused, "pkg_operator_heartbeat_batch_size_count")
    assert batches >= 1
    assert value(paused, "pkg_operator_heartbeat_batch_size_sum") >= batches
    assert 0 <= value(paused, "pkg_operator_heartbeat_fold_lag_seconds") < 30
    assert value(paused, "pkg_operator_audit_rows_written_total", event="deployment.step") >= 1

    annotate(cluster, namespace, "pdep", "gauged", "promote-full")
    wait_for(
        lambda: (
            (cluster.get("pdep", "gauged", namespace).get("status") or {}).get("summary")
            == "Succeeded"
        ),
        timeout=90,
        what="the rollout complete",
    )
    done = wait_for(
        lambda: (
            (s := scrape(port))
            and value(s, "pkg_operator_rollout_weight_percent", **labels) in (0, 100)
            and value(s, "pkg_operator_promotions_total", resource="deployment", outcome="ok") >= 1
            and s
        ),
        what="the deployment's promotion counted",
    )
    assert value(done, "pkg_operator_reconciles_total", kind="PolicyDeployment", outcome="ok") > 1
    assert value(done, "pkg_operator_audit_rows_written_total", event="deployment.promote") >= 1
    assert value(done, "pkg_operator_redis_errors_total", where="heartbeats") == 0
    assert value(done, "process_resident_memory_bytes") > 0
    assert value(done, "pkg_operator_rollout_deadline_timestamp_seconds", **labels) == 0

    cluster.kubectl("delete", "pdep", "gauged", "-n", namespace)
    wait_for(
        lambda: (
            not {
                ("pkg_operator_rollout_step", frozenset(labels.items())),
                ("pkg_operator_rollout_deadline_timestamp_seconds", frozenset(labels.items())),
            }
            & scrape(port).keys()
        ),
        what="the deleted deployment's gauges dropped",
    )
