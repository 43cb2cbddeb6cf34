"""Sidecar injection: a mutating admission webhook that adds ``pkg-sidecar`` to pods.

``patch`` builds the sidecar and the JSONPatch (pure), ``review`` answers an
AdmissionReview (pure), ``certs`` makes and judges the serving certificate (pure;
``now`` is an argument), ``tls`` keeps the certificate Secret and the webhook
configuration's ``caBundle`` current (I/O through :mod:`pkg_operator.kube`), and
``server`` serves it all over HTTPS (aiohttp).
"""
