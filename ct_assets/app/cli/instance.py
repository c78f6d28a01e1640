"""`ct ui` (the Dagster UI and daemon on the home folder) and `ct recover` (runs whose worker died)."""

from __future__ import annotations

import argparse
import signal
import sys
from typing import Any

from ct_assets.app.cli.common import prepared_dagster_home, require_free_port, require_no_daemon
from ct_assets.app.dagster_process import DagsterDev
from ct_assets.lib.core import settings


def check_ui_can_start(port: int, what: str) -> None:
    """Before anything starts: the port is free and no daemon already runs on this Dagster home."""
    require_free_port(port, what)
    require_no_daemon(prepared_dagster_home())


class _Stopped(Exception):
    """SIGTERM or SIGHUP reached `ct ui`."""


def _raise_stopped(signum: int, _frame: object) -> None:
    raise _Stopped(signal.Signals(signum).name)


def serve_ui(port: int) -> int:
    """Run `dagster dev` (webserver, daemon, code server) until Ctrl-C, SIGTERM or SIGHUP, then
    stop its whole process group, so no daemon is left ticking sensors on the home."""
    check_ui_can_start(port, "the Dagster UI")
    print(f"Dagster UI on http://127.0.0.1:{port} (Ctrl-C stops it)", flush=True)
    dev = DagsterDev(settings.REPO_ROOT / "workspace.yaml", prepared_dagster_home(), port, log_path=None)
    previous = {sig: signal.signal(sig, _raise_stopped) for sig in (signal.SIGTERM, signal.SIGHUP)}
    try:
        dev.start()
        assert dev.process is not None
        return dev.process.wait()
    except (KeyboardInterrupt, _Stopped):
        print("stopping the Dagster UI and daemon", file=sys.stderr, flush=True)
        dev.stop()
        return 0
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _cmd_ui(args: argparse.Namespace) -> int:
    return serve_ui(args.port)


def _cmd_recover(args: argparse.Namespace) -> int:
    """Runs whose worker was killed: mark them failed and free the warehouse pool slot they kept
    (the `dead_run_recovery` sensor does this every 30 s under the daemon), so a rerun does not wait."""
    import dagster as dg  # 1 s to load: only the commands that run Dagster

    from ct_assets.app.code_location import (
        recover_dead_runs,
    )  # pulls in dagster, which only this command needs

    prepared_dagster_home()
    with dg.DagsterInstance.get() as instance:
        print(recover_dead_runs(instance))
    return 0


def register(commands: Any) -> None:
    recover = commands.add_parser(
        "recover", help="mark runs whose worker was killed as failed and free their pool slots"
    )
    recover.set_defaults(run=_cmd_recover)

    ui = commands.add_parser("ui", help="start the Dagster UI and daemon on the home folder")
    ui.add_argument("--port", type=int, default=3000)
    ui.set_defaults(run=_cmd_ui)
