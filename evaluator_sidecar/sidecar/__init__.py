"""The sidecar layer: the runtime of one evaluator sidecar (``pkg-sidecar``).

It owns the hot-swap manager (``manager``: ``PKGManager``, a facade over the last
evaluators and the atomic swap in ``evaluators``, desired-state tracking in ``desired``,
fetching and compiling snapshots in ``snapshots``, swapping them in ``activation``,
converging on the desired state in ``converge`` and the Redis listener in ``listener``;
the process-wide manager in ``process``), heartbeats (``heartbeat``), the disk cache of
the last good snapshots (``cache``), the HTTP API (``http``), Prometheus metrics
(``metrics``), logging (``logs``), its settings (``settings``) and the entry point
(``__main__``).

It may import every layer below it: ``evaluator_sidecar.store`` (PostgreSQL reads),
``evaluator_sidecar.signals`` (the Redis protocol), ``evaluator_sidecar.policy`` and
``evaluator_sidecar.settings``; never the operator (``pkg_operator``), and nothing
below imports it (import-linter contracts hold this).
"""
