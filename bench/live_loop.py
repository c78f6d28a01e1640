"""Cycle time of the live loop, by stage, from the Dagster instance of a live demo home.

    uv run python bench/live_loop.py --days 20 --seconds-per-day 20   # runs `ct demo` in a temp home first
    uv run python bench/live_loop.py --home /path/to/ct_home          # only measures an existing home

For every landed day: landing -> ingest run created (the landing sensor's tick), created -> started
(queue and run launch: a new process that imports the code location), started -> the day's features
materialized (compute). For every retrain: landing of its day -> retrain run created (the performance
or drift sensor), its run time, and for a promotion -> deploy run created (the automation sensor) ->
new champion serving all traffic (the rollout's switch in the audit log), and landing -> switch end to end.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

from ct_assets.lib.core import names

REPO = Path(__file__).resolve().parents[1]


def run_demo(home: Path, days: int, seconds_per_day: float) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CT_", "DAGSTER_"))}
    env["CT_HOME"] = str(home)
    command = [str(Path(sys.executable).parent / "ct"), "demo", "--days", str(days)]
    command += ["--seconds-per-day", str(seconds_per_day), "--exit-when-done", "--port", "3390"]
    subprocess.run(command, env=env, cwd=REPO, check=True, timeout=days * seconds_per_day + 3600)


def _ts(value: float | datetime | None) -> float | None:
    if value is None:
        return None
    return value.timestamp() if isinstance(value, datetime) else float(value)


def _median(values: list[float]) -> str:
    return f"{statistics.median(values):7.1f}" if values else "      -"


def measure(home: Path, pipeline: str) -> dict:
    import dagster as dg

    instance = dg.DagsterInstance.from_config(str(home / "dagster"))
    landing = home / "landing" / pipeline
    landed = {p.stem: p.stat().st_mtime for p in landing.glob("????-??-??.csv")}

    def materialized(asset: str) -> dict[str | None, float]:
        result = instance.fetch_materializations(dg.AssetKey([pipeline, asset]), limit=10000)
        times: dict[str | None, float] = {}
        for record in result.records:  # the first materialization of each partition
            times[record.partition_key] = min(
                times.get(record.partition_key, record.timestamp), record.timestamp
            )
        return times

    features = materialized("features")
    records = instance.get_run_records(dg.RunsFilter(job_name=names.job_name(pipeline, "ingest")))
    days = []
    for record in records:
        run = record.dagster_run
        start = run.tags.get("dagster/asset_partition_range_start") or run.tags.get("dagster/partition")
        end = run.tags.get("dagster/asset_partition_range_end") or start
        covered = [d for d in sorted(landed) if start and start <= d <= end]
        for day in covered:
            if day not in features:
                continue
            created, started = _ts(record.create_timestamp), _ts(record.start_time)
            days.append(
                {
                    "day": day,
                    "sensor_s": created - landed[day],
                    "queue_and_launch_s": (started or created) - created,
                    "compute_s": features[day] - (started or created),
                    "landing_to_features_s": features[day] - landed[day],
                    "days_in_run": len(covered),
                }
            )
    days.sort(key=lambda d: d["day"])

    audit = _audit_entries(home, pipeline)
    deploy_runs = sorted(  # the automation sensor's runs, and launches of the deploy job
        _ts(r.create_timestamp)
        for job in ("__ASSET_JOB", names.job_name(pipeline, "deploy"))
        for r in instance.get_run_records(dg.RunsFilter(job_name=job))
    )
    retrains = []
    for record in sorted(
        instance.get_run_records(dg.RunsFilter(job_name=names.job_name(pipeline, "retrain"))),
        key=lambda r: r.create_timestamp,
    ):
        run = record.dagster_run
        day = run.tags.get("ct/partition")
        created, ended = _ts(record.create_timestamp), _ts(record.end_time)
        entry = {
            "day": day,
            "trigger": run.tags.get("ct/trigger"),
            "status": run.status.value,
            "landing_to_request_s": created - landed[day] if day in landed else None,
            "retrain_run_s": (ended - created) if ended else None,
        }
        if run.status.value == "SUCCESS" and ended:
            promote = next(
                (e for e in audit if e.get("action") == "promote" and run.run_id in e.get("who", "")), None
            )
            version = promote.get("version") if promote else None
            entry["version"] = version
            switch = _rollout_step(audit, "switch", version)
            rolled_back = _rollout_step(audit, "rollback", version)
            if rolled_back and not switch:
                entry["rolled_back"] = rolled_back.get("why", "")[:80]
            deployed = next((t for t in deploy_runs if t >= ended), None)
            if deployed is not None:
                entry["promotion_to_deploy_run_s"] = deployed - ended
            if switch:
                entry["promotion_to_serving_s"] = _iso(switch["at"]) - ended
                if day in landed:
                    entry["landing_to_serving_s"] = _iso(switch["at"]) - landed[day]
        retrains.append(entry)
    instance.dispose()
    return {"days": days, "retrains": retrains}


def _rollout_step(audit: list[dict], action: str, version: str | None) -> dict | None:
    """The first rollout step `action` (switch, rollback) of the bento of model `version`."""
    if not version:
        return None
    return next(
        (e for e in audit if e.get("action") == action and str(e.get("bento", "")).endswith(f":{version}")),
        None,
    )


def _iso(text: str) -> float:
    value = datetime.fromisoformat(text)
    return (value if value.tzinfo else value.replace(tzinfo=UTC)).timestamp()


def _audit_entries(home: Path, pipeline: str) -> list[dict]:
    """The pipeline's audit entries (promotions, rollout steps), flattened, oldest first."""
    from ct_assets.lib.core.audit import flat, home_log

    return [flat(e) for e in home_log(home).entries(pipeline=pipeline)]


def report(result: dict) -> None:
    days, retrains = result["days"], result["retrains"]
    print(f"\nlanding -> features ready, {len(days)} days (seconds; median over days)")
    for name in ("sensor_s", "queue_and_launch_s", "compute_s", "landing_to_features_s"):
        print(f"  {name:24s} {_median([d[name] for d in days])}")
    print(f"  days per ingest run       {_median([d['days_in_run'] for d in days])}")
    print(f"\nretrains: {len(retrains)}")
    for entry in retrains:
        parts = [f"{k}={v:.1f}" if isinstance(v, float) else f"{k}={v}" for k, v in entry.items()]
        print("  " + " ".join(parts))
    served = [e["landing_to_serving_s"] for e in retrains if "landing_to_serving_s" in e]
    print(
        f"\nlanding -> new champion serving all traffic: median {_median(served)} s "
        f"over {len(served)} promotions"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--home", type=Path, help="measure an existing live-demo home instead of running one")
    parser.add_argument("--pipeline", default="flights_delay")
    parser.add_argument("--days", type=int, default=20)
    parser.add_argument("--seconds-per-day", type=float, default=20.0)
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    home = args.home
    if home is None:
        home = Path(tempfile.mkdtemp(prefix="ct_live_bench_"))
        print(f"running the live demo for {args.days} days in {home}")
        run_demo(home, args.days, args.seconds_per_day)
    result = measure(home, args.pipeline)
    report(result)
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
