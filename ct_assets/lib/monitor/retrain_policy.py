"""When to retrain: confirmed, important drift that costs accuracy, or a live-performance drop.

On large partitions every statistical test says "drift", and most drift does not hurt the model.
So a partition counts as drifted only when the drifted features carry enough of the champion's
importance; drift must be confirmed in k of the last n partitions; and confirmed drift retrains
only when the champion's live AUC has started to slip, unless the drift is severe. A drop of live
performance below the floor, or well below the champion's holdout AUC, retrains by itself.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from statistics import mean

from ct_assets.lib.core.spec import MonitoringSpec, TrainingSpec


@dataclass(frozen=True)
class PartitionSignal:
    """What monitoring learned about one partition."""

    partition: str
    drift_share: float | None  # importance share of drifted features; None when skipped
    drifted: list[str] = field(default_factory=list)
    auc: float | None = None  # the serving model's AUC on the partition


@dataclass(frozen=True)
class Decision:
    retrain: bool
    trigger: str | None  # "drift" | "performance" | None
    reason: str


def weighted_share(drifted: list[str], importance: dict[str, float]) -> float:
    """The share of the model's importance carried by the drifted features."""
    return sum(importance.get(column, 0.0) for column in drifted)


def _recent_auc(signals: list[PartitionSignal], window: int) -> tuple[float | None, list[str]]:
    recent = [s for s in signals if s.auc is not None][-window:]
    if not recent:
        return None, []
    return mean(s.auc for s in recent if s.auc is not None), [s.partition for s in recent]


def performance_decision(
    signals: list[PartitionSignal], champion_auc: float | None, rules: MonitoringSpec
) -> Decision:
    auc, partitions = _recent_auc(signals, rules.performance_window)
    if auc is None or len(partitions) < rules.performance_window:
        return Decision(False, None, "not enough scored partitions yet")
    span = f"{partitions[0]}..{partitions[-1]}"
    if auc < rules.performance_floor_auc:
        return Decision(
            True, "performance", f"live AUC {auc:.3f} over {span} < floor {rules.performance_floor_auc:.3f}"
        )
    if champion_auc is not None and auc < champion_auc - rules.performance_drop:
        return Decision(
            True,
            "performance",
            f"live AUC {auc:.3f} over {span} < champion holdout "
            f"{champion_auc:.3f} - {rules.performance_drop:.3f}",
        )
    return Decision(False, None, f"live AUC {auc:.3f} over {span} holds")


def drift_decision(
    signals: list[PartitionSignal], champion_auc: float | None, rules: MonitoringSpec
) -> Decision:
    window = signals[-rules.confirm_window :]
    drifted = [s for s in window if s.drift_share is not None and s.drift_share >= rules.drift_share]
    if len(drifted) < rules.confirm_partitions:
        return Decision(
            False,
            None,
            f"drift in {len(drifted)} of the last {len(window)} partitions "
            f"(needs {rules.confirm_partitions})",
        )
    worst = max(drifted, key=lambda s: s.drift_share or 0.0)
    features = sorted({c for s in drifted for c in s.drifted})
    described = (
        f"drift confirmed in {len(drifted)} of the last {len(window)} partitions "
        f"(up to {worst.drift_share:.0%} of importance on {worst.partition}: {', '.join(features[:6])})"
    )
    if (worst.drift_share or 0.0) >= rules.severe_drift_share:
        return Decision(True, "drift", f"{described}; severe")
    auc, _ = _recent_auc(signals, rules.performance_window)
    if auc is not None and champion_auc is not None and auc < champion_auc - rules.performance_drop / 2:
        return Decision(True, "drift", f"{described}; live AUC {auc:.3f} slipping from {champion_auc:.3f}")
    held = f"{auc:.3f}" if auc is not None else "unknown"
    return Decision(False, None, f"{described}, but the champion holds its AUC ({held}): not worth a retrain")


def cooled_down(last_request: str | None, partition: str, partitions_between: int, cooldown: int) -> bool:
    """True when no request was made, or at least `cooldown` partitions have passed since."""
    return last_request is None or partitions_between >= cooldown


def first_model_decision(partition_rows: list[tuple[str, int]], training: TrainingSpec) -> Decision:
    """With no champion yet, train the first one as soon as the data allows: enough partitions for
    the validation and holdout splits plus at least one to train on, and `min_rows` training rows."""
    held_out = training.validation_partitions + training.holdout_partitions
    window = partition_rows[-training.window_partitions :]
    train_rows = sum(rows for _, rows in window[:-held_out]) if len(window) > held_out else 0
    if len(window) <= held_out or train_rows < training.min_rows:
        return Decision(
            False,
            None,
            f"no champion yet; waiting for data: {len(window)} partitions and {train_rows} training rows "
            f"(needs more than {held_out} partitions and {training.min_rows} rows)",
        )
    return Decision(
        True,
        "first_model",
        f"no champion yet and {train_rows} training rows in {len(window) - held_out} partitions: "
        "train the first model",
    )
