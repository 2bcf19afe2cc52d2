"""Reading a release: its tables as DuckDB views over exactly the data files of its snapshots, always
inside the query sandbox (:mod:`kcure.access.sandbox`)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from kcure.access.sandbox import Limits, TableFiles, connection, run, scrub_environment
from kcure.core.catalog import NAMESPACE, Release, open_catalog, resolve
from kcure.core.config import Config

if TYPE_CHECKING:
    import pyarrow as pa
    from pyiceberg.catalog.sql import SqlCatalog


def read_table(cat: SqlCatalog, release: Release, name: str) -> pa.Table:
    table = cat.load_table(f"{NAMESPACE}.{name}")
    return table.scan(snapshot_id=release.snapshots[name]).to_arrow()


def release_tables(cat: SqlCatalog, release: Release) -> dict[str, TableFiles]:
    """Each table of the release: the data files of its snapshot, and its columns."""
    out = {}
    for name, sid in release.snapshots.items():
        scan = cat.load_table(f"{NAMESPACE}.{name}").scan(snapshot_id=sid)
        files = tuple(t.file.file_path for t in scan.plan_files())
        columns = tuple((f.name, str(f.field_type)) for f in scan.projection().fields)
        out[name] = TableFiles(files, columns)
    return out


def limits(cfg: Config) -> Limits:
    return Limits.from_config(cfg.pipeline.get("query"))


@contextmanager
def open_releases(cfg: Config, releases: dict[str, Release], cat: SqlCatalog | None = None) -> Iterator[Any]:
    """One sandboxed connection over several releases, each in its own schema (``{"a": r1, "b": r2}``)."""
    cat = cat or open_catalog(cfg)
    schemas = {schema: release_tables(cat, r) for schema, r in releases.items()}
    with connection(schemas, limits(cfg)) as con:
        yield con


@contextmanager
def open_release(cfg: Config, release: Release, cat: SqlCatalog | None = None) -> Iterator[Any]:
    """A sandboxed connection with one view per table of ``release``, named as in the catalog."""
    with open_releases(cfg, {"main": release}, cat) as con:
        yield con


@dataclass(frozen=True)
class Result:
    table: pa.Table
    truncated: bool  # the query had more rows than the cap; ``table`` holds the first ones

    @property
    def columns(self) -> list[str]:
        return list(self.table.column_names)

    def fetchall(self) -> list[tuple[Any, ...]]:
        return list(zip(*(c.to_pylist() for c in self.table.columns), strict=True))


def query(cfg: Config, sql: str, tag: str | None = None) -> Result:
    """An analyst's SQL over one release (default: latest), in the sandbox."""
    scrub_environment()  # no secret in this process while a query runs
    cat = open_catalog(cfg)
    with open_release(cfg, resolve(cat, tag), cat) as con:
        return Result(*run(con, sql, limits(cfg)))
