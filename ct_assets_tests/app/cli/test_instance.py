"""`ct ui` and `ct recover` on a fresh home: the checks before the UI starts (a busy port, the Dagster
home) and the commands' arguments, and (slow) `ct ui` stopped by SIGTERM or SIGHUP with its whole
`dagster dev` behind it. A recovery tick opens a Dagster instance (seconds on a fresh home), so it
does not run here; the UI refused while a daemon runs on the home is a slow test in `test_errors`."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from ct_assets.app.cli.common import CliError
from ct_assets.app.cli.instance import check_ui_can_start
from ct_assets.lib.core import settings
from ct_assets.lib.core.processes import wait_until_answers
from ct_assets_tests.app.cli.conftest import RunCt, one_line_error
from ct_assets_tests.conftest import free_ports


def test_the_ui_is_refused_a_busy_port_before_anything_is_prepared(home: Path) -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        with pytest.raises(CliError, match=f"port {port} is already in use .*: the Dagster UI not started"):
            check_ui_can_start(port, "the Dagster UI")
    assert not (home / "dagster").exists()


def test_the_ui_may_start_on_a_free_port_of_a_fresh_home(home: Path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    check_ui_can_start(port, "the Dagster UI")  # no daemon runs on this home: no error
    assert (home / "dagster" / "dagster.yaml").read_bytes() == (
        settings.REPO_ROOT / "dagster.yaml"
    ).read_bytes()


def test_the_ui_on_a_dagster_home_that_cannot_be_made(
    run_ct: RunCt, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("DAGSTER_HOME", str(blocker / "dagster"))
    ran = run_ct("ui", "--port", "0")
    assert one_line_error(ran).startswith(f"ct: cannot prepare the Dagster home {blocker / 'dagster'}: ")
    assert ran.code == 1


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["ui", "--port", "web"], "ct ui: argument --port: invalid int value: 'web' (see ct ui --help)"),
        (["recover", "--all"], "ct: unrecognized arguments: --all (see ct --help)"),
    ],
)
def test_arguments_a_user_gets_wrong(run_ct: RunCt, argv: list[str], message: str) -> None:
    ran = run_ct(*argv)
    assert ran.code == 2
    assert one_line_error(ran) == message


@pytest.mark.slow
@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGHUP])
def test_the_ui_stops_its_webserver_and_daemon_on_a_stop_signal(
    home: Path, stop_signal: int, tmp_path: Path
) -> None:
    """`ct ui` stopped by a service manager or a closed terminal leaves no Dagster process behind
    (a daemon left ticking sensors would also refuse the next `ct ui`). Started from the project's
    folder, whose own dagster.yaml is not the instance's, it starts without Dagster's warning."""
    import psutil

    (port,) = free_ports(1)
    output = tmp_path / "ui.log"
    ui = subprocess.Popen(
        [str(Path(sys.executable).parent / "ct"), "ui", "--port", str(port)],
        env=dict(os.environ),
        cwd=settings.REPO_ROOT,
        stdout=output.open("w"),
        stderr=subprocess.STDOUT,
    )
    try:
        wait_until_answers(f"http://127.0.0.1:{port}/server_info", ui, "ct ui", timeout=240, interval=1)
        dagster = psutil.Process(ui.pid).children(recursive=True)
        assert dagster, "dagster dev runs under ct ui"
        ui.send_signal(stop_signal)
        assert ui.wait(timeout=120) == 0
        _, alive = psutil.wait_procs(dagster, timeout=30)
        assert not alive, [p.cmdline() for p in alive]
        assert "Found a dagster instance configuration value" not in output.read_text()
    finally:
        if ui.poll() is None:
            ui.kill()
