"""The Iceberg catalog of the library: where releases are registered and how they are found.

A release is one tagged snapshot of every library table plus one row in ``library._releases``,
the atomic "release is visible" marker (written last by the publish stage). Readers resolve a
release, or ``latest``, through that table only.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from kcure.core.config import Config

if TYPE_CHECKING:
    from pyiceberg.catalog.sql import SqlCatalog
    from pyiceberg.table import Table

    from kcure.core.rules import LibraryTable

NAMESPACE = "library"
RELEASES = f"{NAMESPACE}._releases"
ARROW = {"string": pa.string(), "int": pa.int32(), "long": pa.int64(), "double": pa.float64(), "date": pa.date32()}
RELEASES_SCHEMA = pa.schema(
    [
        ("release", pa.string()),
        ("created_at", pa.timestamp("us", tz="UTC")),
        ("build", pa.string()),
        ("snapshots", pa.string()),
        ("manifest", pa.string()),
    ]
)


class ReleaseError(RuntimeError):
    pass


def open_catalog(cfg: Config) -> SqlCatalog:
    from pyiceberg.catalog.sql import SqlCatalog

    where = cfg.path("catalog")
    uri = where if "://" in where else f"sqlite:///{where}"
    if "://" not in where:
        Path(where).parent.mkdir(parents=True, exist_ok=True)
    warehouse = cfg.path("warehouse")
    if "://" not in warehouse:
        Path(warehouse).mkdir(parents=True, exist_ok=True)
        warehouse = Path(warehouse).as_uri()
    cat = SqlCatalog("kcure", uri=uri, warehouse=warehouse)
    if (NAMESPACE,) not in cat.list_namespaces():
        cat.create_namespace_if_not_exists(NAMESPACE)
    return cat


def table_schema(spec: LibraryTable) -> pa.Schema:
    return pa.schema([pa.field(c.name, ARROW[c.type], nullable=True) for c in spec.columns])


def _releases_table(cat: SqlCatalog) -> Table:
    if not cat.table_exists(RELEASES):
        return cat.create_table(RELEASES, schema=RELEASES_SCHEMA)
    return cat.load_table(RELEASES)


@dataclass
class Release:
    tag: str
    created_at: datetime
    build: str
    snapshots: dict[str, int]
    manifest: dict[str, Any]


def list_releases(cat: SqlCatalog) -> list[Release]:
    if not cat.table_exists(RELEASES):
        return []
    rows = cat.load_table(RELEASES).scan().to_arrow().to_pylist()
    out = [
        Release(r["release"], r["created_at"], r["build"], json.loads(r["snapshots"]), json.loads(r["manifest"]))
        for r in rows
    ]
    return sorted(out, key=lambda r: r.created_at)


def resolve(cat: SqlCatalog, tag: str | None) -> Release:
    releases = list_releases(cat)
    if not releases:
        raise ReleaseError("no release has been published yet")
    if tag in (None, "latest"):
        return releases[-1]
    for r in releases:
        if r.tag == tag:
            return r
    raise ReleaseError(f"no release {tag!r}; known: {', '.join(r.tag for r in releases)}")
