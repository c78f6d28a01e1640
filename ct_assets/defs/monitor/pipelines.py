"""One monitoring layer (assets, jobs, sensors, schedule) per pipeline spec."""

import dagster as dg

from ct_assets.defs.monitor.factory import build_monitor_defs
from ct_assets.lib.core.spec_loading import discover_specs


@dg.definitions
def monitor_pipelines() -> dg.Definitions:
    return dg.Definitions.merge(*(build_monitor_defs(s) for s in discover_specs()))
