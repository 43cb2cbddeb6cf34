"""``kubectl pkg``: the kubectl plugin people use to follow and steer rollouts.

- :mod:`.view`: pure: which resource a name means, the action annotation's value, the
  outcome the operator recorded for a token, the status tree and the watch lines;
- :mod:`.cli`: the ``kubectl-pkg`` console script (argparse, waiting, printing with
  ``rich``); every Kubernetes call goes through :mod:`pkg_operator.kube`.
"""
