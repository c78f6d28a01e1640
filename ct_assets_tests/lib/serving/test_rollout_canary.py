"""The canary judged on the same traffic as the active slot, behind a real HAProxy and real
`bentoml serve` slots: a bento identical to the active one passes the canary 20 times out of 20
(its window shortened through the spec's `serving.health_window_seconds`, half the traffic its
share) and is promoted; a planted model whose scores are shifted is rolled back on its scores, on
however many requests the machine's load lets through."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from ct_assets.lib.model import steps as model_steps
from ct_assets.lib.model.model_store import load_model, save_model
from ct_assets.lib.model.records import TrainedModel
from ct_assets.lib.serving import bento_build
from ct_assets.lib.serving import steps as deploy_steps
from ct_assets.lib.serving.proxy import ProxyLayout
from ct_assets.lib.serving.rollout import Deployment
from ct_assets_tests.bentos.test_service import DAYS, served  # noqa: F401 - the shared fixture
from ct_assets_tests.conftest import free_ports, requires_haproxy
from ct_assets_tests.lib.serving.test_predictor import request_rows
from ct_assets_tests.lib.serving.test_rollout import Traffic

pytestmark = [pytest.mark.slow, requires_haproxy]


def _planted_shift(registry, record: dict) -> dict:
    """A copy of `record` whose model adds 1.5 to every logit (scores shifted up)."""
    model = load_model(registry.models, record.model_sha256)
    scale, bias = model.get_scale_and_bias()
    model.set_scale_and_bias(scale, bias + 1.5)
    sha = save_model(registry.models, model)
    trained = TrainedModel.model_validate(record.model_dump(include=set(TrainedModel.model_fields)))
    version = registry.register(trained.model_copy(update={"model_sha256": sha}))
    return registry.get(version)


def test_an_identical_bento_always_passes_and_a_shifted_one_is_rolled_back(served) -> None:  # noqa: F811
    spec, con, registry, root = served["spec"], served["con"], served["registry"], served["root"]
    short = spec.model_copy(
        update={
            "serving": spec.serving.model_copy(
                # half the traffic to the canary: its window holds enough scores to judge in seconds
                update={"health_window_seconds": 2.0, "min_canary_requests": 5, "canary_share": 0.5}
            )
        }
    )
    policy = deploy_steps.health_policy(short)
    assert policy.window_seconds == 2.0
    first = registry.get("v0001")
    identical = model_steps.train_candidate(
        spec, registry, model_steps.freeze_training_set(con, spec, registry, None)
    )
    shifted = _planted_shift(registry, first)
    records = {"first": first, "identical": registry.get(identical.version), "shifted": shifted}
    bentos = {
        name: str(bento_build.build(spec, r, registry.models / f"{r.model_sha256}.cbm").tag)
        for name, r in records.items()
    }
    stable, blue, green, blue_check, green_check = free_ports(5)
    layout = ProxyLayout(
        root / "canary_proxy",
        stable,
        {"blue": blue, "green": green},
        {"blue": blue_check, "green": green_check},
    )
    env = {"CT_ONLINE_SNAPSHOT": str(root / "online"), "CT_PREDICTION_LOG": str(root / "canary_log")}
    deploy = Deployment(root / "canary_deploy", layout, env, str(Path(sys.executable).parent / "bentoml"))
    rows = request_rows(con, spec, DAYS[-1], 100)

    def compatibility(name: str) -> tuple[list[dict], list[float]]:
        return rows, deploy_steps.reference_scores(con, spec, records[name], registry, rows, [DAYS[-1]])

    try:
        rows_first, expected = compatibility("first")
        assert (
            deploy.rollout(bentos["first"], (rows_first, expected), expected, policy, "test").status
            == "switched"
        )
        # 20 rows cycled: both slots score each of them within a second or two (same-input pairs)
        with Traffic(f"http://127.0.0.1:{stable}", rows[:20]) as traffic:
            # the identical bento in the idle slot, judged 20 times on a canary share of live traffic
            active = deploy.state().active
            idle = "green" if active == "blue" else "blue"
            deploy.start_slot(idle, bentos["identical"])
            deploy.traffic.canary(active, idle, policy.canary_share)
            verdicts = [
                deploy.judge.watch(idle, deploy.slots.pid(idle), expected, policy, active) for _ in range(20)
            ]
            deploy.route({active: 1.0})
            deploy.stop_slot(idle)
            promoted = deploy.rollout(
                bentos["identical"], compatibility("identical"), expected, policy, "test"
            )
            rolled = deploy.rollout(bentos["shifted"], compatibility("shifted"), expected, policy, "test")
        failed = [(health, reasons) for health, reasons in verdicts if reasons]
        assert failed == [], failed[:3]
        # A window whose requests the two slots did not both score enough of falls back to the
        # window's distributions: the identical bento must pass either way.
        scores = [h.scores for h, _ in verdicts]
        paired = [s for s in scores if s.basis == "same inputs"]
        assert all(s.shift == 0.0 and s.max_difference == 0.0 for s in paired), scores
        assert {s.basis for s in scores} <= {"same inputs", "same window"}
        assert promoted.status == "switched", (promoted.reasons, promoted.health)
        assert rolled.status == "rolled_back" and "score distribution moved" in "; ".join(rolled.reasons), (
            rolled.reasons,
            rolled.health,
        )
        # how many requests both slots scored in the rollout's window depends on the machine's load
        assert rolled.health and rolled.health.scores.basis in {"same inputs", "same window"}, rolled.health
        assert traffic.failures == [], traffic.failures[:5]
    finally:
        deploy.shutdown()
