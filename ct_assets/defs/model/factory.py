"""Builds one pipeline's model-layer assets: training_set -> candidate -> evaluation -> champion.

The gate is a blocking check on `evaluation`, so a failing candidate stops the run before the
champion step; the champion step itself also refuses a candidate whose recorded verdict failed,
so materializing the champion by hand cannot promote it either.
"""

from collections.abc import Iterator

import dagster as dg

from ct_assets.defs.resources import WAREHOUSE_POOL, AlertSink, ModelRegistry, Warehouse
from ct_assets.defs.shared import asset_key
from ct_assets.lib.core.spec import PipelineSpec
from ct_assets.lib.model import evaluation_report, refit
from ct_assets.lib.model import steps as model_steps
from ct_assets.lib.model.registry import RegistryError
from ct_assets.lib.model.steps import CandidateRef, EvaluationResult, TrainingSetRef


class TrainingWindow(dg.Config):
    """Train on the window ending at this partition key (default: the newest complete partition,
    the newest one whose `features` Dagster records as materialized)."""

    as_of: str | None = None


def newest_complete_partition(instance: dg.DagsterInstance, features_key: dg.AssetKey) -> str | None:
    """The newest partition key with a recorded `features` materialization, or None when Dagster
    has recorded none (a warehouse filled outside Dagster: the newest feature partition there)."""
    keys = instance.get_materialized_partitions(features_key)
    return max(keys) if keys else None


def build_model_defs(spec: PipelineSpec) -> dg.Definitions:
    training_key, candidate_key = asset_key(spec, "training_set"), asset_key(spec, "candidate")
    evaluation_key, champion_key = asset_key(spec, "evaluation"), asset_key(spec, "champion")

    @dg.asset(
        key=training_key,
        group_name=spec.name,
        deps=[asset_key(spec, "features")],
        kinds={"duckdb", "parquet"},
        pool=WAREHOUSE_POOL,
        description="The trailing window of feature partitions, split by time into train / validation / "
        "holdout, frozen as Parquet under its content hash (the dataset version).",
    )
    def training_set(
        context: dg.AssetExecutionContext,
        config: TrainingWindow,
        warehouse: Warehouse,
        registry: ModelRegistry,
    ) -> dg.Output[TrainingSetRef]:
        as_of = config.as_of or newest_complete_partition(context.instance, asset_key(spec, "features"))
        context.log.info(f"training as of {as_of or 'the newest feature partition in the warehouse'}")
        with warehouse.connect() as con:
            ref = model_steps.freeze_training_set(con, spec, registry.for_pipeline(spec.name), as_of)
        return dg.Output(
            ref,
            metadata={
                "as_of": ref.partitions["holdout"][-1],
                "dataset_version": ref.version,
                "dagster/row_count": sum(ref.rows.values()),
                "rows": dg.MetadataValue.json(ref.rows),
                "label_rate": dg.MetadataValue.json(ref.label_rate),
                "partitions": dg.MetadataValue.json(ref.partitions),
                "dataset_path": dg.MetadataValue.path(ref.path),
            },
        )

    @dg.asset(
        key=candidate_key,
        group_name=spec.name,
        kinds={"catboost"},
        description="A CatBoost model trained on the training set (native categoricals, early stopping on "
        "validation when the spec asks for it), stored immutable by sha256 and registered with its "
        "full lineage.",
        check_specs=[
            dg.AssetCheckSpec(
                "reproducible",
                asset=candidate_key,
                blocking=True,
                description="retraining from the recorded dataset, seed and parameters "
                "gives identical holdout predictions",
            )
        ],
    )
    def candidate(
        training_set: TrainingSetRef, registry: ModelRegistry
    ) -> Iterator[dg.Output[CandidateRef] | dg.AssetCheckResult]:
        store = registry.for_pipeline(spec.name)
        ref = model_steps.train_candidate(spec, store, training_set)
        record = store.get(ref.version)
        yield dg.Output(
            ref,
            metadata={
                "model_version": ref.version,
                "model_sha256": ref.model_sha256,
                "dataset_version": training_set.version,
                "feature_version": record.feature_version,
                "code_version": record.environment.code_version,
                "seed": record.seed,
                "thread_count": record.thread_count,
                "best_iteration": record.best_iteration,
                "training_cpu_seconds": record.training_cpu_seconds,
                "threshold": ref.threshold,
                "params": dg.MetadataValue.json(record.params),
                "libraries": dg.MetadataValue.json(record.environment.libraries),
            },
        )
        identical, difference = model_steps.retrain_matches(spec, store, ref)
        yield dg.AssetCheckResult(
            check_name="reproducible",
            asset_key=candidate_key,
            passed=identical,
            description="retrained model gives identical holdout predictions"
            if identical
            else f"retrained model differs: max |difference| {difference:.3g}",
            metadata={"max_abs_difference": difference},
        )

    @dg.asset(
        key=evaluation_key,
        group_name=spec.name,
        kinds={"catboost"},
        description="Candidate vs champion on the same holdout, overall and per segment, with the gate's "
        "verdict and its reasons.",
        check_specs=[
            dg.AssetCheckSpec(
                "gate",
                asset=evaluation_key,
                blocking=True,
                description="the candidate passes the evaluation gate",
            )
        ],
    )
    def evaluation(
        context: dg.AssetExecutionContext,
        training_set: TrainingSetRef,
        candidate: CandidateRef,
        registry: ModelRegistry,
        alerts: AlertSink,
    ) -> Iterator[dg.Output[EvaluationResult] | dg.AssetCheckResult]:
        result = model_steps.evaluate_candidate(
            spec, registry.for_pipeline(spec.name), candidate, training_set, alerts.send
        )
        against = f"against {result.champion_version}" if result.champion_version else "with no champion"
        if result.verdict.passed:
            context.log.info(f"{candidate.version} passed the gate {against}")
        else:  # the blocking check fails the run next; its reasons belong in the run's log too
            reasons = "; ".join(result.verdict.reasons)
            context.log.warning(f"{candidate.version} refused by the gate {against}: {reasons}")
        overall = result.candidate.overall
        yield dg.Output(
            result,
            metadata={
                "report": dg.MetadataValue.md(evaluation_report.markdown(result)),
                "passed": result.verdict.passed,
                "candidate_auc": round(overall.auc or 0.0, 4),
                **({"champion_auc": round(result.champion.overall.auc or 0.0, 4)} if result.champion else {}),
                "against": result.champion_version or "none",
            },
        )
        yield dg.AssetCheckResult(
            check_name="gate",
            asset_key=evaluation_key,
            passed=result.verdict.passed,
            description="; ".join(result.verdict.reasons) or "passed: " + "; ".join(result.verdict.notes),
            metadata={
                "reasons": dg.MetadataValue.md("\n".join(f"- {r}" for r in result.verdict.reasons) or "none")
            },
        )

    @dg.asset(
        key=champion_key,
        group_name=spec.name,
        kinds={"catboost"},
        description="The registry's champion alias; it moves only to a candidate whose gate passed, "
        "refitted on its whole window (the candidate itself with `training.refit: false`).",
    )
    def champion(
        context: dg.AssetExecutionContext,
        candidate: CandidateRef,
        evaluation: EvaluationResult,
        registry: ModelRegistry,
    ) -> dg.MaterializeResult:
        store = registry.for_pipeline(spec.name)
        if evaluation.candidate_version != candidate.version or not evaluation.verdict.passed:
            reasons = "; ".join(evaluation.verdict.reasons) or "its evaluation is for another version"
            raise dg.Failure(description=f"{candidate.version} cannot be promoted: {reasons}")
        served = candidate
        if spec.training.refit:
            served = refit.refit_candidate(spec, store, candidate)
            context.log.info(f"{served.version} is {candidate.version} refitted on its whole window")
        try:
            move = model_steps.promote(spec, store, served, who=f"dagster run {context.run_id}")
        except RegistryError as err:
            raise dg.Failure(description=str(err)) from err
        return dg.MaterializeResult(
            metadata={
                "champion": move.version,
                "previous": move.previous or "none",
                "model_sha256": served.model_sha256,
                "refit_of": candidate.version if served is not candidate else "none",
            }
        )

    return dg.Definitions(assets=[training_set, candidate, evaluation, champion])
