"""rtqa: benchmarks."""
