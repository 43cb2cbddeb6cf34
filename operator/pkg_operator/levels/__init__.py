"""The desired-level reconciler: Redis follows PostgreSQL, always.

PostgreSQL says what every level in Redis must be: an environment's level names
its active snapshot, a rollout's level what its PolicyDeployment's status says
is published (the rollout state machine owns that status). The reconciler reads
both sides, decides which levels are missing or different (``decide``, pure),
and rewrites those with a new epoch from PostgreSQL, an audit row
``desired.repaired``, a Kubernetes event on the owning resource, a log line and
the counter ``pkg_operator_desired_repairs_total`` (``effects``). ``loop`` runs
it at start, every ``PKG_LEVEL_RESYNC_SECONDS`` and at once after a NOTIFY
``pkg_promotions``, only on the replica that works (see ``loop``).
"""
