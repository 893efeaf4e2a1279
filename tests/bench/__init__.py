"""Benchmarks with same-run baselines; run by `make bench`, not part of `make test`."""
