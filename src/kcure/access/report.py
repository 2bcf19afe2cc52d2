"""The HTML release report: one self-contained page for the review committee and operators.

It is written next to the release's Data Docs (``reports/releases/<tag>/index.html``) and carries
inline SVG plots whose marks hold their numbers (``data-value``) and say which figure they show
(``data-key``), so a test or a reader can check them against the release:

* the cohort: registered cancers by diagnosis year and by site, and year by site;
* linkage rates by feed and year;
* k-anonymity: the classes by size, what each recoding step cost, and the attacker knowledge the
  k figure holds against and which it does not;
* the gates, the tables, the inputs, and links to the Great Expectations Data Docs.

Every count on the page is a figure of :mod:`kcure.access.figures`: counts of 1 to
``export.min_cell_count``-1 people are masked, and as many more as it takes so that no masked
figure can be recovered from the others; ``releases show`` and ``diff`` print the same figures.
No row-level value appears.
"""

from __future__ import annotations

import html
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kcure.access import query as access
from kcure.access.figures import ReleaseFigures, release_figures
from kcure.core import catalog
from kcure.core.config import Config
from kcure.core.zones import share_with_group

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


@dataclass
class ReportData:
    """Everything the page shows (kept apart from the HTML for tests)."""

    release: catalog.Release
    figures: ReleaseFigures

    @property
    def years(self) -> list[str]:
        return sorted(self.figures.by_year, key=lambda y: (y == "suppressed", y))

    @property
    def top_sites(self) -> list[str]:
        return list(dict.fromkeys(s for s, _ in self.figures.grid))


def collect(cfg: Config, tag: str | None = None) -> ReportData:
    cat = catalog.open_catalog(cfg)
    release = catalog.resolve(cat, tag)
    with access.open_release(cfg, release, cat) as con:
        return ReportData(release, release_figures(cfg, release, con))


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
    # the report and the release's Data Docs are for the release's readers; the rest of reports/ is not
    group = (cfg.pipeline.get("access") or {}).get("release_group")
    for folder in (cfg.home, cfg.local_path("reports"), path.parent.parent):
        share_with_group(folder, group, tree=False)
    share_with_group(path.parent, group)
    docs = path.parent.parent / data.release.build / "data_docs"
    if docs.is_dir():
        share_with_group(docs.parent, group, tree=False)
        share_with_group(docs, group)
    return path


# --- SVG ------------------------------------------------------------------------------------------

E = html.escape


def _fmt(v: float) -> str:
    return f"{v:,.0f}" if float(v).is_integer() else f"{v:,.1f}"


def bar_chart(
    chart_id: str,
    title: str,
    items: Sequence[tuple[str, float | None]],
    *,
    y_label: str,
    masked: str = "",
    keys: Sequence[str] | None = None,
) -> str:
    """Vertical bars; each bar is a ``<g class="mark">`` with ``data-label``, ``data-value`` and, given
    ``keys``, ``data-key`` (which figure it shows).

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
        key = f' data-key="{E(keys[i])}"' if keys else ""
        parts.append(
            f'<g class="mark" data-label="{E(label)}"{key} data-value="{"" if value is None else value}">'
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
    key_prefix: str | None = None,
) -> str:
    """A grid; each cell is a ``<g class="cell">`` with ``data-row``, ``data-col``, ``data-value`` and, given
    ``key_prefix``, ``data-key`` (``prefix|row|col``).

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
            key = f' data-key="{E(f"{key_prefix}|{r}|{c}")}"' if key_prefix else ""
            parts.append(
                f'<g class="cell" data-row="{E(r)}" data-col="{E(c)}"{key} data-value="{value}">'
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


def _n(value: int | None, t: int) -> str:
    return f"<{t}" if value is None else f"{value:,}"


def _v(value: int | None) -> str:
    """A figure as a data-value: empty where masked."""
    return "" if value is None else str(value)


def _summary(cfg: Config, d: ReportData, base: Path) -> list[str]:
    r, m, f = d.release, d.release.manifest, d.figures
    gates = m.get("gates") or {}
    priv = m.get("privacy") or {}
    t = f.threshold
    docs = cfg.local_path("reports") / "releases" / r.build / "data_docs" / "index.html"
    out = [
        "<h2>Summary for the review committee</h2>",
        "<ul>",
        f"<li>Gates: <span class='{'ok' if gates.get('success') else 'fail'}'>"
        f"{'all passed' if gates.get('success') else 'FAILED'}</span> "
        f"({len(gates.get('checks') or [])} checks; " + _link(docs, base, "Great Expectations Data Docs") + ").</li>",
        f"<li>k-anonymity: k = {priv.get('k', cfg.privacy.k)}; smallest class {_n(f.privacy['min_class_before'], t)} "
        f"before recoding, {priv.get('min_class_after', '?')} after; "
        f"<span data-key='privacy|people_dropped' data-value='{_v(f.privacy.get('people_dropped'))}'>"
        f"{_n(f.privacy.get('people_dropped'), t)}</span> people dropped of {_n(f.privacy.get('people'), t)}.</li>",
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
    out.append(
        f"<li>{len(m['row_counts'])} tables. Counts of 1 to {t - 1} people are shown as &lt;{t}, with as many "
        "others as it takes so that none can be worked out from the rest.</li></ul>"
    )
    return out


def _cohort(d: ReportData) -> list[str]:
    f, t = d.figures, d.figures.threshold
    site_label = {s: f"{s} {SITE_NAMES[s]}" if s in SITE_NAMES else s for s in f.by_site}
    cells = {k: (None if v is None else float(v)) for k, v in f.grid.items()}
    text = {k: _n(v, t) for k, v in f.grid.items()}
    sites = sorted(f.by_site, key=lambda s: (-(f.by_site[s] or 0), s))
    return [
        "<h2>The cohort</h2>",
        bar_chart(
            "cohort-by-year",
            f"Registered cancers by diagnosis year (fewer than {t} people masked)",
            [(y, f.by_year[y]) for y in d.years],
            y_label="cancers",
            masked=f"<{t}",
            keys=[f"year|{y}" for y in d.years],
        ),
        bar_chart(
            "cohort-by-site",
            f"Registered cancers by site (ICD-O-3 topography, 3 characters or ICD-10 block; fewer than {t} people "
            "masked)",
            [(site_label[s], f.by_site[s]) for s in sites],
            y_label="cancers",
            masked=f"<{t}",
            keys=[f"site|{s}" for s in sites],
        ),
        heatmap(
            "cohort-year-site",
            f"Top {len(d.top_sites)} sites by diagnosis year (fewer than {t} people masked)",
            d.top_sites,
            d.years,
            cells,
            text=text,
            row_labels=site_label,
            key_prefix="cell",
        ),
    ]


def _linkage(d: ReportData) -> list[str]:
    f, t = d.figures, d.figures.threshold
    feeds = sorted({k[0] for k in f.rates})
    years = sorted({k[1] for k in f.rates})
    cells: dict[tuple[str, str], float | None] = dict(f.rates)
    text = {k: ("masked" if v is None else f"{v:.1f}%") for k, v in f.rates.items()}
    return [
        "<h2>Linkage</h2>",
        "<p class='muted'>Rate = records linked to a cohort person (by RRN, by secondary key, or through their "
        "claim statement) / (linked + unlinked). Records of people outside the cohort are not in the "
        f"denominator. A rate is masked where fewer than {t} people were linked, or left unlinked.</p>",
        heatmap("linkage-rate", "Linkage rate by feed and year", feeds, years, cells, text=text),
    ]


def _privacy(cfg: Config, d: ReportData) -> list[str]:
    m, f, t = d.release.manifest, d.figures, d.figures.threshold
    priv = m.get("privacy") or {}
    qis = priv.get("quasi_identifiers") or cfg.privacy.quasi_identifiers
    dist = priv.get("class_size_distribution") or {}
    out = [
        "<h2>Privacy</h2>",
        bar_chart(
            "k-distribution",
            "Equivalence classes by size (quasi-identifiers: " + ", ".join(qis) + ")",
            [(str(s), int(n)) for s, n in dist.items()],
            y_label="classes",
        ),
    ]
    threat = priv.get("threat_model") or {}
    if threat:
        out.append("<h3>What k protects against</h3><ul>")
        out += [f"<li>It holds against {E(x)}.</li>" for x in threat.get("holds_against", [])]
        out.append("</ul><h3>What it does not protect against</h3><ul>")
        out += [f"<li>{E(x[0].upper() + x[1:])}.</li>" for x in threat.get("does_not_hold_against", [])]
        out.append("</ul>")
    costs = f.privacy.get("recoded") or []
    if costs:
        rows = [[c["step"], c["column"], c["action"], _n(c["people"], t)] for c in costs]
        out.append(_table(["step", "column", "action", "people"], rows, {3}))
    dropped = f.privacy.get("rows_dropped") or {}
    if dropped:
        out.append(
            f"<p>Rows dropped with dropped people: {E(', '.join(f'{k} {_n(v, t)}' for k, v in dropped.items()))}.</p>"
        )
    return out


def _gates_and_tables(d: ReportData) -> list[str]:
    r, m, f = d.release, d.release.manifest, d.figures
    t = f.threshold
    gates = m.get("gates") or {}
    checks = gates.get("checks") or []
    rows = [[c["table"], c["check"], c.get("severity", "critical"), _verdict(c)] for c in checks]
    out = [
        "<h2>Gates</h2>",
        "<p class='muted'>The checks' details (counts of rows) stay in the custodian's gate result.</p>",
        _table(["table", "check", "severity", "result"], rows),
    ]
    empty = m.get("empty_tables") or {}
    tables = [
        [
            name,
            _n(f.tables.get(name), t),
            _n(f.people.get(name), t),
            str(r.snapshots.get(name, "")),
            empty.get(name, ""),
        ]
        for name in r.snapshots
    ]
    out += ["<h2>Tables</h2>", _table(["table", "rows", "people", "snapshot", "note"], tables, {1, 2})]
    return out


def _inputs(cfg: Config, d: ReportData, base: Path) -> list[str]:
    ingest_docs = cfg.local_path("reports") / "ingest" / "data_docs"
    t = d.figures.threshold
    rows = []
    for i in d.release.manifest.get("inputs") or []:
        idx = ingest_docs / i["feed"] / str(i["year"]) / "index.html"
        docs_link = _link(idx, base, "Data Docs") if idx.exists() else ""
        delivered = d.figures.delivered.get((i["feed"], str(i["year"])))
        rows.append(
            f"<tr><td>{E(i['feed'])}</td><td>{i['year']}</td><td>{E(str(i['delivery']))}</td>"
            f"<td class='n' data-key='delivered|{E(i['feed'])}|{i['year']}' data-value='{_v(delivered)}'>"
            f"{_n(delivered, t)}</td><td>{docs_link}</td></tr>"
        )
    return [
        "<h2>Inputs</h2>",
        "<table><thead><tr><th>feed</th><th>year</th><th>delivery</th><th class='n'>delivered lines</th>"
        "<th>ingest gate</th></tr></thead><tbody>" + "".join(rows) + "</tbody></table>",
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
        *_cohort(d),
        *_linkage(d),
        *_privacy(cfg, d),
        *_gates_and_tables(d),
        *_inputs(cfg, d, base),
        "<p class='muted'>Generated by <code>kcure report</code>. No row-level value appears on this page.</p>",
        "</body></html>",
    ]
    return "\n".join(out)
