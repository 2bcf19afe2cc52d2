"""``kcure diff TAG_A TAG_B``: what changed between two releases.

* schemas: columns added, removed or retyped, from each table's Iceberg schema at the release's
  snapshot;
* row counts per table, and per table and year (the year each table defines in
  ``conf/library.yaml``; claim lines take the year of their statement);
* what the manifests say changed: code version, configuration, input deliveries, privacy metrics.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from kcure.access import query as access
from kcure.core import catalog
from kcure.core.config import Config


@dataclass
class TableDiff:
    name: str
    rows: tuple[int | None, int | None]
    schema: list[str] = field(default_factory=list)  # human-readable changes
    by_year: dict[str, tuple[int, int]] = field(default_factory=dict)  # only years whose count changed

    @property
    def changed(self) -> bool:
        return bool(self.schema or self.by_year or self.rows[0] != self.rows[1])


@dataclass
class ReleaseDiff:
    a: str
    b: str
    tables: list[TableDiff]
    manifest: list[str]

    @property
    def changed(self) -> bool:
        return bool(self.manifest) or any(t.changed for t in self.tables)

    def to_dict(self) -> dict[str, Any]:
        return {
            "a": self.a,
            "b": self.b,
            "manifest": self.manifest,
            "tables": [
                {
                    "table": t.name,
                    "rows": list(t.rows),
                    "schema": t.schema,
                    "by_year": {y: list(v) for y, v in t.by_year.items()},
                }
                for t in self.tables
            ],
        }


def _schema(cat: Any, name: str, release: catalog.Release) -> dict[str, str] | None:
    if name not in release.snapshots:
        return None
    table = cat.load_table(f"{catalog.NAMESPACE}.{name}")
    snap = table.snapshot_by_id(release.snapshots[name])
    schemas = table.schemas()
    schema = schemas.get(snap.schema_id) if snap is not None and snap.schema_id is not None else table.schema()
    assert schema is not None
    return {f.name: str(f.field_type) for f in schema.fields}


def _year_sql(cfg: Config, schema: str, name: str) -> str:
    """Rows per year of one table: its ``year`` expression, or its parent row's (``year: {via: T200}``)."""
    spec = cfg.library.tables.get(name)
    if spec is not None and spec.year_via is not None:
        key = cfg.feeds[spec.source].person_via
        pyear = cfg.library.tables[spec.year_via].year or "NULL"
        return (
            f'SELECT CAST(p._y AS VARCHAR) AS y, count(*) AS n FROM "{schema}".{name} '
            f'LEFT JOIN (SELECT {key}, {pyear} AS _y FROM "{schema}".{spec.year_via}) p USING ({key}) GROUP BY 1'
        )
    expr = spec.year if spec is not None and spec.year else "NULL"
    return f'SELECT CAST({expr} AS VARCHAR) AS y, count(*) AS n FROM "{schema}".{name} GROUP BY 1'


def _manifest_changes(a: dict[str, Any], b: dict[str, Any]) -> list[str]:
    out = []
    if a.get("code_version") != b.get("code_version"):
        out.append(f"code version {str(a.get('code_version'))[:12]} -> {str(b.get('code_version'))[:12]}")
    if a.get("config_digest") != b.get("config_digest"):
        out.append("configuration changed (digest differs)")
    ins_a = {(i["feed"], i["year"]): i for i in a.get("inputs") or []}
    ins_b = {(i["feed"], i["year"]): i for i in b.get("inputs") or []}
    for key in sorted(ins_a.keys() | ins_b.keys()):
        ia, ib = ins_a.get(key), ins_b.get(key)
        label = f"{key[0]} {key[1]}"
        if ia is None and ib is not None:
            out.append(f"input {label}: new ({ib['delivery']}, {ib['staged_rows']:,} staged rows)")
        elif ib is None and ia is not None:
            out.append(f"input {label}: no longer present (was {ia['delivery']})")
        elif (
            ia is not None
            and ib is not None
            and (ia["delivery"], ia["staged_rows"]) != (ib["delivery"], ib["staged_rows"])
        ):
            out.append(
                f"input {label}: {ia['delivery']} ({ia['staged_rows']:,} staged) -> "
                f"{ib['delivery']} ({ib['staged_rows']:,} staged)"
            )
    pa, pb = a.get("privacy") or {}, b.get("privacy") or {}
    for field_name, what in (("min_class_after", "smallest k class"), ("people_dropped", "people dropped for k")):
        if pa.get(field_name) != pb.get(field_name):
            out.append(f"{what}: {pa.get(field_name)} -> {pb.get(field_name)}")
    return out


def diff(cfg: Config, tag_a: str, tag_b: str) -> ReleaseDiff:
    import duckdb

    cat = catalog.open_catalog(cfg)
    ra, rb = catalog.resolve(cat, tag_a), catalog.resolve(cat, tag_b)
    con = access.connect(cfg, ra, cat, schema="a")
    access.connect(cfg, rb, cat, con=con, schema="b")
    tables = []
    names = list(dict.fromkeys([*cfg.library.tables, *ra.snapshots, *rb.snapshots]))
    for name in names:
        sa, sb = _schema(cat, name, ra), _schema(cat, name, rb)
        changes = []
        if sa is None and sb is None:
            continue  # configured, but in neither release
        if sa is not None and sb is not None:
            changes += [f"+ {c} {t}" for c, t in sb.items() if c not in sa]
            changes += [f"- {c} {t}" for c, t in sa.items() if c not in sb]
            changes += [f"~ {c} {sa[c]} -> {sb[c]}" for c in sa if c in sb and sa[c] != sb[c]]
        elif sa is None:
            changes.append("table added")
        else:
            changes.append("table removed")
        rows = (ra.manifest["row_counts"].get(name), rb.manifest["row_counts"].get(name))
        years: dict[str, list[int]] = {}
        for side, (schema, present) in enumerate((("a", sa is not None), ("b", sb is not None))):
            if not present:
                continue
            try:
                counted = con.sql(_year_sql(cfg, schema, name)).fetchall()
            except duckdb.Error:  # the configured year column is not in that release: count the table whole
                counted = con.sql(f"SELECT 'unknown', count(*) FROM \"{schema}\".{name}").fetchall()
            for y, n in counted:
                key = y if y is not None else "unknown"
                years.setdefault(key, [0, 0])[side] += int(n)
        by_year = {y: (v[0], v[1]) for y, v in sorted(years.items()) if v[0] != v[1]}
        tables.append(TableDiff(name, rows, changes, by_year))
    return ReleaseDiff(ra.tag, rb.tag, tables, _manifest_changes(ra.manifest, rb.manifest))


def _delta(a: int | None, b: int | None) -> str:
    if a is None or b is None:
        return ""
    d = b - a
    return f"{d:+,}" + (f" ({100.0 * d / a:+.2f}%)" if a else "")


def describe(d: ReleaseDiff) -> str:
    lines = [f"release {d.a} -> {d.b}"]
    if not d.changed:
        lines.append("no differences: same schemas, same row counts per table and year")
        return "\n".join(lines)
    for m in d.manifest:
        lines.append(f"  {m}")
    lines.append(f"{'table':<7} {d.a:>14} {d.b:>14}  change")
    for t in d.tables:
        a = "-" if t.rows[0] is None else f"{t.rows[0]:,}"
        b = "-" if t.rows[1] is None else f"{t.rows[1]:,}"
        lines.append(f"{t.name:<7} {a:>14} {b:>14}  {_delta(*t.rows) or ('unchanged' if not t.changed else '')}")
        for s in t.schema:
            lines.append(f"          schema {s}")
        for y, (ya, yb) in t.by_year.items():
            lines.append(f"          {y:<8} {ya:>12,} -> {yb:>12,}  {_delta(ya, yb)}")
    return "\n".join(lines)
