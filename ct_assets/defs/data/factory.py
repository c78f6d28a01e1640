"""Builds one pipeline's data-layer assets from its spec: the engine's only view of a dataset.

Asset keys are prefixed by the pipeline name and grouped under it, so every spec yields its own
independent asset group (the assets are built in `ingest_assets` and `feature_assets`).
Partitioned assets take a single run for a range of partitions (so a command-line backfill is one
run), and process the range partition by partition.
"""

import dagster as dg

from ct_assets.defs.data.common import partitions_def
from ct_assets.defs.data.feature_assets import features_asset, group_asset
from ct_assets.defs.data.ingest_assets import context_assets, raw_asset, validated_asset
from ct_assets.lib.core.spec import PipelineSpec
from ct_assets.lib.data.features import groups


def build_data_defs(spec: PipelineSpec) -> dg.Definitions:
    """All data-layer assets of one pipeline."""
    partitions = partitions_def(spec)
    assets = [
        *context_assets(spec),
        raw_asset(spec, partitions),
        validated_asset(spec, partitions),
        *(group_asset(spec, group, partitions) for group in groups(spec)),
        features_asset(spec, partitions),
    ]
    return dg.Definitions(assets=assets)
