"""One deploy layer per pipeline spec."""

import dagster as dg

from ct_assets.defs.deploy.factory import build_deploy_defs
from ct_assets.lib.core.spec_loading import discover_specs


@dg.definitions
def deploy_pipelines() -> dg.Definitions:
    return dg.Definitions.merge(*(build_deploy_defs(s) for s in discover_specs()))
