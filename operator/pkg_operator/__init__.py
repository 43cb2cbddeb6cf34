"""The PKG operator: kopf handlers that reconcile PolicySnapshot and PolicyDeployment.

It owns the control plane: validating, storing, testing and promoting snapshots,
driving canary rollouts, folding sidecar heartbeats into coverage, writing audit
rows to PostgreSQL and signalling sidecars through Redis. It imports the
evaluator library (`evaluator_sidecar`) to test snapshots with the very engine
the sidecars run; the evaluator never imports the operator.

The folder is `operator/` but the package is `pkg_operator`: a package named
`operator` would shadow Python's standard library module.
"""

__all__: list[str] = []
