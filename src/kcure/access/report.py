"""The HTML release report: one self-contained page for reviewers and operators.

It is written next to the release's Data Docs (``reports/releases/<tag>/index.html``) and carries
inline SVG plots whose marks hold their numbers (``data-value``), so a test or a reader can check
them against the release:

* the cohort (registered cancers) by diagnosis year and by cancer site, and year by site;
* linkage rates by feed and year, from the linkage report;
* the distribution of k-anonymity equivalence-class sizes, with the recoding costs;
* the gates, the inputs, the row counts, and links to the Great Expectations Data Docs.

Counts below ``export.min_cell_count`` are masked in every cohort plot, as in any published aggregate
(a masked cell could still be derived by subtraction from its row's total; the page is for the
review committee inside the closed environment, not for publication). No row-level value appears.
"""

from __future__ import annotations

import html
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kcure.access import query as access
from kcure.core import catalog
from kcure.core.config import Config

# ICD-O-3 topography (3 characters) -> site, for the common sites; others show their code only.
SITE_NAMES = {
    "C16": "stomach",
    "C18": "colon",
    "C19": "rectosigmoid",
    "C20": "rectum",
    "C22": "liver",
    "C23": "gallbladder",
    "C24": "biliary",
    "C25": "pancreas",
    "C15": "oesophagus",
    "C34": "lung",
    "C50": "breast",
    "C53": "cervix",
    "C54": "corpus uteri",
    "C56": "ovary",
    "C61": "prostate",
    "C64": "kidney",
    "C67": "bladder",
    "C71": "brain",
    "C73": "thyroid",
    "C32": "larynx",
    "C42": "haematopoietic",
    "C77": "lymph nodes",
    "C44": "skin",
}
LINKED = ("linked_rrn", "linked_secondary", "linked_via_mid")
TOP_SITES = 12

SITE_SQL = (
    "CASE WHEN TCODE IS NULL OR TCODE = '*' THEN 'suppressed' "
    "WHEN TCODE LIKE '%-%' OR length(TCODE) = 3 THEN TCODE ELSE substr(TCODE, 1, 3) END"
)
YEAR_SQL = "coalesce(CAST(DBYEAR AS VARCHAR), 'suppressed')"


@dataclass
class ReportData:
    """Everything the page shows, computed from the release (kept apart from the HTML for tests)."""

    release: catalog.Release
    by_year: list[tuple[str, int]]
    by_site: list[tuple[str, int]]
    grid_rows: list[str]
    grid_cols: list[str]
    grid: dict[tuple[str, str], int]
    linkage: dict[tuple[str, str], tuple[int, int]]  # (feed, year) -> (linked, linked + unlinked)
    k_distribution: list[tuple[str, int]]


def collect(cfg: Config, tag: str | None = None) -> ReportData:
    cat = catalog.open_catalog(cfg)
    release = catalog.resolve(cat, tag)
    con = access.connect(cfg, release, cat)
    rows = con.sql(f"SELECT {YEAR_SQL} AS y, {SITE_SQL} AS s, count(*) AS n FROM RGST GROUP BY ALL").fetchall()
    by_year_d: dict[str, int] = {}
    by_site_d: dict[str, int] = {}
    grid: dict[tuple[str, str], int] = {}
    for y, s, n in rows:
        by_year_d[y] = by_year_d.get(y, 0) + int(n)
        by_site_d[s] = by_site_d.get(s, 0) + int(n)
        grid[(s, y)] = grid.get((s, y), 0) + int(n)
    by_year = sorted(by_year_d.items(), key=lambda kv: (kv[0] == "suppressed", kv[0]))
    by_site = sorted(by_site_d.items(), key=lambda kv: (-kv[1], kv[0]))
    top = [s for s, _ in by_site[:TOP_SITES]]
    linkage: dict[tuple[str, str], tuple[int, int]] = {}
    for r in release.manifest.get("linkage_report") or []:
        linked = sum(int(r.get(k, 0)) for k in LINKED)
        linkage[(str(r["_feed"]), str(r["_year"]))] = (linked, linked + int(r.get("unlinked", 0)))
    dist = (release.manifest.get("privacy") or {}).get("class_size_distribution") or {}
    return ReportData(
        release=release,
        by_year=by_year,
        by_site=by_site,
        grid_rows=top,
        grid_cols=[y for y, _ in by_year],
        grid=grid,
        linkage=linkage,
        k_distribution=[(str(s), int(n)) for s, n in dist.items()],
    )


def report_path(cfg: Config, tag: str) -> Path:
    return cfg.local_path("reports") / "releases" / tag / "index.html"


def render(cfg: Config, tag: str | None = None) -> Path:
    """Write the release report and return its path (overwrites an earlier rendering of it)."""
    data = collect(cfg, tag)
    path = report_path(cfg, data.release.tag)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(to_html(cfg, data, path.parent), encoding="utf-8")
    os.replace(tmp, path)
    return path


# --- SVG ------------------------------------------------------------------------------------------

E = html.escape


def _fmt(v: float) -> str:
    return f"{v:,.0f}" if float(v).is_integer() else f"{v:,.1f}"


def bar_chart(
    chart_id: str, title: str, items: Sequence[tuple[str, float | None]], *, y_label: str, masked: str = ""
) -> str:
    """Vertical bars; each bar is a ``<g class="mark">`` with ``data-label`` and ``data-value``.

    A value of None is a masked count (a small cell): drawn as a stub, labelled ``masked``, with an
    empty ``data-value``.
    """
    n = max(len(items), 1)
    slot = 46 if n <= 16 else 30
    left, top, plot_h, bottom = 64, 44, 200, 70
    width = left + slot * n + 20
    height = top + plot_h + bottom
    peak = max((v for _, v in items if v is not None), default=0) or 1
    parts = [
        f'<svg class="plot" id="{E(chart_id)}" role="img" aria-label="{E(title)}" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" xmlns="http://www.w3.org/2000/svg">',
        f"<title>{E(title)}</title>",
        f'<text x="{left}" y="18" class="ttl">{E(title)}</text>',
        f'<line x1="{left}" y1="{top + plot_h}" x2="{width - 10}" y2="{top + plot_h}" class="axis"/>',
        f'<text x="14" y="{top + plot_h / 2}" class="ylab" transform="rotate(-90 14 {top + plot_h / 2})">'
        f"{E(y_label)}</text>",
    ]
    for tick in (0.0, 0.5, 1.0):
        y = top + plot_h - tick * plot_h
        t = peak * tick if peak < 4 else round(peak * tick)
        parts.append(f'<text x="{left - 6}" y="{y + 4:.1f}" class="tick" text-anchor="end">{_fmt(t)}</text>')
    for i, (label, value) in enumerate(items):
        h = plot_h * value / peak if value is not None else 2.0
        shown = _fmt(value) if value is not None else masked
        x = left + i * slot + 4
        y = top + plot_h - h
        lx = x + (slot - 8) / 2
        parts.append(
            f'<g class="mark" data-label="{E(label)}" data-value="{"" if value is None else value}">'
            f"<title>{E(label)}: {E(shown)}</title>"
            f'<rect x="{x}" y="{y:.1f}" width="{slot - 8}" height="{max(h, 0.5):.1f}"/>'
            f'<text x="{lx:.1f}" y="{y - 4:.1f}" class="val" text-anchor="middle">{E(shown)}</text>'
            f'<text x="{lx:.1f}" y="{top + plot_h + 14}" class="lab" text-anchor="end" '
            f'transform="rotate(-45 {lx:.1f} {top + plot_h + 14})">{E(label)}</text></g>'
        )
    parts.append("</svg>")
    return "".join(parts)


def heatmap(
    chart_id: str,
    title: str,
    rows: list[str],
    cols: list[str],
    cells: dict[tuple[str, str], float | None],
    *,
    text: dict[tuple[str, str], str],
    row_labels: dict[str, str] | None = None,
) -> str:
    """A grid; each cell is a ``<g class="cell">`` with ``data-row``, ``data-col`` and ``data-value``.

    A value of None is a masked cell (drawn hatched, with its text, for example '<5').
    """
    cw, ch, left, top = 58, 24, 150, 40
    width, height = left + cw * len(cols) + 10, top + ch * len(rows) + 10
    peak = max((v for v in cells.values() if v is not None), default=0) or 1
    parts = [
        f'<svg class="plot" id="{E(chart_id)}" role="img" aria-label="{E(title)}" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" xmlns="http://www.w3.org/2000/svg">',
        f"<title>{E(title)}</title>",
        f'<text x="4" y="16" class="ttl">{E(title)}</text>',
    ]
    for j, c in enumerate(cols):
        parts.append(f'<text x="{left + j * cw + cw / 2}" y="{top - 6}" class="lab" text-anchor="middle">{E(c)}</text>')
    for i, r in enumerate(rows):
        label = (row_labels or {}).get(r, r)
        parts.append(f'<text x="{left - 6}" y="{top + i * ch + 16}" class="lab" text-anchor="end">{E(label)}</text>')
        for j, c in enumerate(cols):
            if (r, c) not in cells:
                continue
            v = cells[(r, c)]
            shade = "masked" if v is None else f"q{min(4, int(4 * v / peak))}"
            value = "" if v is None else f"{v}"
            t = text.get((r, c), "")
            parts.append(
                f'<g class="cell" data-row="{E(r)}" data-col="{E(c)}" data-value="{value}">'
                f"<title>{E(label)}, {E(c)}: {E(t)}</title>"
                f'<rect x="{left + j * cw}" y="{top + i * ch}" width="{cw - 2}" height="{ch - 2}" class="{shade}"/>'
                f'<text x="{left + j * cw + cw / 2 - 1}" y="{top + i * ch + 16}" class="val" '
                f'text-anchor="middle">{E(t)}</text></g>'
            )
    parts.append("</svg>")
    return "".join(parts)


# --- the page ---------------------------------------------------------------------------------------

CSS = """
body{font:14px/1.45 system-ui,sans-serif;margin:2rem auto;max-width:1100px;color:#1b1b1b;padding:0 1rem}
h1{font-size:1.5rem}h2{font-size:1.15rem;margin-top:2rem;border-bottom:1px solid #ddd}
table{border-collapse:collapse;margin:.5rem 0;display:block;overflow-x:auto}
td,th{padding:2px 10px;border-bottom:1px solid #eee;text-align:left}
td.n,th.n{text-align:right;font-variant-numeric:tabular-nums}
.ok{color:#17663a;font-weight:600}.fail{color:#b00020;font-weight:600}.warn{color:#8a5a00;font-weight:600}
svg.plot{display:block;margin:1rem 0;overflow:visible}
svg .ttl{font-weight:600;font-size:13px}svg .lab,svg .tick,svg .ylab{font-size:11px;fill:#444}
svg .val{font-size:10px;fill:#111}svg .axis{stroke:#888}
svg .mark rect{fill:#3b6ea8}svg .q0{fill:#e8f0f8}svg .q1{fill:#c4d8ec}svg .q2{fill:#93b8dc}
svg .q3{fill:#5e93c7}svg .q4{fill:#2f6aa8}svg .masked{fill:#ddd}
.muted{color:#666}
"""


def _table(header: list[str], rows: list[list[Any]], numeric: set[int] | None = None) -> str:
    numeric = numeric or set()
    th = "".join(f'<th class="{"n" if i in numeric else ""}">{E(h)}</th>' for i, h in enumerate(header))
    body = "".join(
        "<tr>"
        + "".join(
            f'<td class="{"n" if i in numeric else ""}">{E(_fmt(v) if isinstance(v, (int, float)) else str(v))}</td>'
            for i, v in enumerate(r)
        )
        + "</tr>"
        for r in rows
    )
    return f"<table><thead><tr>{th}</tr></thead><tbody>{body}</tbody></table>"


def _verdict(check: dict[str, Any]) -> str:
    if check["success"]:
        return "passed"
    return "FAILED" if check.get("severity", "critical") == "critical" else "warning"


def _link(target: Path, base: Path, text: str) -> str:
    return f'<a href="{E(os.path.relpath(target, base))}">{E(text)}</a>'


def _summary(cfg: Config, d: ReportData, base: Path) -> list[str]:
    r, m = d.release, d.release.manifest
    gates = m.get("gates") or {}
    priv = m.get("privacy") or {}
    k = int(priv.get("k") or cfg.privacy.k)
    docs = cfg.local_path("reports") / "releases" / r.build / "data_docs" / "index.html"
    out = [
        "<h2>Summary for the review committee</h2>",
        "<ul>",
        f"<li>Gates: <span class='{'ok' if gates.get('success') else 'fail'}'>"
        f"{'all passed' if gates.get('success') else 'FAILED'}</span> "
        f"({len(gates.get('checks') or [])} checks; " + _link(docs, base, "Great Expectations Data Docs") + ").</li>",
        f"<li>k-anonymity: k = {k}; smallest class {priv.get('min_class_before', '?')} before recoding, "
        f"{priv.get('min_class_after', '?')} after; {priv.get('people_dropped', 0):,} people dropped "
        f"of {priv.get('people', 0):,}.</li>",
    ]
    ld = priv.get("l_diversity") or {}
    if ld:
        cls = "ok" if ld.get("l", 0) >= ld.get("required", 0) else "warn"
        out.append(
            f"<li>l-diversity of {E(str(ld.get('attribute')))}: <span class='{cls}'>l = {ld.get('l')}</span> "
            f"(required {ld.get('required')}, a warning).</li>"
        )
    q = m.get("linkage_quality")
    if q:
        out.append(
            f"<li>Linkage against the synthetic truth: precision {q['precision']:.6f}, recall {q['recall']:.6f}.</li>"
        )
    for table, why in (m.get("empty_tables") or {}).items():
        out.append(f"<li>{E(table)}: {E(why)}.</li>")
    out.append(f"<li>{sum(m['row_counts'].values()):,} rows in {len(m['row_counts'])} tables.</li></ul>")
    return out


def _cohort(cfg: Config, d: ReportData) -> list[str]:
    threshold = cfg.privacy.min_cell_count  # export.min_cell_count: counts of people below it are masked
    site_label = {s: f"{s} {SITE_NAMES[s]}" if s in SITE_NAMES else s for s, _ in d.by_site}

    def small(n: int) -> float | None:
        return None if 0 < n < threshold else float(n)

    grid_cells: dict[tuple[str, str], float | None] = {}
    grid_text: dict[tuple[str, str], str] = {}
    for s in d.grid_rows:
        for y in d.grid_cols:
            n = d.grid.get((s, y), 0)
            grid_cells[(s, y)] = small(n)
            grid_text[(s, y)] = f"{n:,}" if grid_cells[(s, y)] is not None else f"<{threshold}"
    return [
        "<h2>The cohort</h2>",
        bar_chart(
            "cohort-by-year",
            f"Registered cancers by diagnosis year (counts below {threshold} masked)",
            [(y, small(n)) for y, n in d.by_year],
            y_label="cancers",
            masked=f"<{threshold}",
        ),
        bar_chart(
            "cohort-by-site",
            f"Registered cancers by site (ICD-O-3 topography, 3 characters or ICD-10 block; below {threshold} masked)",
            [(site_label[s], small(n)) for s, n in d.by_site],
            y_label="cancers",
            masked=f"<{threshold}",
        ),
        heatmap(
            "cohort-year-site",
            f"Top {len(d.grid_rows)} sites by diagnosis year (counts below {threshold} masked)",
            d.grid_rows,
            d.grid_cols,
            grid_cells,
            text=grid_text,
            row_labels=site_label,
        ),
    ]


def _linkage(d: ReportData) -> list[str]:
    feeds = sorted({f for f, _ in d.linkage})
    years = sorted({y for _, y in d.linkage})
    link_cells: dict[tuple[str, str], float | None] = {}
    link_text: dict[tuple[str, str], str] = {}
    for key, (linked, eligible) in d.linkage.items():
        rate = 100.0 * linked / eligible if eligible else None
        link_cells[key] = None if rate is None else round(rate, 2)
        link_text[key] = "n/a" if rate is None else f"{rate:.1f}%"
    out = [
        "<h2>Linkage</h2>",
        "<p class='muted'>Rate = records linked to a cohort person (by RRN, by secondary key, or through their "
        "claim statement) / (linked + unlinked). Records of people outside the cohort are not in the "
        "denominator.</p>",
        heatmap("linkage-rate", "Linkage rate by feed and year", feeds, years, link_cells, text=link_text),
    ]
    rep = d.release.manifest.get("linkage_report") or []
    if rep:
        sums: dict[str, dict[str, int]] = {}
        for row in rep:
            acc = sums.setdefault(str(row["_feed"]), {})
            for key, v in row.items():
                if not key.startswith("_") and isinstance(v, int):
                    acc[key] = acc.get(key, 0) + v
        cols = list(next(iter(sums.values())))
        rows = [[f, *[s.get(c, 0) for c in cols]] for f, s in sums.items()]
        out.append(_table(["feed", *cols], rows, set(range(1, len(cols) + 1))))
    return out


def _privacy(cfg: Config, d: ReportData) -> list[str]:
    priv = d.release.manifest.get("privacy") or {}
    qis = priv.get("quasi_identifiers") or cfg.privacy.quasi_identifiers
    out = [
        "<h2>Privacy</h2>",
        bar_chart(
            "k-distribution",
            "Equivalence classes by size (quasi-identifiers: " + ", ".join(qis) + ")",
            [(s, float(n)) for s, n in d.k_distribution],
            y_label="classes",
        ),
    ]
    costs = priv.get("costs") or []
    if costs:
        out.append(_table(list(costs[0].keys()), [list(c.values()) for c in costs], set()))
    dropped = priv.get("rows_dropped") or {}
    if dropped:
        out.append(
            f"<p>Rows dropped with dropped people: {E(', '.join(f'{t} {n:,}' for t, n in dropped.items()))}.</p>"
        )
    return out


def _gates_and_tables(d: ReportData) -> list[str]:
    r, m = d.release, d.release.manifest
    gates = m.get("gates") or {}
    checks = gates.get("checks") or []
    rows = [[c["table"], c["check"], c.get("severity", "critical"), _verdict(c), c.get("detail", "")] for c in checks]
    out = ["<h2>Gates</h2>", _table(["table", "check", "severity", "result", "detail"], rows)]
    secs = gates.get("seconds") or {}
    if secs:
        out.append("<p class='muted'>Gate timings: " + E(", ".join(f"{p} {s:.1f}s" for p, s in secs.items())) + "</p>")
    empty = m.get("empty_tables") or {}
    tables = [[t, n, str(r.snapshots.get(t, "")), empty.get(t, "")] for t, n in m["row_counts"].items()]
    out += ["<h2>Tables</h2>", _table(["table", "rows", "snapshot", "note"], tables, {1})]
    return out


def _inputs(cfg: Config, d: ReportData, base: Path) -> list[str]:
    ingest_docs = cfg.local_path("reports") / "ingest" / "data_docs"
    rows = []
    for i in d.release.manifest.get("inputs") or []:
        idx = ingest_docs / i["feed"] / str(i["year"]) / "index.html"
        docs_link = _link(idx, base, "Data Docs") if idx.exists() else ""
        rows.append((i, docs_link))
    return [
        "<h2>Inputs</h2>",
        "<table><thead><tr><th>feed</th><th>year</th><th>delivery</th><th class='n'>delivered</th>"
        "<th class='n'>staged</th><th class='n'>quarantined</th><th>ingest gate</th></tr></thead><tbody>"
        + "".join(
            f"<tr><td>{E(i['feed'])}</td><td>{i['year']}</td><td>{E(str(i['delivery']))}</td>"
            f"<td class='n'>{i['delivered_rows']:,}</td><td class='n'>{i['staged_rows']:,}</td>"
            f"<td class='n'>{i['quarantined_rows']:,}</td><td>{link}</td></tr>"
            for i, link in rows
        )
        + "</tbody></table>",
    ]


def to_html(cfg: Config, d: ReportData, base: Path) -> str:
    r, m = d.release, d.release.manifest
    out: list[str] = [
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>K-CURE library release {E(r.tag)}</title><style>{CSS}</style></head><body>",
        f"<h1>K-CURE library release {E(r.tag)}</h1>",
        "<p>",
        f"Build <b>{E(r.build)}</b>, published {r.created_at:%Y-%m-%d %H:%M:%S} UTC. ",
        f"Code {E(str(m.get('code_version', 'unknown'))[:12])}, "
        f"configuration sha256 {E(str(m.get('config_digest', ''))[:16])}…",
        "</p>",
        *_summary(cfg, d, base),
        *_cohort(cfg, d),
        *_linkage(d),
        *_privacy(cfg, d),
        *_gates_and_tables(d),
        *_inputs(cfg, d, base),
        "<p class='muted'>Generated by <code>kcure report</code>. No row-level value appears on this page.</p>",
        "</body></html>",
    ]
    return "\n".join(out)
