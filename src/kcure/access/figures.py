"""The counts a release may show outside the custodian's zone, computed once and protected once.

The release report, ``kcure releases show`` (and ``--json``) and ``kcure diff`` all print the
figures of :func:`release_figures`, never their own, so the same figure is masked the same way
everywhere and no output can be subtracted from another to recover a masked value. Every count is
measured together with the number of distinct people behind it (:mod:`kcure.core.disclosure`):

* cancers by diagnosis year and 3-character site (or ICD-10 block, where k-anonymity widened it),
  with the year and site totals and the whole, as one table with its margins;
* rows of every table, per year (the year ``conf/library.yaml`` gives it) and in all;
* people recoded and dropped by k-anonymity, rows dropped with them;
* delivered lines per input feed-year;
* linkage rates per feed and year, masked where the people linked or left unlinked are few.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from kcure.core.disclosure import Figures, protect, rounded

if TYPE_CHECKING:
    from kcure.core.catalog import Release
    from kcure.core.config import Config

SITE_SQL = (
    "CASE WHEN TCODE IS NULL OR TCODE = '*' THEN 'suppressed' "
    "WHEN TCODE LIKE '%-%' OR length(TCODE) = 3 THEN TCODE ELSE substr(TCODE, 1, 3) END"
)
YEAR_SQL = "coalesce(CAST(DBYEAR AS VARCHAR), 'suppressed')"
TOP_SITES = 12
LINKED = ("linked_rrn", "linked_secondary", "linked_via_mid")


@dataclass
class ReleaseFigures:
    """What may be shown of one release: a number, or None where masked."""

    threshold: int
    by_year: dict[str, int | None] = field(default_factory=dict)  # registered cancers per diagnosis year
    by_site: dict[str, int | None] = field(default_factory=dict)  # ... per site, largest first
    grid: dict[tuple[str, str], int | None] = field(default_factory=dict)  # (site, year), top sites only
    tables: dict[str, int | None] = field(default_factory=dict)  # rows per table
    years: dict[str, dict[str, int | None]] = field(default_factory=dict)  # rows per table and year
    people: dict[str, int | None] = field(default_factory=dict)  # people per table
    privacy: dict[str, Any] = field(default_factory=dict)  # people, dropped, recoded per step, rows dropped
    delivered: dict[tuple[str, str], int | None] = field(default_factory=dict)  # lines per input feed-year
    rates: dict[tuple[str, str], float | None] = field(default_factory=dict)  # linkage rate (%) per feed-year

    def to_dict(self) -> dict[str, Any]:
        return {
            "threshold": self.threshold,
            "cancers_by_year": self.by_year,
            "cancers_by_site": self.by_site,
            "cancers_by_site_and_year": {f"{s}|{y}": v for (s, y), v in self.grid.items()},
            "rows": self.tables,
            "rows_by_year": self.years,
            "people": self.people,
            "privacy": self.privacy,
            "delivered_lines": {f"{f}|{y}": v for (f, y), v in self.delivered.items()},
            "linkage_rate_percent": {f"{f}|{y}": v for (f, y), v in self.rates.items()},
        }


def year_sql(cfg: Config, name: str) -> tuple[str, str]:
    """(FROM clause, year expression) of one table: its ``year``, or its parent row's (``{via: T200}``)."""
    spec = cfg.library.tables.get(name)
    if spec is not None and spec.year_via is not None:
        key = cfg.feeds[spec.source].person_via
        pyear = cfg.library.tables[spec.year_via].year or "NULL"
        parent = f"(SELECT {key}, SN_KEY AS _p, {pyear} AS _y FROM {spec.year_via})"
        return f"{name} LEFT JOIN {parent} p USING ({key})", "p._y"
    return name, (spec.year if spec is not None and spec.year else "NULL")


def _person(con: Any, name: str) -> str:
    return "SN_KEY" if "SN_KEY" in [c[0] for c in con.sql(f"DESCRIBE {name}").fetchall()] else "p._p"


def _cohort(con: Any, f: Figures) -> list[Any]:
    """Cancers per (site, year) with their margins; the keys a report shows."""
    rows = con.sql(
        f"SELECT {SITE_SQL} s, {YEAR_SQL} y, count(*) n, count(DISTINCT SN_KEY) p FROM RGST GROUP BY ALL"
    ).fetchall()
    for s, y, n, p in rows:
        f.add(("cell", s, y), n, p)
    for what, expr in (("year", YEAR_SQL), ("site", SITE_SQL)):
        for k, n, p in con.sql(f"SELECT {expr}, count(*), count(DISTINCT SN_KEY) FROM RGST GROUP BY 1").fetchall():
            f.add((what, k), n, p)
            f.add_sum((what, k), [("cell", s, y) for s, y, *_ in rows if (y if what == "year" else s) == k])
    years = sorted({y for _, y, *_ in rows})
    sites = sorted({s for s, *_ in rows}, key=lambda s: (-f.values[("site", s)], s))
    f.add_sum(("rows", "RGST"), [("year", y) for y in years])
    f.add_sum(("rows", "RGST"), [("site", s) for s in sites])
    top = sites[:TOP_SITES]
    for s in top:  # a site without cancers in a year: a zero the plot shows
        for y in years:
            if ("cell", s, y) not in f.values:
                f.add(("cell", s, y), 0, 0)
    return [*[("year", y) for y in years], *[("site", s) for s in sites], *[("cell", s, y) for s in top for y in years]]


def _table_rows(con: Any, cfg: Config, name: str, f: Figures) -> list[Any]:
    """Rows per year of one table, and in all; the keys shown (RGST's years are the cohort's)."""

    source, year = year_sql(cfg, name)
    who = _person(con, name)
    total, people = con.sql(f"SELECT count(*), count(DISTINCT {who}) FROM {source}").fetchall()[0]
    f.add(("rows", name), total, people)
    if name == "RGST":
        return [("rows", name)]
    rows = con.sql(
        f"SELECT CAST({year} AS VARCHAR), count(*), count(DISTINCT {who}) FROM {source} GROUP BY 1"
    ).fetchall()
    for y, n, p in rows:
        f.add(("row_year", name, y or "unknown"), n, p)
    f.add_sum(("rows", name), [("row_year", name, y or "unknown") for y, *_ in rows])
    return [("rows", name), *[("row_year", name, y or "unknown") for y, *_ in rows]]


def _privacy(manifest: dict[str, Any], threshold: int, rounding: int) -> dict[str, Any]:
    priv = manifest.get("privacy") or {}
    f = Figures()
    dropped = int(priv.get("people_dropped", 0))
    f.add(("people",), int(priv.get("people", 0)))
    f.add(("dropped",), dropped)
    f.add(("smallest",), int(priv.get("min_class_before", 0)))
    for i, c in enumerate(priv.get("costs") or []):
        f.add(("step", i), int(c["people"]))
    for t, n in (priv.get("rows_dropped") or {}).items():
        f.add(("rows", t), int(n), dropped if n else 0)  # rows of the people dropped
    shown = protect(f, threshold, rounding=rounding)
    return {
        "people": shown[("people",)],
        "people_dropped": shown[("dropped",)],
        "min_class_before": shown[("smallest",)],
        "recoded": [{**c, "people": shown[("step", i)]} for i, c in enumerate(priv.get("costs") or [])],
        "rows_dropped": {t: shown[("rows", t)] for t in priv.get("rows_dropped") or {}},
    }


def _rates(manifest: dict[str, Any], threshold: int) -> dict[tuple[str, str], float | None]:
    """Linked / (linked + unlinked) per feed-year, masked where either side is a few people."""
    out: dict[tuple[str, str], float | None] = {}
    for r in manifest.get("linkage_report") or []:
        linked = sum(int(r.get(k, 0)) for k in LINKED)
        eligible = linked + int(r.get("unlinked", 0))
        few = [int(r.get(k, 0)) for k in ("linked_persons", "unlinked_persons")]
        key = (str(r["_feed"]), str(r["_year"]))
        out[key] = None if not eligible or any(0 < n < threshold for n in few) else round(100.0 * linked / eligible, 2)
    return out


def release_figures(cfg: Config, release: Release, con: Any) -> ReleaseFigures:
    """Every count the release may show, protected together (``con``: the release's sandbox)."""
    t = cfg.privacy.min_cell_count
    f = Figures()
    shown = _cohort(con, f)
    for name in release.snapshots:
        shown += _table_rows(con, cfg, name, f)
    people = {name: f.people(("rows", name)) for name in release.snapshots}
    rounding = cfg.privacy.rounding
    protected = protect(f, t, shown, rounding)
    out = ReleaseFigures(t)
    for k, value in protected.items():
        key: tuple[str, ...] = k  # type: ignore[assignment]
        if key[0] == "year":
            out.by_year[key[1]] = value
        elif key[0] == "site":
            out.by_site[key[1]] = value
        elif key[0] == "cell":
            out.grid[(key[1], key[2])] = value
        elif key[0] == "rows":
            out.tables[key[1]] = value
        else:
            out.years.setdefault(key[1], {})[key[2]] = value
    out.years["RGST"] = dict(out.by_year)
    out.people = {n: (None if 0 < p < t else rounded(p, rounding)) for n, p in people.items()}
    out.privacy = _privacy(release.manifest, t, rounding)
    inputs = Figures()
    for i in release.manifest.get("inputs") or []:
        inputs.add((i["feed"], str(i["year"])), int(i["delivered_rows"]))
    out.delivered = {k: v for k, v in protect(inputs, t, rounding=rounding).items()}  # type: ignore[misc]
    out.rates = _rates(release.manifest, t)
    return out


def manifest_view(release: Release, figures: ReleaseFigures) -> dict[str, Any]:
    """The manifest as it may leave the custodian's zone (``kcure releases show --json``): every count a
    protected figure, and what only the custodian needs (row counts per file and per check) left out."""
    m = release.manifest
    priv = m.get("privacy") or {}
    keep = ("k", "quasi_identifiers", "reveals", "threat_model", "min_class_after")
    return {
        "release": release.tag,
        "build": release.build,
        "published_at": m.get("published_at"),
        "code_version": m.get("code_version"),
        "config_digest": m.get("config_digest"),
        "row_counts": figures.tables,
        "people": figures.people,
        "empty_tables": m.get("empty_tables") or {},
        "inputs": [
            {
                "feed": i["feed"],
                "year": i["year"],
                "delivery": i["delivery"],
                "version": i["version"],
                "files": [{"name": f["name"], "sha256": f["sha256"]} for f in i.get("files") or []],
                "delivered_lines": figures.delivered.get((i["feed"], str(i["year"]))),
            }
            for i in m.get("inputs") or []
        ],
        "linkage_rate_percent": {f"{f}|{y}": v for (f, y), v in figures.rates.items()},
        "linkage_quality": {k: (m.get("linkage_quality") or {}).get(k) for k in ("precision", "recall")},
        "gates": {
            "success": (m.get("gates") or {}).get("success"),
            "checks": [
                {k: c.get(k) for k in ("table", "check", "severity", "success")}
                for c in (m.get("gates") or {}).get("checks") or []
            ],
        },
        "privacy": {
            **{k: priv.get(k) for k in keep},
            "class_size_distribution": priv.get("class_size_distribution"),
            "l_diversity": priv.get("l_diversity"),
            **figures.privacy,
        },
        "data_dictionary": m.get("data_dictionary"),
        "figures": figures.to_dict(),
    }
