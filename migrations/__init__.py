"""This folder is also the package ``evaluator_sidecar.store.sql``: the migrations' one source.

pyproject.toml maps that package onto ``migrations/`` (``[tool.setuptools] package-dir``),
so the numbered ``NNNN_description.sql`` files ship inside the wheel and the editable
install alike, where ``pkg-migrate`` (``evaluator_sidecar.store.migrations``) finds
them with ``importlib.resources``. No Python code lives here.
"""
