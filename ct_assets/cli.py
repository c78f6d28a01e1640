"""`ct`: the operator's command line (demo, landing demo files, replays, models, serving, the UI).

The commands live by group in `ct_assets/app/cli/`; this module assembles the parser and runs the
chosen command. Every error is one line on stderr with a non-zero exit; `--debug` (anywhere on
the line, or `CT_DEBUG=1`) shows the traceback instead.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import NoReturn

from ct_assets.app.cli import demo, governance, history, instance, models, serving, specs, status
from ct_assets.app.cli.common import CliError, prepared_dagster_home
from ct_assets.lib.core.spec import SpecError
from ct_assets.lib.core.warehouse import WarehouseMissing

GROUPS = (demo, history, specs, status, models, serving, governance, instance)


class _Parser(argparse.ArgumentParser):
    """argparse with a usage error on one line (the usage itself is one `--help` away)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: {message} (see {self.prog} --help)\n")


def parser() -> argparse.ArgumentParser:
    root = _Parser(prog="ct", description=__doc__.splitlines()[0])
    root.add_argument("--debug", action="store_true", help="show the traceback of an error")
    commands = root.add_subparsers(dest="command", required=True)
    for group in GROUPS:
        group.register(commands)
    return root


def _one_line(err: BaseException) -> str:
    text = " ".join(str(err).split()) or type(err).__name__
    return (
        text if isinstance(err, (CliError, SpecError, WarehouseMissing)) else f"{type(err).__name__}: {text}"
    )


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv or os.environ.get("CT_DEBUG") == "1"
    args = parser().parse_args([a for a in argv if a != "--debug"])
    try:
        prepared_dagster_home()  # so the bare `dagster` CLI finds its instance after any `ct` command
        return int(args.run(args))
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader went away (`ct models | head -2`): stop quietly, as a command killed by SIGPIPE
        # would, and keep the interpreter's last flush from complaining about the same pipe.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except Exception as err:
        if debug:
            raise
        print(f"ct: {_one_line(err)}", file=sys.stderr)
        if isinstance(err, CliError):
            return err.code
        return 2 if isinstance(err, SpecError) else 1


if __name__ == "__main__":
    raise SystemExit(main())
