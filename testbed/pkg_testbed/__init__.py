"""The test bed: real etcd, kube-apiserver, kubectl, PostgreSQL, Redis, opa and helm.

A development tool, not part of the product. It finds the binaries the machine
already has (``KUBEBUILDER_ASSETS``, ``PATH``) or builds them from their Go
modules and caches them by version under ``~/.cache/pkg-operator``; it starts
the servers on free loopback ports in temporary directories and tears them down.
Tests use it through pytest fixtures (``tests/conftest.py``); people use it
through ``python -m pkg_testbed`` (``make stack``).
"""
