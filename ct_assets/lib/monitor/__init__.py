"""The monitoring layer: drift, live performance, retrain decisions, alerts and dashboards."""
