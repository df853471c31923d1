"""Model set-ups of the papers' experiments, shared by examples, benchmarks and tests."""
