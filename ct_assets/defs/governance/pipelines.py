"""Governance wiring for every pipeline spec, plus the one audit-log sensor."""

import dagster as dg

from ct_assets.defs.governance.factory import audit_log_sensor, build_governance_defs
from ct_assets.lib.core.spec_loading import discover_specs


@dg.definitions
def governance_pipelines() -> dg.Definitions:
    specs = discover_specs()
    return dg.Definitions.merge(
        dg.Definitions(sensors=[audit_log_sensor(specs)]), *(build_governance_defs(s) for s in specs)
    )
