"""Benchmarks of the evaluator library (run through make targets; see BENCHMARKS.md)."""
