"""Shared test configuration: the test bed's real servers as session fixtures.

Tiers: tests/unit (pure, no I/O), tests/integration (real PostgreSQL, Redis,
kube-apiserver, opa, helm from the test bed), tests/e2e (the operator and
sidecar processes on the test bed).
"""

pytest_plugins = ["pkg_testbed.pytest_plugin", "pkg_testbed.e2e_plugin"]
