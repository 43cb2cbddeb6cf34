"""The native engine's memory: compiling returns the memory it only needed while compiling.

A 1,000-rule snapshot's engine holds about 5 MiB (its compiled functions and the
constants they read); compiling it passes through tens of MiB of syntax tree and
bytecode. Measured in a fresh interpreter so that earlier tests' heaps do not count.
"""

from __future__ import annotations

import json
import subprocess
import sys

_PROGRAM = r"""
import gc, json
from evaluator_sidecar.policy.engines.native import NativeRuleEngine
from evaluator_sidecar.policy.model import PKGSnapshotData

def rss_mib():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024

rules = [
    {
        "rule_id": f"rule-{i:04d}",
        "rule_name": f"rule_{i:04d}",
        "priority": i % 20,
        "conditions": [
            {"condition_type": "TAG", "condition_key": f"tag{i % 24}", "operator": "EXISTS"},
            {"condition_type": "SIGNAL", "condition_key": f"x{i % 24}", "operator": ">=",
             "value": (i % 100) / 100},
            {"condition_type": "VALUE", "condition_key": "context.domain", "operator": "=",
             "value": f"domain{i % 7}"},
        ],
        "emissions": [
            {"subtask_type": "notify", "subtask_name": f"r{i}_s{j}", "relationship_type": "EMITS",
             "params": {"level": "high", "rule": i}}
            for j in range(2)
        ],
    }
    for i in range(1000)
]
snapshot = PKGSnapshotData(
    id=0, version="memory@1.0.0", engine="native", wasm_artifact=None, checksum=None,
    rules=rules, subtask_types=[], facts=[],
)
gc.collect()
before = rss_mib()
engine = NativeRuleEngine.from_snapshot(snapshot)
gc.collect()
after = rss_mib()
assert engine.rule_count == 1000
import tracemalloc
tracemalloc.start()
start = tracemalloc.get_traced_memory()[0]
held = NativeRuleEngine.from_snapshot(snapshot)
gc.collect()
held_mib = (tracemalloc.get_traced_memory()[0] - start) / 2**20
print(json.dumps({"grew_mib": after - before, "held_mib": held_mib}))
"""


HELD_LIMIT_MIB = 3.0  # 2.5 measured; 3.7 when it kept them


def test_compiling_1000_rules_leaves_little_more_resident_than_the_engine_holds() -> None:
    done = subprocess.run(
        [sys.executable, "-c", _PROGRAM], capture_output=True, text=True, check=True, timeout=120
    )
    figures = json.loads(done.stdout)
    # Without handing freed memory back this grew by about 30 MiB on glibc.
    assert figures["grew_mib"] < 16, f"compiling left {figures['grew_mib']:.1f} MiB more resident"
    # The engine keeps its compiled function, not the loaded records or the source text.
    assert figures["held_mib"] < HELD_LIMIT_MIB, f"an engine holds {figures['held_mib']:.2f} MiB"
