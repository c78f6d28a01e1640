"""The landing sensor names a landing file whose name is not a partition key (a Tuesday in a weekly
pipeline) once, with the keys to rename it to, and ingests the files that are keys. Real sensor
ticks on an ephemeral instance."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import pytest

from ct_assets.defs.data.factory import build_data_defs
from ct_assets.defs.deploy.factory import build_deploy_defs
from ct_assets.defs.model.factory import build_model_defs
from ct_assets.defs.monitor.factory import build_monitor_defs
from ct_assets.defs.resources import LandingZone, default_resources
from ct_assets.lib.core import names
from ct_assets.lib.core.spec import PipelineSpec, load_spec
from ct_assets.lib.data import landing_state
from ct_assets_tests.defs.data import loans_pipeline

WEEKLY = "partitions: {grain: weekly, start: 2024-03-03, end: 2024-04-07, timezone: UTC}"


@pytest.fixture
def weekly(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> PipelineSpec:
    monkeypatch.setenv("CT_HOME", str(tmp_path / "home"))
    spec_file = loans_pipeline.write_pipeline(tmp_path / "pipelines", context=False)
    text = spec_file.read_text()
    spec_file.write_text(
        "\n".join(WEEKLY if line.startswith("partitions:") else line for line in text.splitlines())
    )
    return load_spec(spec_file)


def _tick(
    spec: PipelineSpec, landing: Path, instance: dg.DagsterInstance, cursor: str | None
) -> dg.SensorResult:
    resources = {**default_resources(), "landing": LandingZone(root=str(landing))}
    defs = dg.Definitions.merge(
        build_data_defs(spec),
        build_model_defs(spec),
        build_monitor_defs(spec),
        build_deploy_defs(spec),
        dg.Definitions(resources=resources),
    )
    context = dg.build_sensor_context(
        instance=instance,
        cursor=cursor,
        resources=resources,
        repository_def=defs.get_repository_def(),
    )
    return defs.resolve_sensor_def(names.sensor_name(spec.name, "landing")).evaluate_tick(context)


def test_a_file_named_for_a_tuesday_is_named_once(weekly: PipelineSpec, tmp_path: Path) -> None:
    landing = tmp_path / "landing"
    folder = landing / weekly.name
    folder.mkdir(parents=True)
    tuesday = folder / "2024-03-05.csv"
    loans_pipeline.applications("2024-03-05").to_csv(tuesday, index=False)
    (folder / ".2024-03-10.csv.tmp").write_text("loan_id\n")  # a partial write: not data yet
    instance = dg.DagsterInstance.ephemeral()

    first = _tick(weekly, landing, instance, None)
    assert not first.run_requests
    assert first.skip_message == (
        f"no new or changed landing files; {tuesday}: its rows are not ingested: 2024-03-05 is a "
        "Tuesday, and weekly partitions are keyed by their Sunday: rename it 2024-03-03 (the week "
        "it falls in) or 2024-03-10 (the next week)"
    )
    again = _tick(weekly, landing, instance, first.cursor)
    assert again.skip_message == "no new or changed landing files"

    loans_pipeline.applications("2024-03-03").to_csv(folder / "2024-03-03.csv", index=False)
    ingest = _tick(weekly, landing, instance, first.cursor)
    assert [r.partition_key for r in ingest.run_requests] == ["2024-03-03"]
    assert landing_state.parse(ingest.cursor)["misnamed"] == ["2024-03-05.csv"]
