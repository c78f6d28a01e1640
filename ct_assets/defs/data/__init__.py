"""The data layer: context tables, raw, validated (+ quarantine), feature groups and features."""
