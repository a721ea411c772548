"""Benchmarks behind `make bench`: each `bench_*.py` module's `main()` returns markdown."""
