"""``kcure diff TAG_A TAG_B``: what changed between two releases.

* schemas: columns added, removed or retyped, from each table's Iceberg schema at the release's
  snapshot;
* row counts per table, and per table and year (the year each table defines in
  ``conf/library.yaml``; claim lines take the year of their statement);
* what the manifests say changed: code version, configuration, input deliveries, privacy metrics.

Every count is a protected figure of :func:`kcure.access.figures.release_figures`, the same each
release's report and ``releases show`` print, and a difference is printed only where both sides are
shown: a difference between a shown figure and a masked one would give the masked one away.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from kcure.access import query as access
from kcure.access.figures import ReleaseFigures, release_figures
from kcure.core import catalog
from kcure.core.catalog import Release
from kcure.core.config import Config


@dataclass
class TableDiff:
    name: str
    rows: tuple[int | None, int | None]  # None: masked, or no such table
    schema: list[str] = field(default_factory=list)  # human-readable changes
    by_year: dict[str, tuple[int | None, int | None]] = field(default_factory=dict)  # years whose figure changed

    @property
    def changed(self) -> bool:
        return bool(self.schema or self.by_year or self.rows[0] != self.rows[1])


@dataclass
class ReleaseDiff:
    a: str
    b: str
    threshold: int
    tables: list[TableDiff]
    manifest: list[str]

    @property
    def changed(self) -> bool:
        return bool(self.manifest) or any(t.changed for t in self.tables)

    def to_dict(self) -> dict[str, Any]:
        return {
            "a": self.a,
            "b": self.b,
            "threshold": self.threshold,
            "manifest": self.manifest,
            "tables": [
                {
                    "table": t.name,
                    "rows": list(t.rows),
                    "change": _change(*t.rows),
                    "schema": t.schema,
                    "by_year": {y: {"rows": list(v), "change": _change(*v)} for y, v in t.by_year.items()},
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


def _manifest_changes(a: Release, b: Release, fa: ReleaseFigures, fb: ReleaseFigures) -> list[str]:
    ma, mb = a.manifest, b.manifest
    out = []
    if ma.get("code_version") != mb.get("code_version"):
        out.append(f"code version {str(ma.get('code_version'))[:12]} -> {str(mb.get('code_version'))[:12]}")
    if ma.get("config_digest") != mb.get("config_digest"):
        out.append("configuration changed (digest differs)")
    ins_a = {(i["feed"], str(i["year"])): i for i in ma.get("inputs") or []}
    ins_b = {(i["feed"], str(i["year"])): i for i in mb.get("inputs") or []}
    for key in sorted(ins_a.keys() | ins_b.keys()):
        ia, ib = ins_a.get(key), ins_b.get(key)
        label = f"{key[0]} {key[1]}"
        if ia is None and ib is not None:
            out.append(f"input {label}: new (delivery {ib['delivery']}, {_n(fb.delivered.get(key), fb)} lines)")
        elif ib is None and ia is not None:
            out.append(f"input {label}: no longer present (was delivery {ia['delivery']})")
        elif ia is not None and ib is not None and ia.get("version") != ib.get("version"):
            out.append(
                f"input {label}: delivery {ia['delivery']} ({_n(fa.delivered.get(key), fa)} lines) -> "
                f"delivery {ib['delivery']} ({_n(fb.delivered.get(key), fb)} lines)"
            )
    pa, pb = ma.get("privacy") or {}, mb.get("privacy") or {}
    if pa.get("min_class_after") != pb.get("min_class_after"):
        out.append(f"smallest k class: {pa.get('min_class_after')} -> {pb.get('min_class_after')}")
    if pa.get("people_dropped") != pb.get("people_dropped"):
        da, db = fa.privacy.get("people_dropped"), fb.privacy.get("people_dropped")
        out.append(f"people dropped for k: {_n(da, fa)} -> {_n(db, fb)}")
    return out


def _schema_changes(sa: dict[str, str] | None, sb: dict[str, str] | None) -> list[str]:
    if sa is None:
        return ["table added"]
    if sb is None:
        return ["table removed"]
    changes = [f"+ {c} {t}" for c, t in sb.items() if c not in sa]
    changes += [f"- {c} {t}" for c, t in sa.items() if c not in sb]
    return changes + [f"~ {c} {sa[c]} -> {sb[c]}" for c in sa if c in sb and sa[c] != sb[c]]


def _figures(cfg: Config, cat: Any, release: Release) -> ReleaseFigures:
    with access.open_release(cfg, release, cat) as con:
        return release_figures(cfg, release, con)


def diff(cfg: Config, tag_a: str, tag_b: str) -> ReleaseDiff:
    cat = catalog.open_catalog(cfg)
    ra, rb = catalog.resolve(cat, tag_a), catalog.resolve(cat, tag_b)
    fa, fb = _figures(cfg, cat, ra), _figures(cfg, cat, rb)
    tables = []
    for name in dict.fromkeys([*cfg.library.tables, *ra.snapshots, *rb.snapshots]):
        sa, sb = _schema(cat, name, ra), _schema(cat, name, rb)
        if sa is None and sb is None:
            continue  # configured, but in neither release
        ya, yb = fa.years.get(name, {}), fb.years.get(name, {})
        by_year = {y: (ya.get(y, 0), yb.get(y, 0)) for y in sorted(ya.keys() | yb.keys())}
        changed = {y: v for y, v in by_year.items() if v[0] != v[1]}  # masked on both sides: nothing to say
        rows = (fa.tables.get(name), fb.tables.get(name))
        tables.append(TableDiff(name, rows, _schema_changes(sa, sb), changed))
    return ReleaseDiff(ra.tag, rb.tag, fa.threshold, tables, _manifest_changes(ra, rb, fa, fb))


def _n(value: int | None, f: ReleaseFigures) -> str:
    return f"<{f.threshold}" if value is None else f"{value:,}"


def _change(a: int | None, b: int | None) -> int | None:
    """b - a, only where both figures are shown."""
    return None if a is None or b is None else b - a


def _delta(a: int | None, b: int | None) -> str:
    if a is None or b is None:
        return "masked"
    d = b - a
    return f"{d:+,}" + (f" ({100.0 * d / a:+.2f}%)" if a else "")


def describe(d: ReleaseDiff) -> str:
    lines = [f"release {d.a} -> {d.b}"]
    if not d.changed:
        lines.append("no differences: same schemas, same row counts per table and year")
        return "\n".join(lines)
    lines += [f"  {m}" for m in d.manifest]
    lines.append(f"{'table':<7} {d.a:>14} {d.b:>14}  change   (fewer than {d.threshold} people: <{d.threshold})")

    def n(v: int | None) -> str:
        return f"<{d.threshold}" if v is None else f"{v:,}"

    for t in d.tables:
        change = _delta(*t.rows) if t.changed else "unchanged"
        lines.append(f"{t.name:<7} {n(t.rows[0]):>14} {n(t.rows[1]):>14}  {change}")
        lines += [f"          schema {s}" for s in t.schema]
        lines += [f"          {y:<8} {n(ya):>12} -> {n(yb):>12}  {_delta(ya, yb)}" for y, (ya, yb) in t.by_year.items()]
    return "\n".join(lines)
