"""One model-layer asset chain per pipeline spec."""

import dagster as dg

from ct_assets.defs.model.factory import build_model_defs
from ct_assets.lib.core.settings import pipelines_dir
from ct_assets.lib.core.spec import load_all_specs


@dg.definitions
def model_pipelines() -> dg.Definitions:
    return dg.Definitions.merge(*(build_model_defs(s) for s in load_all_specs(pipelines_dir())))
