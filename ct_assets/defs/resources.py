"""Resources: the only way assets reach the world (the warehouse file and the landing folder)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import dagster as dg

from ct_assets.lib import landing, settings
from ct_assets.lib.registry import Registry
from ct_assets.lib.warehouse import open_connection

if TYPE_CHECKING:
    import duckdb

# Assets that write the DuckDB file share this pool; dagster.yaml limits it to one at a time.
WAREHOUSE_POOL = "duckdb_warehouse"


class Warehouse(dg.ConfigurableResource):
    """The DuckDB warehouse file. One writer at a time: every asset using it is in WAREHOUSE_POOL."""

    path: str
    threads: int = 2

    @contextmanager
    def connect(self) -> Iterator[duckdb.DuckDBPyConnection]:
        con = open_connection(self.path, threads=self.threads)
        try:
            yield con
        finally:
            con.close()


class LandingZone(dg.ConfigurableResource):
    """The folder where landing files arrive: `<root>/<pipeline>/<partition_key>.csv|.parquet`."""

    root: str

    def partition_files(self, pipeline: str, partition_key: str) -> list[Path]:
        return landing.partition_files(Path(self.root), pipeline, partition_key)

    def context_file(self, pipeline: str, table: str) -> Path:
        return landing.context_file(Path(self.root), pipeline, table)

    def landed_keys(self, pipeline: str) -> list[str]:
        return landing.landed_partition_keys(Path(self.root), pipeline)


class ModelRegistry(dg.ConfigurableResource):
    """Model versions, datasets, the champion alias and the audit log: one folder per pipeline."""

    root: str

    def for_pipeline(self, pipeline: str) -> Registry:
        return Registry(Path(self.root), pipeline)


def default_resources() -> dict[str, dg.ConfigurableResource]:
    """Resources for the embedded default, located by `ct_assets.lib.settings`."""
    return {
        "warehouse": Warehouse(path=str(settings.warehouse_path())),
        "landing": LandingZone(root=str(settings.landing_root())),
        "registry": ModelRegistry(root=str(settings.registry_root())),
    }


@dg.definitions
def resources() -> dg.Definitions:
    return dg.Definitions(resources=default_resources())
