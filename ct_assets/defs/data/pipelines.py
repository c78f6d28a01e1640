"""One data-layer asset group per pipeline spec found in the pipelines folder."""

import dagster as dg

from ct_assets.defs.data.factory import build_data_defs
from ct_assets.lib.core.spec_loading import discover_specs


@dg.definitions
def data_pipelines() -> dg.Definitions:
    return dg.Definitions.merge(*(build_data_defs(s) for s in discover_specs()))
