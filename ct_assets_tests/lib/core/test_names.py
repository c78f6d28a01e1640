"""The names of a pipeline's Dagster objects."""

from ct_assets.lib.core import names


def test_names_follow_the_pipeline() -> None:
    assert names.asset_path("p", "raw") == ["p", "raw"]
    assert names.op_name("p", "training_set") == "p__training_set"
    assert names.job_name("p", "ingest") == "p_ingest"
    assert names.sensor_name("p", "drift") == "p_drift_sensor"
    assert names.schedule_name("p", "retrain") == "p_retrain_schedule"


def test_training_run_config_sets_as_of_on_the_training_set_op() -> None:
    assert names.training_run_config("p", "2013-01-05") == {
        "ops": {"p__training_set": {"config": {"as_of": "2013-01-05"}}}
    }
