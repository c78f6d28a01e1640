"""The replay's own steps on real files: which partitions of a file source have not landed, the
champion's AUC on one partition of a real DuckDB warehouse with a real CatBoost model, the root
cause a failed retrain reports, the table and plot written at the end, and a replay of an older
stretch that leaves the champion as it is (slow: through the whole asset graph, as `ct replay`
runs it)."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import dagster as dg
import numpy as np
import pandas as pd
import pytest

from ct_assets.app.replay import ReplayDay, _root_cause, champion_auc_on, missing_landing, write_outputs
from ct_assets.lib.core.settings import Config
from ct_assets.lib.core.spec import PipelineSpec, load_spec
from ct_assets.lib.core.warehouse import PARTITION_COLUMN, open_connection, table_name
from ct_assets.lib.model.model_store import save_model
from ct_assets.lib.model.model_training import FeatureLayout
from ct_assets.lib.model.registry import Registry
from ct_assets_tests.app.cli.test_history import KEYS, _pipeline
from ct_assets_tests.conftest import trained_model, write_flights_variant

LAYOUT = FeatureLayout(categorical=["carrier"], numeric=["distance"])


def _files_spec(folder: Path) -> PipelineSpec:
    return load_spec(write_flights_variant(folder, {"source.kind": "files", "source.demo_dataset": None}))


def test_a_file_source_misses_the_partitions_with_nothing_landed(tmp_path: Path) -> None:
    spec = _files_spec(tmp_path / "spec")
    landing = tmp_path / "landing"
    keys = ["2013-01-01", "2013-01-02", "2013-01-03", "2013-01-04"]
    assert missing_landing(spec, keys, landing) == keys, "no landing folder at all"

    folder = landing / spec.name
    (folder / "2013-01-03").mkdir(parents=True)
    (folder / "2013-01-03" / "part-1.parquet").write_bytes(b"PAR1")
    (folder / "2013-01-01.csv").write_text("flight_id\n1\n")
    (folder / "_context").mkdir()
    assert missing_landing(spec, keys, landing) == ["2013-01-02", "2013-01-04"], "in the order asked"


def test_a_demo_source_never_misses_a_partition(tmp_path: Path, flights_spec: PipelineSpec) -> None:
    assert missing_landing(flights_spec, ["2013-01-01", "2013-01-02"], tmp_path / "empty") == []


def _features(partition: str, rows: int, seed: int, positive_rate: float = 0.3) -> pd.DataFrame:
    """Rows where a longer distance and carrier "B" make a late flight more likely."""
    generator = np.random.default_rng(seed)
    distance = generator.uniform(100, 2000, rows)
    carrier = generator.choice(["A", "B"], rows)
    odds = (distance / 2000) + (carrier == "B") * 0.5 + generator.normal(0, 0.3, rows)
    late = odds > np.quantile(odds, 1 - positive_rate) if positive_rate > 0 else np.zeros(rows, bool)
    return pd.DataFrame({PARTITION_COLUMN: partition, "carrier": carrier, "distance": distance, "late": late})


def _promote_a_model(registry: Registry, spec: PipelineSpec, training: pd.DataFrame):
    from catboost import CatBoostClassifier

    model = CatBoostClassifier(
        iterations=20, depth=3, random_seed=0, verbose=False, allow_writing_files=False, thread_count=1
    )
    model.fit(training[LAYOUT.columns], training["late"].astype(int), cat_features=LAYOUT.categorical)
    sha = save_model(registry.models, model)
    version = registry.register(trained_model(pipeline=spec.name, model_sha256=sha, layout=LAYOUT))
    registry.update(version, verdict={"passed": True, "reasons": []})
    registry.promote(version, who="test", why="first model")
    return model


def test_the_champion_is_scored_on_the_partition_asked_for_only(
    tmp_path: Path, flights_spec: PipelineSpec
) -> None:
    from sklearn.metrics import roc_auc_score

    config = Config.under(tmp_path / "home")
    registry = Registry(config.registry, flights_spec.name, config.audit_home)
    con = open_connection(config.warehouse)
    first, second = _features("2013-01-01", 300, seed=1), _features("2013-01-02", 300, seed=2)
    one_class = _features("2013-01-03", 50, seed=3, positive_rate=0)
    con.register("partitions", pd.concat([first, second, one_class], ignore_index=True))
    con.execute(f"CREATE SCHEMA {flights_spec.name}")
    con.execute(f"CREATE TABLE {table_name(flights_spec.name, 'features')} AS SELECT * FROM partitions")
    con.close()
    assert champion_auc_on(flights_spec, registry, "2013-01-01", config) is None, "no champion yet"

    model = _promote_a_model(registry, flights_spec, _features("training", 500, seed=0))

    aucs = [champion_auc_on(flights_spec, registry, day, config) for day in ("2013-01-01", "2013-01-02")]
    expected = [
        roc_auc_score(day["late"], model.predict_proba(day[LAYOUT.columns])[:, 1]) for day in (first, second)
    ]
    assert aucs == pytest.approx(expected) and aucs[0] != aucs[1], "each day's own rows"
    assert min(expected) > 0.7, "the model learned the rule"
    assert champion_auc_on(flights_spec, registry, "2013-01-03", config) is None, "one class: no AUC"


def test_a_failed_step_is_reported_by_its_innermost_error() -> None:
    @dg.asset
    def training_set() -> None:
        try:
            raise ValueError("the window holds 0 labelled rows")
        except ValueError as error:
            raise RuntimeError("could not build the training set") from error

    with dg.DagsterInstance.ephemeral() as instance:
        result = dg.materialize([training_set], instance=instance, raise_on_error=False)
    failures = [event.step_failure_data.error for event in result.all_events if event.is_step_failure]
    assert len(failures) == 1
    assert _root_cause(failures[0]) == "the window holds 0 labelled rows", "no exception class path"
    assert _root_cause("plain text\nlast line") == "last line"


def _day(partition: str, **fields: object) -> ReplayDay:
    defaults: dict[str, object] = {
        "rows": 900,
        "quarantined": 1,
        "champion": "v0001",
        "champion_auc": 0.71,
        "retrained": False,
        "promoted": False,
        "note": "",
    }
    return ReplayDay(partition, **(defaults | fields))  # type: ignore[arg-type]


def test_the_outputs_are_the_table_as_csv_and_a_png_plot(tmp_path: Path) -> None:
    results = [
        _day("2013-01-01", champion="-", champion_auc=None),
        _day("2013-01-02", retrained=True, promoted=True, note="promoted v0002"),
        _day("2013-01-03", retrained=True, note="gate refused: AUC 0.61 < 0.66"),
    ]
    folder = tmp_path / "reports" / "nested"

    csv_path, png_path = write_outputs(results, folder, "replay_p_2013-01-01_2013-01-03", "daily")

    assert (csv_path, png_path) == (
        folder / "replay_p_2013-01-01_2013-01-03.csv",
        folder / "replay_p_2013-01-01_2013-01-03.png",
    )
    with csv_path.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert list(rows[0]) == [
        "partition",
        "rows",
        "quarantined",
        "champion",
        "champion_auc",
        "retrained",
        "promoted",
        "note",
    ]
    assert [row["partition"] for row in rows] == ["2013-01-01", "2013-01-02", "2013-01-03"]
    assert rows[0]["champion_auc"] == "" and rows[0]["champion"] == "-"
    assert rows[2] == {
        "partition": "2013-01-03",
        "rows": "900",
        "quarantined": "1",
        "champion": "v0001",
        "champion_auc": "0.71",
        "retrained": "True",
        "promoted": "False",
        "note": "gate refused: AUC 0.61 < 0.66",
    }
    assert (rows[1]["champion"], rows[1]["note"]) == ("v0001", "promoted v0002")
    assert png_path.read_bytes().startswith(b"\x89PNG\r\n\x1a\n") and png_path.stat().st_size > 5000


def test_the_plot_names_the_partitions_grain(tmp_path: Path) -> None:
    results = [_day("2024-01-07"), _day("2024-01-14", retrained=True, promoted=True, note="promoted v0002")]
    _, png_path = write_outputs(results, tmp_path, "replay_p_2024-01-07_2024-01-14", "weekly")
    png = png_path.read_bytes()
    assert b"champion AUC per week (green: promoted retrain, red: refused)" in png
    assert b"per day" not in png


def _replay(env: dict[str, str], start: str, end: str) -> list[dict[str, str]]:
    ct = str(Path(sys.executable).parent / "ct")
    command = [ct, "replay", "--pipeline", "grains", "--start", start, "--end", end]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    table = Path(env["CT_HOME"]) / "reports" / f"replay_grains_{start}_{end}.csv"
    return list(csv.DictReader(table.open()))


@pytest.mark.slow
def test_replaying_an_older_stretch_never_moves_the_champion_back(tmp_path: Path) -> None:
    """A monthly schedule retrains at every month; replaying months the champion already learned
    from trains nothing and leaves the champion as it was."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CT_", "DAGSTER_"))}
    env |= _pipeline(tmp_path, "monthly", KEYS["monthly"])
    spec_file = tmp_path / "pipelines" / "grains" / "spec.yaml"
    spec_file.write_text(
        spec_file.read_text().replace("training:\n", "training:\n  retrain_cron: '0 0 1 * *'\n")
    )

    first = _replay(env, KEYS["monthly"][0], KEYS["monthly"][4])
    promoted = first[-1]["note"].removeprefix("promoted ")
    champion = promoted if first[-1]["promoted"] == "True" else first[-1]["champion"]  # after the last month
    assert [r["retrained"] for r in first[2:]] == ["True"] * 3, "due every month once the window allows"

    again = _replay(env, KEYS["monthly"][2], KEYS["monthly"][3])
    assert [r["retrained"] for r in again] == ["False", "False"]
    assert all(r["champion"] == champion for r in again), "the champion stays"
    assert all(r["note"].startswith(f"not retrained: champion {champion} learned up to ") for r in again)
    config = Config.under(tmp_path / "home")
    assert Registry(config.registry, "grains", config.audit_home).champion_version() == champion
    ct = str(Path(sys.executable).parent / "ct")
    command = [ct, "status", "--pipeline", "grains", "--json"]
    status = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    last = json.loads(status.stdout)["last_retrain"]
    assert (last["trigger"], last["partition"]) == ("replay", KEYS["monthly"][4]), last
    assert last["reason"] == "retrain_cron 0 0 1 * *"
