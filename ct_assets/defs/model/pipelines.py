"""One model-layer asset chain per pipeline spec."""

import dagster as dg

from ct_assets.defs.model.factory import build_model_defs
from ct_assets.lib.core.spec_loading import discover_specs


@dg.definitions
def model_pipelines() -> dg.Definitions:
    return dg.Definitions.merge(*(build_model_defs(s) for s in discover_specs()))
