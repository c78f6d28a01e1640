"""The monitoring layer: profiles, drift, live performance, dashboards, sensors and alerts."""
