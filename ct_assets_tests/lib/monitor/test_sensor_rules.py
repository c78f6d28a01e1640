"""A retrain sensor's decisions with plain signals: first model, rule, cooldown, request."""

import json

from ct_assets.lib.core.spec import MonitoringSpec, PipelineSpec
from ct_assets.lib.monitor import sensor_rules
from ct_assets.lib.monitor.retrain_policy import Decision, Expectation, PartitionSignal, performance_decision
from ct_assets.lib.monitor.sensor_rules import TrainingRequest
from ct_assets_tests.conftest import evaluation, holdout_metrics, model_version

RECORD = model_version("v3", evaluation=evaluation(0.71))
SIGNALS = [PartitionSignal("2013-02-01", 0.1), PartitionSignal("2013-02-02", 0.5)]


def _always(signals: list[PartitionSignal], expected: Expectation, rules: MonitoringSpec) -> Decision:
    return Decision(
        True, "drift", f"drift on {signals[-1].partition} (holdout {expected.auc})", {"drift": "2 of 3"}
    )


def _never(signals: list[PartitionSignal], expected: Expectation, rules: MonitoringSpec) -> Decision:
    return Decision(False, None, "all quiet")


def test_only_the_performance_sensor_asks_for_a_first_model() -> None:
    assert sensor_rules.champion_needed("drift", has_champion=False)
    assert sensor_rules.champion_needed("performance", has_champion=False) is None
    assert sensor_rules.champion_needed("drift", has_champion=True) is None
    assert sensor_rules.nothing_ingested(None) and sensor_rules.nothing_ingested("2013-01-01") is None


def test_first_model_waits_for_data_then_requests_the_latest_complete_partition(
    flights_spec: PipelineSpec,
) -> None:
    training = flights_spec.training
    days = [f"2013-01-{d:02d}" for d in range(1, 29)]
    few = sensor_rules.first_model([(d, 900) for d in days[:2]], "9999", training)
    assert isinstance(few, str) and "waiting for data" in few
    rows = [(d, 900) for d in days]
    request = sensor_rules.first_model(rows, days[-3], training)
    assert isinstance(request, TrainingRequest)
    assert request.as_of == days[-3] and request.run_key == f"first_model:{days[-3]}"
    assert request.tags["ct/trigger"] == "first_model" and request.cursor is None


def test_retrain_request_carries_reason_tags_and_cursor(flights_spec: PipelineSpec) -> None:
    rules = flights_spec.monitoring
    request = sensor_rules.retrain("drift", _always, SIGNALS, RECORD, rules, None, 0)
    assert isinstance(request, TrainingRequest)
    assert request.run_key == "drift:2013-02-02:v3" and request.as_of == "2013-02-02"
    assert request.tags == {
        "ct/trigger": "drift",
        "ct/reason": "drift on 2013-02-02 (holdout 0.71)",
        "ct/partition": "2013-02-02",
        "ct/champion": "v3",
        "ct/evidence_drift": "2 of 3",
    }
    assert json.loads(request.cursor)["last_request"]["champion"] == "v3"
    assert sensor_rules.last_request(request.cursor)["partition"] == "2013-02-02"
    assert request.alert == "retrain requested by the drift sensor: drift on 2013-02-02 (holdout 0.71)"


def test_cooldown_holds_for_the_same_champion_only(flights_spec: PipelineSpec) -> None:
    rules = flights_spec.monitoring
    last = {"partition": "2013-01-30", "champion": "v3"}
    cooling = sensor_rules.retrain("drift", _always, SIGNALS, RECORD, rules, last, 1)
    assert isinstance(cooling, str) and f"cooling down (1 of {rules.cooldown_partitions}" in cooling
    cooled = sensor_rules.retrain("drift", _always, SIGNALS, RECORD, rules, last, rules.cooldown_partitions)
    assert isinstance(cooled, TrainingRequest)
    other = sensor_rules.retrain("drift", _always, SIGNALS, RECORD, rules, {**last, "champion": "v2"}, 0)
    assert isinstance(other, TrainingRequest)


def test_quiet_rule_and_no_signals_skip_with_the_reason(flights_spec: PipelineSpec) -> None:
    rules = flights_spec.monitoring
    assert sensor_rules.retrain("drift", _never, SIGNALS, RECORD, rules, None, 0) == "2013-02-02: all quiet"
    assert "no monitored partitions for champion v3" in sensor_rules.retrain(
        "drift", _always, [], RECORD, rules, None, 0
    )
    assert model_version().holdout_auc is None and RECORD.holdout_auc == 0.71
    assert sensor_rules.last_request(None) is None


def test_a_performance_request_shows_its_evidence_in_the_tags(flights_spec: PipelineSpec) -> None:
    holdout = {"holdout_partitions": [], "against": None, "champion": None}
    record = model_version(
        "v4",
        evaluation={**holdout, "candidate": holdout_metrics(0.75, rows=3000, positive_rate=0.2)},
        label_rate={"train": 0.2},
    )
    signals = [PartitionSignal(f"2013-03-0{d}", 0.0, [], 0.69, 1000, 0.2, 0.2) for d in (1, 2, 3)]
    request = sensor_rules.retrain(
        "performance", performance_decision, signals, record, flights_spec.monitoring, None, 0
    )
    assert isinstance(request, TrainingRequest)
    assert request.tags["ct/evidence_auc"].startswith("AUC 0.690 on 2013-03-01..2013-03-03")
    assert "label rate 0.200 vs reference 0.200" in request.tags["ct/evidence_label_rate"]
    assert all(len(v) <= sensor_rules.EVIDENCE_CHARS for v in request.tags.values() if "evidence" in v)
    quiet = [PartitionSignal(f"2013-03-0{d}", 0.0, [], 0.75, 1000, 0.2, 0.2) for d in (1, 2, 3)]
    skip = sensor_rules.retrain(
        "performance", performance_decision, quiet, record, flights_spec.monitoring, None, 0
    )
    assert isinstance(skip, str) and "no evidence of harm" in skip and "vs holdout 0.750" in skip
