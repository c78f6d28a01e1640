"""ct-assets: continuous training for tabular models as a Dagster asset graph."""
