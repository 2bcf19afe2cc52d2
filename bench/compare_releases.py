"""Are two releases the same library? Every table row for row, the linkage report, privacy and gates.

    .venv/bin/python bench/compare_releases.py HOME_A TAG_A HOME_B TAG_B [--ignore-new-keys]

Used to prove that a change which should not change outputs did not (issue 12: the stage
restructuring, compared at 1% with the code tagged ``pre-stage-model``). Each HOME is a
KCURE_HOME with its own Iceberg catalog. Tables are compared with DuckDB ``EXCEPT ALL`` in both
directions, so duplicates count; the manifests' linkage report, privacy result and gate results
are compared as JSON values. ``--ignore-new-keys``: keys present in B's privacy result only (a
figure B records that A did not) are listed, not counted as differences.

Reads the catalogs with pyiceberg and the data files with DuckDB only, so it does not depend on
either side's code. Exit status 0 when everything is equal.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import duckdb
from pyiceberg.catalog.sql import SqlCatalog


def _release(home: Path, tag: str) -> tuple[SqlCatalog, dict[str, int], dict[str, Any]]:
    cat = SqlCatalog(
        "kcure", uri=f"sqlite:///{home / 'catalog' / 'catalog.db'}", warehouse=(home / "warehouse").as_uri()
    )
    rows = cat.load_table("library._releases").scan().to_arrow().to_pylist()
    marker = next((r for r in rows if r["release"] == tag), None)
    if marker is None:
        raise SystemExit(f"{home}: no release {tag!r}")
    return cat, json.loads(marker["snapshots"]), json.loads(marker["manifest"])


def _view(con: Any, cat: SqlCatalog, schema: str, name: str, snapshot: int) -> None:
    files = [t.file.file_path for t in cat.load_table(f"library.{name}").scan(snapshot_id=snapshot).plan_files()]
    con.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
    if files:
        listing = ", ".join("'" + f.replace("'", "''") + "'" for f in files)
        # the files' own columns only: their folder (release=<tag>) is not a column of the table
        con.execute(
            f'CREATE VIEW "{schema}".{name} AS SELECT * FROM read_parquet([{listing}], hive_partitioning=false)'
        )
    else:
        arrow = cat.load_table(f"library.{name}").scan(snapshot_id=snapshot).to_arrow()
        con.register(f"_{schema}_{name}", arrow)
        con.execute(f'CREATE VIEW "{schema}".{name} AS SELECT * FROM _{schema}_{name}')


def _count(con: Any, sql: str) -> int:
    return int(con.execute(f"SELECT count(*) FROM ({sql})").fetchall()[0][0])


def compare_tables(a: tuple[SqlCatalog, dict[str, int]], b: tuple[SqlCatalog, dict[str, int]]) -> dict[str, Any]:
    con = duckdb.connect()
    out: dict[str, Any] = {}
    for name in sorted(set(a[1]) | set(b[1])):
        if name not in a[1] or name not in b[1]:
            out[name] = {"equal": False, "why": "in one release only"}
            continue
        _view(con, a[0], "a", name, a[1][name])
        _view(con, b[0], "b", name, b[1][name])
        cols_a = [r[0] for r in con.sql(f"DESCRIBE a.{name}").fetchall()]
        cols_b = [r[0] for r in con.sql(f"DESCRIBE b.{name}").fetchall()]
        if cols_a != cols_b:
            out[name] = {"equal": False, "why": f"columns differ: {cols_a} vs {cols_b}"}
            continue
        n_a = _count(con, f"SELECT * FROM a.{name}")
        only_a = _count(con, f"SELECT * FROM a.{name} EXCEPT ALL SELECT * FROM b.{name}")
        only_b = _count(con, f"SELECT * FROM b.{name} EXCEPT ALL SELECT * FROM a.{name}")
        out[name] = {"equal": only_a == only_b == 0, "rows": n_a, "only_in_a": only_a, "only_in_b": only_b}
    return out


def compare_json(a: Any, b: Any, ignore_new_keys: bool) -> tuple[bool, list[str]]:
    """(equal, keys only in B) for two JSON values; with ``ignore_new_keys`` B's extra keys do not count."""
    if not (isinstance(a, dict) and isinstance(b, dict)):
        return a == b, []
    extra = sorted(set(b) - set(a))
    if ignore_new_keys:
        b = {k: v for k, v in b.items() if k not in extra}
    return a == b, extra


def _gates(manifest: dict[str, Any]) -> dict[str, Any]:
    """The gate results without their timings."""
    g = manifest.get("gates") or {}
    return {"success": g.get("success"), "checks": g.get("checks")}


def compare_releases(
    home_a: Path, tag_a: str, home_b: Path, tag_b: str, ignore_new_keys: bool = False
) -> dict[str, Any]:
    """Every table row for row, and the manifests' linkage report, privacy, gates and row counts."""
    cat_a, snaps_a, man_a = _release(home_a, tag_a)
    cat_b, snaps_b, man_b = _release(home_b, tag_b)
    result: dict[str, Any] = {"tables": compare_tables((cat_a, snaps_a), (cat_b, snaps_b))}
    man_a["gates"], man_b["gates"] = _gates(man_a), _gates(man_b)
    for key in ("linkage_report", "privacy", "gates", "row_counts"):
        equal, extra = compare_json(man_a.get(key), man_b.get(key), ignore_new_keys)
        result[key] = {"equal": equal, **({"keys_only_in_b": extra} if extra else {})}
    ok = all(t["equal"] for t in result["tables"].values()) and all(
        result[k]["equal"] for k in ("linkage_report", "privacy", "gates", "row_counts")
    )
    return {"equal": ok, **result}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("home_a", type=Path)
    ap.add_argument("tag_a")
    ap.add_argument("home_b", type=Path)
    ap.add_argument("tag_b")
    ap.add_argument("--ignore-new-keys", action="store_true")
    args = ap.parse_args(argv)
    result = compare_releases(args.home_a, args.tag_a, args.home_b, args.tag_b, args.ignore_new_keys)
    print(json.dumps(result, indent=2))
    return 0 if result["equal"] else 1


if __name__ == "__main__":
    sys.exit(main())
