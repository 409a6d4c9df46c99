"""Benchmarks and seeders of the store, run from the repository root with ``python -m
benchmarks.<name>`` (docs/performance.md); they are not tests, so pytest never collects them."""
