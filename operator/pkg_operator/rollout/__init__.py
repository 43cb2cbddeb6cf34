"""The PolicyDeployment rollout: a pure state machine and the I/O around it.

The design is described in docs/rollout-state-machine.md.
"""
