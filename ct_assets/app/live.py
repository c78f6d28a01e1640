"""The live loop: README's first Quickstart command.

Starts the Dagster webserver, daemon and code server (`dagster dev`) on the home folder's instance,
turns the sensors on, brings serving back (proxy and the live slot) if a previous run stopped it, and
plays the demo pipeline day by day: each day's events go to the stable serving URL as prediction
requests, then the day's file lands with its labels. Everything else is Dagster's: the landing sensor
ingests, the ingest job profiles, scores and measures drift, the performance and drift sensors ask for
retraining, the gate decides, and the automation sensor bundles and rolls out each new champion.

Ctrl-C stops the replay after its current batch, waits for in-flight runs to finish, stops the
serving processes and Dagster; starting again resumes from the saved progress.
"""

from __future__ import annotations

import json
import signal
import threading
import time
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import dagster as dg

from ct_assets.app.code_location import recover_dead_runs
from ct_assets.app.dagster_process import DagsterDev
from ct_assets.app.instance_home import prepare_dagster_home
from ct_assets.app.traffic import ReplayDriver, ReplayProgress
from ct_assets.lib.core import names, runs, settings
from ct_assets.lib.core.settings import Config
from ct_assets.lib.core.spec import PipelineSpec
from ct_assets.lib.data.landing import write_atomically
from ct_assets.lib.model.registry import Registry
from ct_assets.lib.serving import steps as deploy_steps
from ct_assets.lib.serving.rollout import Deployment, active_bento

RUNNING = [dg.DagsterRunStatus(status) for status in runs.EXECUTING]
IN_FLIGHT = [dg.DagsterRunStatus(status) for status in runs.IN_FLIGHT]
ROLLOUT_ACTIONS = {"rollout_started", "canary", "switch", "rollback", "awaiting_approval", "approved"}


@dataclass(frozen=True)
class LiveOptions:
    days: int = 30  # days to play in this session (from where the last one stopped)
    seconds_per_day: float = 20.0
    batch_rows: int = 5
    ui_port: int = 3000
    drain_seconds: float = 120.0
    exit_when_done: bool = False  # stop once every day is played and the pipeline is idle


def live_folder(config: Config) -> Path:
    """The live loop's own files (replay progress, the slot to restore, the Dagster log)."""
    return config.home / "live"


# --- start-up: leave nothing half-done from a previous session ------------------------------------
def restore_serving(deploy: Deployment, folder: Path) -> str | None:
    """Restart the proxy and the live slot that the last session stopped (saved in `folder`);
    returns the bento served."""
    saved = folder / "serving.json"
    if not saved.exists():
        return None
    serving = json.loads(saved.read_text())
    deploy.ensure_proxy()
    deploy.start_slot(serving["slot"], serving["bento"])
    deploy.route({serving["slot"]: 1.0})
    return serving["bento"]


def champion_not_serving(spec: PipelineSpec, deploy: Deployment, registry: Registry) -> str | None:
    """The champion's bento tag when the live slot serves something else (a rollout was cut short)."""
    from ct_assets.lib.serving import bento_build

    record = registry.champion()
    if record is None:
        return None
    wanted = bento_build.bento_tag(spec, record)
    return wanted if active_bento(deploy.state()) != wanted else None


def suspend_serving(deploy: Deployment, folder: Path) -> None:
    """Remember (in `folder`) which bento serves from which slot, then stop both slots and the proxy."""
    state = deploy.state()
    active, bento = state.get("active"), active_bento(state)
    if active and bento:
        write_atomically(folder / "serving.json", json.dumps({"slot": active, "bento": bento}).encode())
    deploy.shutdown()


def drain(instance: dg.DagsterInstance, timeout: float) -> int:
    """Wait until no run is executing (checked twice, 3 s apart); returns the runs still executing.
    Queued runs stay queued in the instance and start after the next start-up."""
    deadline = time.monotonic() + timeout
    quiet_checks = 0
    while time.monotonic() < deadline:
        running = len(instance.get_runs(filters=dg.RunsFilter(statuses=RUNNING)))
        quiet_checks = quiet_checks + 1 if running == 0 else 0
        if quiet_checks >= 2:
            return 0
        time.sleep(3)
    return len(instance.get_runs(filters=dg.RunsFilter(statuses=RUNNING)))


# --- what the terminal shows ---------------------------------------------------------------------------
def loop_status(
    instance: dg.DagsterInstance, registry: Registry, deploy: Deployment, progress: ReplayProgress
) -> dict[str, Any]:
    champion = registry.champion()
    retrains = instance.get_runs(
        filters=dg.RunsFilter(job_name=names.job_name(registry.pipeline, "retrain")), limit=1
    )
    last_retrain = None
    if retrains:
        run = retrains[0]
        last_retrain = {
            "status": run.status.value,
            "trigger": run.tags.get("ct/trigger", "manual"),
            "partition": run.tags.get("ct/partition", ""),
            "reason": run.tags.get("ct/reason", ""),
        }
    rollouts = [e for e in deploy.audit_log() if e.get("action") in ROLLOUT_ACTIONS]
    in_flight = instance.get_runs(filters=dg.RunsFilter(statuses=IN_FLIGHT))
    return {
        "day": progress.next_day,
        "days_landed": len(progress.days_landed),
        "served": progress.served,
        "rejected": progress.rejected,
        "unavailable": progress.unavailable,
        "champion": champion["version"] if champion else None,
        "champion_auc": ((champion or {}).get("evaluation") or {}).get("candidate", {}).get("auc"),
        "last_retrain": last_retrain,
        "last_rollout": rollouts[-1] if rollouts else None,
        "runs_in_flight": sorted(r.job_name for r in in_flight),
    }


def render(status: dict[str, Any], options: LiveOptions, stable_url: str) -> Any:
    from rich.table import Table

    table = Table(show_header=False, title="ct live loop", title_justify="left", expand=False)
    table.add_column(style="bold")
    table.add_column(overflow="fold", max_width=100)
    table.add_row("day", f"{status['day']} ({status['days_landed']} days landed)")
    table.add_row(
        "requests",
        f"{status['served']} rows served, {status['rejected']} rejected, "
        f"{status['unavailable']} sent while no model was serving",
    )
    auc = f" (holdout AUC {status['champion_auc']:.3f})" if status["champion_auc"] else ""
    table.add_row("champion", f"{status['champion'] or 'none yet'}{auc}")
    retrain = status["last_retrain"]
    table.add_row(
        "last retrain",
        f"{retrain['status']} - {retrain['trigger']} on {retrain['partition']}: {retrain['reason']}"
        if retrain
        else "none yet",
    )
    rollout = status["last_rollout"]
    table.add_row(
        "last rollout",
        f"{rollout['at'][:19]} {rollout['action']} {rollout.get('bento', '')} - {rollout.get('why', '')}"
        if rollout
        else "none yet",
    )
    table.add_row("runs in flight", ", ".join(status["runs_in_flight"]) or "none")
    table.add_row("serving", stable_url)
    table.add_row("Dagster UI", f"http://127.0.0.1:{options.ui_port}  (Ctrl-C stops everything cleanly)")
    return table


def status_line(status: dict[str, Any]) -> str:
    retrain = status["last_retrain"] or {}
    rollout = status["last_rollout"] or {}
    return (
        f"day {status['day']} landed {status['days_landed']} served {status['served']} "
        f"champion {status['champion'] or '-'} "
        f"retrain {retrain.get('status', '-')}:{retrain.get('trigger', '-')} "
        f"rollout {rollout.get('action', '-')}:{rollout.get('bento') or rollout.get('why', '-')} "
        f"in flight {len(status['runs_in_flight'])}"
    )


def watch(
    instance: dg.DagsterInstance,
    registry: Registry,
    deploy: Deployment,
    driver: ReplayDriver,
    player: threading.Thread,
    options: LiveOptions,
    stable_url: str,
    console: Any,
    interrupted: threading.Event,
) -> None:
    """Show the loop's status until interrupted, or (with `exit_when_done`) until every day is
    played and no run has been in flight for a while."""
    from rich.live import Live

    with Live(console=console, refresh_per_second=1, transient=not console.is_terminal) as live:
        idle_since = None
        last_line = ""
        while not interrupted.is_set():
            status = loop_status(instance, registry, deploy, driver.progress)
            live.update(render(status, options, stable_url))
            if not console.is_terminal:  # a log file gets one line per change instead of a redraw
                line = status_line(status)
                if line != last_line:
                    print(line, flush=True)
                    last_line = line
            if options.exit_when_done and not player.is_alive():
                idle_since = idle_since or time.monotonic()
                if status["runs_in_flight"]:
                    idle_since = time.monotonic()
                elif time.monotonic() - idle_since > 45:  # sensors tick every 15-30 s
                    break
            interrupted.wait(2)


# --- the loop ----------------------------------------------------------------------------------------
def run_live(spec: PipelineSpec, options: LiveOptions) -> int:
    from rich.console import Console

    if spec.source.kind != "demo":
        raise SystemExit(f"ct: the live demo replays demo sources; {spec.name} reads its own files")
    console = Console()
    dagster_home = prepare_dagster_home()
    config = settings.config()
    folder = live_folder(config)
    folder.mkdir(parents=True, exist_ok=True)
    instance = dg.DagsterInstance.get()
    orphans = [line for line in recover_dead_runs(instance).splitlines() if line.startswith("run ")]
    if orphans:  # runs a forced stop killed: failed, pool slots freed
        console.print(f"marked {len(orphans)} run(s) killed with the last session as failed")
    deploy = deploy_steps.deployment(spec, config)
    registry = Registry(config.registry, spec.name, config.audit_home)
    stable_url = f"http://127.0.0.1:{spec.serving.proxy_port}"
    driver = ReplayDriver(
        spec,
        stable_url,
        config.landing,
        folder / "replay.json",
        options.seconds_per_day,
        options.batch_rows,
    )
    first = date.fromisoformat(driver.progress.next_day)
    last_day = min(first + timedelta(days=options.days - 1), spec.partitions.end - timedelta(days=1))
    console.print(
        f"[bold]ct live loop[/]: {spec.name} from {first} to {last_day}, "
        f"{options.seconds_per_day:g} s per day, home {config.home}"
    )
    dev = DagsterDev(
        settings.REPO_ROOT / "workspace.yaml", dagster_home, options.ui_port, folder / "dagster.log"
    )
    interrupted = threading.Event()
    first_signal: list[float] = []

    def on_sigint(signum: int, frame: Any) -> None:
        if not first_signal:
            first_signal.append(time.monotonic())
            interrupted.set()
            driver.stop()
        elif time.monotonic() - first_signal[0] > 2:  # not the same Ctrl-C forwarded again by `uv run`
            raise KeyboardInterrupt

    previous_handler = signal.signal(signal.SIGINT, on_sigint)
    signal.signal(signal.SIGTERM, on_sigint)
    player: threading.Thread | None = None
    try:
        restored = restore_serving(deploy, folder)
        if restored:
            console.print(f"serving {restored} again on {stable_url}")
        console.print("starting Dagster (webserver, daemon, code server)...")
        dev.start()
        dev.wait_ready()
        dev.start_all_sensors()
        behind = champion_not_serving(spec, deploy, registry)
        if behind:  # the last session stopped before its rollout finished: roll the champion out again
            dev.launch_job(names.job_name(spec.name, "deploy"))
            console.print(f"the champion {behind} was not serving: its rollout is queued again")
        console.print(f"Dagster UI on {dev.url}; sensors on; replaying")
        player = threading.Thread(target=driver.play, args=(last_day.isoformat(),), daemon=True)
        player.start()
        watch(instance, registry, deploy, driver, player, options, stable_url, console, interrupted)
        console.print("stopping: replay paused, waiting for executing runs to finish (Ctrl-C again forces)")
        driver.stop()
        if player is not None:
            player.join(timeout=30)
        left = drain(instance, options.drain_seconds)
        if left:
            console.print(f"{left} run(s) still executing; the next start marks them failed and retries")
        return 0
    except KeyboardInterrupt:
        console.print("forced stop")
        return 130
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # the clean-up is bounded; let it finish
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        driver.stop()
        suspend_serving(deploy, folder)
        dev.stop()
        signal.signal(signal.SIGINT, previous_handler)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        progress = driver.progress
        console.print(
            f"stopped at {progress.next_day}: {len(progress.days_landed)} days landed, "
            f"{progress.served} rows served. Run the same command again to resume."
        )
