"""A throwaway PostgreSQL cluster for Dagster's Postgres instance storage (`dagster.postgres.yaml`).

`postgres_cluster()` runs `initdb` (Debian's postgresql package, under /usr/lib/postgresql/*/bin) in
a temp folder, starts the server on a free loopback port with fsync off, creates a login role and a
database for Dagster, and yields the CT_PG_* variables that `dagster.postgres.yaml` reads. On exit
it stops the server and removes the folder. Postgres refuses to run as root, so as root the cluster
belongs to the `postgres` user. Used by `bench/backfill.py --instance postgres` and by
`ct_assets_tests/test_scale_out.py`.
"""

from __future__ import annotations

import glob
import os
import secrets
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import closing, contextmanager
from pathlib import Path

COMMAND_TIMEOUT_SECONDS = 60


class PostgresUnavailable(RuntimeError):
    """No PostgreSQL server binaries on this machine."""


def postgres_bin() -> Path:
    """The newest installed PostgreSQL's bin folder (the one holding `initdb`)."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if not found:
        raise PostgresUnavailable(
            "no initdb under /usr/lib/postgresql/*/bin: install Debian's postgresql package"
        )
    return Path(found[-1]).parent


def free_loopback_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def postgres_cluster() -> Iterator[dict[str, str]]:
    """A running cluster with a `ct_dagster` login role owning a `ct_dagster` database; yields
    CT_PG_HOST, CT_PG_PORT, CT_PG_USER, CT_PG_PASSWORD and CT_PG_DB."""
    import psycopg2

    pg_bin = postgres_bin()
    as_owner = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    root = Path(tempfile.mkdtemp(prefix="ct-pg-"))
    data = root / "data"
    admin_password, password = secrets.token_hex(16), secrets.token_hex(16)
    (root / "pwfile").write_text(admin_password + "\n")
    if as_owner:
        for path in (root, root / "pwfile"):
            shutil.chown(path, "postgres", "postgres")
    port = free_loopback_port()

    def pg(*command: str) -> None:
        result = subprocess.run(
            [*as_owner, *command], cwd=root, capture_output=True, text=True,
            timeout=COMMAND_TIMEOUT_SECONDS, stdin=subprocess.DEVNULL,
        )  # fmt: skip
        if result.returncode:
            raise RuntimeError(f"{command[0]} failed: {result.stdout[-2000:]}{result.stderr[-2000:]}")

    started = False
    try:
        pg(
            str(pg_bin / "initdb"), "-D", str(data), "-U", "ct_admin", f"--pwfile={root / 'pwfile'}",
            "--auth-local=trust", "--auth-host=scram-sha-256", "-E", "UTF8", "--no-locale", "--no-sync",
        )  # fmt: skip
        pg(
            str(pg_bin / "pg_ctl"), "-D", str(data), "-l", str(root / "postgres.log"), "-w", "-t", "30",
            "-o", f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off", "start",
        )  # fmt: skip
        started = True
        admin = psycopg2.connect(
            host="127.0.0.1", port=port, user="ct_admin", password=admin_password, dbname="postgres"
        )
        admin.autocommit = True
        with closing(admin), admin.cursor() as cur:
            cur.execute("CREATE ROLE ct_dagster LOGIN PASSWORD %s", (password,))
            cur.execute("CREATE DATABASE ct_dagster OWNER ct_dagster")
        yield {
            "CT_PG_HOST": "127.0.0.1",
            "CT_PG_PORT": str(port),
            "CT_PG_USER": "ct_dagster",
            "CT_PG_PASSWORD": password,
            "CT_PG_DB": "ct_dagster",
        }
    finally:
        if started:
            pg(str(pg_bin / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "-t", "30", "stop")
        shutil.rmtree(root, ignore_errors=True)
