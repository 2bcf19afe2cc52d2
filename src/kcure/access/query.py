"""Analysts' access to a release: DuckDB views over exactly the data files of its snapshots."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pyarrow as pa

from kcure.core.catalog import NAMESPACE, Release, open_catalog, resolve
from kcure.core.config import Config

if TYPE_CHECKING:
    from pyiceberg.catalog.sql import SqlCatalog

#: Iceberg's primitive types as DuckDB's
DUCKDB = {"string": "VARCHAR", "int": "INTEGER", "long": "BIGINT", "double": "DOUBLE", "date": "DATE"}


def read_table(cat: SqlCatalog, release: Release, name: str) -> pa.Table:
    table = cat.load_table(f"{NAMESPACE}.{name}")
    return table.scan(snapshot_id=release.snapshots[name]).to_arrow()


def connect(cfg: Config, release: Release, cat: SqlCatalog | None = None, con: Any = None, schema: str = "main") -> Any:
    """A DuckDB connection with one view per table of ``release`` (in ``schema``), over exactly the
    data files of that release's snapshots, read lazily."""
    import duckdb

    cat = cat or open_catalog(cfg)
    con = con or duckdb.connect()
    if schema != "main":
        con.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
    for name, sid in release.snapshots.items():
        scan = cat.load_table(f"{NAMESPACE}.{name}").scan(snapshot_id=sid)
        files = [t.file.file_path for t in scan.plan_files()]
        if files:
            listing = ", ".join("'" + f.replace("'", "''") + "'" for f in files)
            con.execute(f'CREATE VIEW "{schema}".{name} AS SELECT * FROM read_parquet([{listing}])')
        else:  # a table published empty (nothing of its feed was staged): its columns, no rows
            cols = ", ".join(
                f'CAST(NULL AS {DUCKDB[str(f.field_type)]}) AS "{f.name}"' for f in scan.projection().fields
            )
            con.execute(f'CREATE VIEW "{schema}".{name} AS SELECT {cols} WHERE false')
    return con


def query(cfg: Config, sql: str, tag: str | None = None) -> Any:
    """Run SQL in DuckDB over one release's tables, named as in the catalog (RGST, T200, ...)."""
    cat = open_catalog(cfg)
    return connect(cfg, resolve(cat, tag), cat).sql(sql)
