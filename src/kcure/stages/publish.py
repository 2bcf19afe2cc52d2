"""Immutable, versioned releases of the library as Apache Iceberg tables (pyiceberg SQL catalog).

Publishing registers the Parquet files the link job wrote (``linked/<build>/<TABLE>/``) as a new
snapshot of each table, with no rewrite, tags that snapshot with the release id, and only then
appends one row to the ``library._releases`` table. That row is the atomic "release is visible"
marker: readers resolve a release (or ``latest``) through it, never through a table's current
snapshot, so a crash between two tables leaves the previous release current and the catalog
readable. Re-running a publish finishes what is missing and publishes the release exactly once.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from kcure.core.catalog import (
    NAMESPACE,
    RELEASES_SCHEMA,
    Release,
    ReleaseError,
    _releases_table,
    list_releases,
    open_catalog,
    resolve,
    table_schema,
)
from kcure.core.config import Config
from kcure.core.staging import staged_inputs

if TYPE_CHECKING:
    from pyiceberg.table import Table

PROP = "kcure.release"


def _data_files(build_dir: Path, table: str) -> list[str]:
    files = sorted(str(p) for p in (build_dir / table).glob("*.parquet"))
    if not files:
        raise ReleaseError(f"{build_dir / table} holds no Parquet files: nothing to publish for {table}")
    return files


def publish(cfg: Config, build: str, tag: str, manifest: dict[str, Any], *, _crash_after: int | None = None) -> Release:
    """Publish ``linked/<build>`` as release ``tag``: every table, then the marker row, exactly once."""
    from pyiceberg.expressions import AlwaysTrue

    cat = open_catalog(cfg)
    for r in list_releases(cat):
        if r.tag == tag:
            if r.build != build:
                raise ReleaseError(f"release {tag} was already published from build {r.build}; releases never change")
            return r  # already published: exactly once
    build_dir = cfg.local_path("linked") / build
    snapshots: dict[str, int] = {}
    for i, (name, spec) in enumerate(cfg.library["tables"].items()):
        ident = f"{NAMESPACE}.{name}"
        if cat.table_exists(ident):
            table = _evolve(cat.load_table(ident), spec)
        else:
            table = cat.create_table(ident, schema=table_schema(spec))
        tagged = table.snapshot_by_name(tag)
        if tagged is None:
            current = table.current_snapshot()
            done = (
                current is not None
                and current.summary is not None
                and current.summary.additional_properties.get(PROP) == tag
            )
            if not done:
                with table.transaction() as tx:
                    if current is not None:
                        tx.delete(AlwaysTrue(), snapshot_properties={PROP: tag})
                    tx.add_files(_data_files(build_dir, name), snapshot_properties={PROP: tag})
                table = cat.load_table(ident)
            snap = table.current_snapshot()
            assert snap is not None
            table.manage_snapshots().create_tag(snap.snapshot_id, tag).commit()
            tagged = cat.load_table(ident).snapshot_by_name(tag)
            if tagged is None:
                raise ReleaseError(f"{ident}: the tag {tag} did not stick (a concurrent writer?); re-run the publish")
        snapshots[name] = tagged.snapshot_id
        if _crash_after is not None and i + 1 >= _crash_after:
            raise ReleaseError(f"injected crash after {i + 1} table(s)")
    rows = {name: _rows(cat.load_table(f"{NAMESPACE}.{name}"), sid) for name, sid in snapshots.items()}
    manifest = {**manifest, "release": tag, "build": build, "row_counts": rows}
    now = datetime.now(UTC)
    manifest["published_at"] = now.isoformat(timespec="seconds")
    marker = pa.Table.from_pylist(
        [
            {
                "release": tag,
                "created_at": now,
                "build": build,
                "snapshots": json.dumps(snapshots),
                "manifest": json.dumps(manifest, default=str),
            }
        ],
        schema=RELEASES_SCHEMA,
    )
    _releases_table(cat).append(marker, snapshot_properties={PROP: tag})
    return resolve(cat, tag)


def _evolve(table: Table, spec: dict[str, Any]) -> Table:
    """Make the table's current schema the configured one (columns added, retyped or removed).

    Earlier snapshots keep their own schema, so older releases read back exactly as published.
    """
    have = {f.name: str(f.field_type) for f in table.schema().fields}
    if have == {c["name"]: c["type"] for c in spec["columns"]}:
        return table
    wanted = table_schema(spec)
    with table.update_schema(allow_incompatible_changes=True) as update:
        for name in have:
            if name not in wanted.names:
                update.delete_column(name)
        update.union_by_name(wanted)
    return table


def _rows(table: Table, snapshot_id: int) -> int:
    snap = table.snapshot_by_id(snapshot_id)
    assert snap is not None and snap.summary is not None
    return int(snap.summary.additional_properties.get("total-records", 0))


def manifest_for(cfg: Config, build: str) -> dict[str, Any]:
    """What a release records besides its tables: code, configuration, inputs, linkage, dictionary."""
    import subprocess

    try:
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
            cwd=Path(__file__).resolve().parent,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        sha = "unknown"
    pseudo = cfg.local_path("reports") / "builds" / build / "pseudonymize.json"
    recorded = json.loads(pseudo.read_text(encoding="utf-8")).get("inputs") if pseudo.exists() else None
    inputs = recorded if recorded is not None else staged_inputs(cfg)
    build_dir = cfg.local_path("linked") / build

    def _load(name: str) -> Any:
        p = build_dir / name
        return json.loads(p.read_text(encoding="utf-8")) if p.exists() else None

    return {
        "code_version": sha,
        "config_digest": cfg.digest,
        "inputs": inputs,
        "linkage_report": _load("_linkage_report.json"),
        "linkage_quality": _load("_linkage_quality.json"),
        "data_dictionary": _load("_dictionary.json"),
        "gates": _load("_gates.json"),
        "privacy": _load("_privacy.json"),
    }
