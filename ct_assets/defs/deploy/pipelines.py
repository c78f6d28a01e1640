"""One deploy layer per pipeline spec."""

import dagster as dg

from ct_assets.defs.deploy.factory import build_deploy_defs
from ct_assets.lib.core.settings import pipelines_dir
from ct_assets.lib.core.spec import load_all_specs


@dg.definitions
def deploy_pipelines() -> dg.Definitions:
    return dg.Definitions.merge(*(build_deploy_defs(s) for s in load_all_specs(pipelines_dir())))
