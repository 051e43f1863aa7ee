"""make bench: the benchmark harness (see BENCHMARKS.md)."""
