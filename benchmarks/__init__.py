"""The project's own benchmarks (see benchmarks/README.md); ``benchmarks.apps`` holds the workloads."""
