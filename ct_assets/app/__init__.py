"""The application layer: the demo, live and replay drivers and the supervision of Dagster's processes."""
