"""Stage 6, publish: protected/<build>/ -> an immutable, versioned release (Apache Iceberg, pyiceberg).

Publishing registers the Parquet files the protect stage wrote (``protected/<build>/<TABLE>/``) as
a new snapshot of each table, with no rewrite, tags that snapshot with the release id, and only
then appends one row to the ``library._releases`` table. That row is the atomic "release is
visible" marker: readers resolve a release (or ``latest``) through it, never through a table's
current snapshot, so a crash between two tables leaves the previous release current and the
catalog readable. Re-running a publish finishes what is missing and publishes the release exactly
once. Whether the build may be published at all (its gates passed) is the stage model's decision,
taken before this module is called (:func:`kcure.pipeline.run_stage`).
"""

from __future__ import annotations

import json
import subprocess
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
from kcure.core.staging import staged_inputs
from kcure.core.zones import (
    DICTIONARY,
    LINKAGE_QUALITY,
    LINKAGE_REPORT,
    PRIVACY,
    BuildZones,
    link_or_copy_tree,
    read_json,
    share_with_group,
)

if TYPE_CHECKING:
    from pyiceberg.catalog.sql import SqlCatalog
    from pyiceberg.table import Table

    from kcure.core.config import Config
    from kcure.core.rules import LibraryTable

PROP = "kcure.release"


def _data_files(build_dir: Path, table: str) -> list[str]:
    files = sorted(str(p) for p in (build_dir / table).glob("*.parquet"))
    if not files:
        raise ReleaseError(f"{build_dir / table} holds no Parquet files: nothing to publish for {table}")
    return files


def release_files(cfg: Config, build_dir: Path, table: str, tag: str) -> list[str]:
    """The table's files as the release holds them: in the warehouse, hard links to protected/<build>/
    (no bytes copied; a copy across file systems). The release's group may read them there, while
    protected/ stays its owner's alone."""
    where = cfg.local_path("warehouse") / NAMESPACE / table / "data" / f"release={tag}"
    where.mkdir(parents=True, exist_ok=True)
    out = []
    for f in _data_files(build_dir, table):
        target = where / Path(f).name
        if not target.exists():  # an earlier, interrupted publish may have linked it already
            link_or_copy_tree(Path(f).parent, where, only=Path(f).name)
        out.append(str(target))
    return out


def share_release(cfg: Config) -> None:
    """The warehouse and the catalog readable by the release group; KCURE_HOME traversable to them."""
    group = (cfg.pipeline.get("access") or {}).get("release_group")
    share_with_group(cfg.home, group, tree=False)
    share_with_group(cfg.local_path("warehouse"), group)
    share_with_group(cfg.local_path("catalog").parent, group)


def _publish_table(cat: SqlCatalog, spec: LibraryTable, files: list[str], tag: str) -> int:
    """Register ``files`` as the table's snapshot tagged ``tag`` (once), and return its id."""
    from pyiceberg.expressions import AlwaysTrue

    ident = f"{NAMESPACE}.{spec.name}"
    if cat.table_exists(ident):
        table = _evolve(cat.load_table(ident), spec)
    else:
        table = cat.create_table(ident, schema=table_schema(spec))
    tagged = table.snapshot_by_name(tag)
    if tagged is not None:
        return tagged.snapshot_id
    current = table.current_snapshot()
    done = (
        current is not None and current.summary is not None and current.summary.additional_properties.get(PROP) == tag
    )
    if not done:  # not registered by an earlier, interrupted run
        with table.transaction() as tx:
            if current is not None:
                tx.delete(AlwaysTrue(), snapshot_properties={PROP: tag})
            tx.add_files(files, snapshot_properties={PROP: tag})
        table = cat.load_table(ident)
    snap = table.current_snapshot()
    assert snap is not None
    table.manage_snapshots().create_tag(snap.snapshot_id, tag).commit()
    tagged = cat.load_table(ident).snapshot_by_name(tag)
    if tagged is None:
        raise ReleaseError(f"{ident}: the tag {tag} did not stick (a concurrent writer?); re-run the publish")
    return tagged.snapshot_id


def publish(cfg: Config, build: str, tag: str, manifest: dict[str, Any], *, _crash_after: int | None = None) -> Release:
    """Publish ``protected/<build>`` as release ``tag``: every table, then the marker row, exactly once."""
    cat = open_catalog(cfg)
    for r in list_releases(cat):
        if r.tag == tag:
            if r.build != build:
                raise ReleaseError(f"release {tag} was already published from build {r.build}; releases never change")
            return r  # already published: exactly once
    build_dir = BuildZones(cfg, build).protected
    snapshots: dict[str, int] = {}
    names = [n for n in cfg.library.tables if (build_dir / n).is_dir()]  # a table left out has no folder
    for i, name in enumerate(names):
        files = release_files(cfg, build_dir, name, tag)
        snapshots[name] = _publish_table(cat, cfg.library.tables[name], files, tag)
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
    share_release(cfg)
    return resolve(cat, tag)


def _evolve(table: Table, spec: LibraryTable) -> Table:
    """Make the table's current schema the configured one (columns added, retyped or removed).

    Earlier snapshots keep their own schema, so older releases read back exactly as published.
    """
    have = {f.name: str(f.field_type) for f in table.schema().fields}
    if have == {c.name: c.type for c in spec.columns}:
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


def _code_version() -> str:
    try:
        return subprocess.run(
            ["git", "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
            cwd=Path(__file__).resolve().parent,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def manifest_for(cfg: Config, build: str) -> dict[str, Any]:
    """What a release records besides its tables: code, configuration, inputs, linkage, gates, privacy."""
    z = BuildZones(cfg, build)
    pseudo = read_json(z.summary("pseudonymize")) or {}
    link = read_json(z.summary("link")) or {}
    protect = read_json(z.summary("protect")) or {}
    gates = read_json(z.summary("check")) or {}
    return {
        "code_version": _code_version(),
        "config_digest": cfg.digest,
        # what this build read, recorded when pseudonymize read staging, not what is staged now
        "inputs": pseudo.get("inputs") if "inputs" in pseudo else staged_inputs(cfg),
        # per stage, the feeds whose output this build linked from an earlier build made from the same inputs
        "reused": {
            "pseudonymize": pseudo.get("reused") or {},
            "link": link.get("reused") or {},
            "protect": protect.get("reused") or {},
        },
        "linkage_report": read_json(z.linked / LINKAGE_REPORT),
        "linkage_quality": read_json(z.linked / LINKAGE_QUALITY),
        "data_dictionary": read_json(z.linked / DICTIONARY),
        "empty_tables": link.get("empty") or {},
        "gates": {"success": gates["success"], "seconds": gates["phases"], "checks": gates["checks"]}
        if gates
        else None,
        "privacy": read_json(z.protected / PRIVACY),
    }
