"""Herd's benchmarks: `python -m bench.run [--quick]`; results and method in docs/performance.md."""
