"""Benchmark of the tree count a served refit should have: early-stopped on the candidate's
validation split, or every tree of the spec's `iterations`.

On a stretch of a pipeline's partitions (flights 2013-01-01..2013-04-30 by default, landed and
built into features through the same library steps and cached warehouse as `ct backtest`), for
every `--step`th window of `training.window_partitions` partitions:

* the candidate's split (`training_set.assign_splits`): trained on the train partitions, with early
  stopping on the validation partitions after `--rounds` trees without a better validation AUC
  (`model_training.train`), which gives the early-stopped tree count;
* the refit (`model_training.train_fixed`) on the whole window, once for the early-stopped count
  and once for `iterations`, each scored on the partition after the window.

Prints, for both tree counts, the mean AUC on the next partition and the tree counts' mean, minimum
and maximum. Run: `uv run python bench/early_stopping.py`.
"""

from __future__ import annotations

import argparse
import statistics
from typing import Any

ROUNDS = 30


def windows(keys: list[str], size: int, step: int) -> list[tuple[list[str], str]]:
    """Each window of `size` keys (every `step`th) with the key after it."""
    return [(keys[end - size : end], keys[end]) for end in range(size, len(keys), step)]


def next_partition_auc(model: Any, frame: Any, spec: Any, layout: Any) -> float:
    from sklearn.metrics import roc_auc_score

    from ct_assets.lib.model import model_training

    return float(
        roc_auc_score(model_training.labels(frame, spec), model_training.score(model, frame, layout))
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--pipeline", default="flights_delay")
    parser.add_argument("--start", default="2013-01-01")
    parser.add_argument("--end", default="2013-04-30")
    parser.add_argument("--step", type=int, default=3, help="every step-th window (default 3)")
    parser.add_argument("--rounds", type=int, default=ROUNDS, help="early-stopping rounds (default 30)")
    args = parser.parse_args(argv)

    import pandas as pd

    from ct_assets.app.cli.common import pipeline_spec
    from ct_assets.app.cli.history import partition_range
    from ct_assets.app.demo import land_days
    from ct_assets.lib.core import settings
    from ct_assets.lib.core.warehouse import connection
    from ct_assets.lib.model import model_training
    from ct_assets.lib.model.model_training import FeatureLayout
    from ct_assets.lib.model.training_set import assign_splits
    from ct_assets.lib.monitor import backtest

    spec = pipeline_spec(args.pipeline)
    keys = partition_range(spec, args.start, args.end)
    config = settings.config()
    if spec.source.kind == "demo":
        land_days(spec, keys, config.landing)
    with connection(config.home / "backtest" / spec.name / "warehouse.duckdb") as con:
        backtest.build_features(con, spec, config.landing, keys)
        frames = backtest.load_frames(con, spec, keys)
    layout = FeatureLayout.of(spec)
    params = spec.training.params
    stopping = params.model_copy(update={"early_stopping_rounds": args.rounds})
    figures: dict[str, tuple[list[float], list[int]]] = {"early-stopped": ([], []), "every tree": ([], [])}
    chosen = windows(sorted(frames), spec.training.window_partitions, args.step)
    for window, after in chosen:
        splits = assign_splits(spec, window)
        train, validation = (pd.concat([frames[k] for k in splits[name]]) for name in ("train", "validation"))
        stopped = model_training.train(train, validation, spec, layout, stopping).tree_count_
        whole = pd.concat([frames[k] for k in window])
        for name, trees in (("early-stopped", stopped), ("every tree", params.iterations)):
            refit = model_training.train_fixed(whole, spec, layout, params, trees)
            figures[name][0].append(next_partition_auc(refit, frames[after], spec, layout))
            figures[name][1].append(trees)
    print(
        f"{spec.name} {args.start}..{args.end}: {len(chosen)} windows of {spec.training.window_partitions} "
        f"partitions (one in {args.step}), early stopping after {args.rounds} rounds, iterations "
        f"{params.iterations}, learning rate {params.learning_rate}, depth {params.depth}"
    )
    print("| refit's trees | mean AUC on the next partition | trees: mean | min | max |")
    print("| --- | --- | --- | --- | --- |")
    for name, (aucs, trees) in figures.items():
        mean_auc, mean_trees = statistics.mean(aucs), statistics.mean(trees)
        print(f"| {name} | {mean_auc:.4f} | {mean_trees:.0f} | {min(trees)} | {max(trees)} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
