"""A PolicySnapshot's reconciliation, in three parts.

- :mod:`.decide`: pure decisions (which pending action applies, what a refusal says,
  the records written into status);
- :mod:`.status`: the status subresource rendered from what reconciliation found (pure);
- :mod:`.effects`: the I/O steps, each idempotent (load and compile, store, validate
  once, promote, roll back, refresh another snapshot's ``Active`` condition);
- :mod:`.reconcile`: the handlers' bodies, reading the object, calling the decisions
  and applying their effects.
"""
