"""Fleet-scale benchmarks (``make bench-fleet``): each ``bench_*.py`` answers one question.

Each module runs standalone (``python -m benchmarks.fleet.bench_x``), starts what it
needs on the test bed, and writes ``benchmarks/results/<name>.json`` in the shape
:mod:`benchmarks.fleet.report` renders into BENCHMARKS.md.
"""
