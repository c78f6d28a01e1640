"""The core layer: pipeline specs, settings and paths, the DuckDB warehouse, partitions and dates."""
