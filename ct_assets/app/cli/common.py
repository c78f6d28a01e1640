"""What every `ct` command shares: the one-line error, the pipeline a command is about, the
registry, the operator's name, and the read-only warehouse."""

from __future__ import annotations

import argparse
import getpass
import os
import socket
import sys
from itertools import pairwise
from pathlib import Path
from typing import Any

from ct_assets.app.instance_home import prepare_dagster_home
from ct_assets.lib.core import settings
from ct_assets.lib.core.dates import day_keys
from ct_assets.lib.core.spec import PipelineSpec
from ct_assets.lib.core.spec_loading import discover_specs
from ct_assets.lib.core.warehouse import open_connection
from ct_assets.lib.model.registry import Registry


class CliError(Exception):
    """A problem the operator can fix; `ct` prints its message as one line and exits non-zero."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


def all_specs() -> list[PipelineSpec]:
    return discover_specs()


def _folders() -> str:
    return ", ".join(str(p) for p in settings.config().pipeline_dirs) or "no folder (CT_BUILTIN_PIPELINES=0)"


def pipeline_spec(name: str | None, source: str | None = None) -> PipelineSpec:
    """The spec named `name`; with no name, the only loaded pipeline (of this source kind, when
    given); with more than one, the operator names it."""
    loaded = all_specs()
    specs = {s.name: s for s in loaded if source is None or s.source.kind == source}
    what = f"{source}-source pipeline" if source else "pipeline"
    if name is None:
        if len(specs) == 1:
            return next(iter(specs.values()))
        if not specs:
            raise CliError(f"no {what} in {_folders()}")
        raise CliError(f"more than one {what} is loaded: choose one with --pipeline ({', '.join(specs)})")
    if name not in specs:
        have = ", ".join(specs) or "none"
        raise CliError(f"no {what} {name!r} in {_folders()} (have: {have})")
    return specs[name]


def add_pipeline_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--pipeline", help="the pipeline (needed when more than one is loaded)")


def day_range(start: str, end: str) -> list[str]:
    """Every ISO day from `start` to `end`; an end before the start is the operator's error."""

    if end < start:
        raise CliError(f"--end {end} is before --start {start}")
    return day_keys(start, end)


def require_free_port(port: int, what: str) -> None:
    """Refuse to start `what` on a port something already listens on (before anything starts)."""
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # TIME_WAIT leftovers are free
        try:
            probe.bind(("127.0.0.1", port))
        except OSError as err:
            raise CliError(
                f"port {port} is already in use ({err.strerror}): {what} not started; "
                "stop what listens there or choose another with --port"
            ) from None


def prepared_dagster_home() -> Path:
    """The Dagster home with its instance file, prepared; a problem with it is one clear line.

    `ct` prepares it before every command, so the bare `dagster` CLI finds its instance afterwards
    (with `DAGSTER_HOME` exported in that shell)."""

    try:
        return prepare_dagster_home()
    except OSError as err:
        raise CliError(f"cannot prepare the Dagster home {settings.config().dagster_home}: {err}") from None


DAEMON_MARKERS = (b"dagster._daemon", b"dagster-daemon")
WEBSERVER_MARKERS = (b"dagster_webserver", b"dagster-webserver")


def dagster_processes(dagster_home: Path, markers: tuple[bytes, ...]) -> list[tuple[int, list[bytes]]]:
    """Process ids and arguments of the Dagster processes of one kind (`markers`: the module or
    command names that identify it, alone or under `dagster dev`) running on this Dagster home."""
    wanted = str(Path(dagster_home).resolve())
    found = []
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
            if not any(a in markers or a.endswith(tuple(b"/" + m for m in markers)) for a in argv):
                continue
            env = dict(
                item.split(b"=", 1) for item in (proc / "environ").read_bytes().split(b"\0") if b"=" in item
            )
        except OSError:  # gone, or another user's
            continue
        home = env.get(b"DAGSTER_HOME", b"").decode(errors="replace")
        if home and str(Path(home).resolve()) == wanted and int(proc.name) != os.getpid():
            found.append((int(proc.name), argv))
    return found


def running_daemons(dagster_home: Path) -> list[int]:
    """Process ids of Dagster daemons (alone or under `dagster dev`) running on this Dagster home."""
    return [pid for pid, _ in dagster_processes(dagster_home, DAEMON_MARKERS)]


def webserver_ports(dagster_home: Path) -> list[int]:
    """The ports Dagster webservers running on this Dagster home were started on (`--port`/`-p`)."""
    ports = []
    for _, argv in dagster_processes(dagster_home, WEBSERVER_MARKERS):
        for flag, value in pairwise(argv):
            if flag in (b"--port", b"-p") and value.isdigit():
                ports.append(int(value))
    return ports


def require_no_daemon(dagster_home: Path) -> None:
    pids = running_daemons(dagster_home)
    if pids:
        raise CliError(
            f"a Dagster daemon is already running on {dagster_home} (pid {', '.join(map(str, pids))}): "
            "stop it first (Ctrl-C in its terminal), or use another CT_HOME"
        )


def registry(pipeline: str | None) -> Registry:
    config = settings.config()
    return Registry(config.registry, pipeline_spec(pipeline).name, config.audit_home)


def who(args: argparse.Namespace) -> str:

    return args.who or getpass.getuser()


def open_warehouse_read_only() -> Any:
    """The warehouse read-only, or None (with a note) when it is missing or a writer holds it."""
    import duckdb  # 0.3 s to load: only the commands that read the warehouse

    path = settings.config().warehouse
    if not path.exists():
        return None
    try:
        return open_connection(path, read_only=True, retries=10)
    except duckdb.Error as err:
        print(f"ct: warehouse not compared ({err})", file=sys.stderr)
        return None
