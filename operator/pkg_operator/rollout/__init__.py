"""The PolicyDeployment rollout: a pure state machine, and the timer's I/O around it.

Pure (no kopf, kubernetes, asyncpg or redis, no clock): model, spec, state,
render, coverage, machine, steps, rollback, requests, judge, intents, tick.
I/O: observe, effects, reconcile. The states and the design are described in
docs/rollout-state-machine.md.
"""
