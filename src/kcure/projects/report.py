"""What a provisioned project receives beside its extract, and the committee's provisioning report.

* ``dictionary.md``: the extract's tables and columns only, each with its meaning, what the library
  did to it, and what provisioning did (re-keyed, shifted, cut to month);
* ``README.md``: for the analyst: what the extract is, its release, its dates, its rules;
* ``report.html``: for the committee: the same figures with plots, counts of fewer than
  ``export.min_cell_count`` people masked and the rest rounded (:mod:`kcure.core.disclosure`), and
  every attacker model's result.
"""

from __future__ import annotations

import html
from typing import TYPE_CHECKING, Any

from kcure.access.report import CSS, _table, bar_chart
from kcure.core.disclosure import masked_text, protect_mapping

if TYPE_CHECKING:
    from pathlib import Path

    from kcure.core.config import Config
    from kcure.projects.application import Application

E = html.escape


def _treatment(cfg: Config, table: str, column: str, app: Application) -> str:
    spec = next(c for c in cfg.library.table(table).columns if c.name == column)
    if spec.rule == "person_key":
        return "this project's own person key: HMAC under the project's key (joins no other extract)"
    if spec.rule == "substitute":
        return "this project's own substitute key (joins this extract's tables only)"
    dated = spec.type == "date" or spec.rule in ("date_text", "diagnosis_date")
    if dated or (spec.rule == "year" and column == "DBYEAR"):
        how = "shifted by the person's whole-week shift" if app.date_shift else "not shifted"
        cut = "" if spec.rule == "diagnosis_date" or spec.rule == "year" else f", at {app.date_precision} precision"
        fmt = " (text YYYYMM)" if app.date_precision == "month" and spec.rule != "year" else ""
        return f"{how}{cut}{fmt}"
    return ""


def dictionary(cfg: Config, app: Application, columns: dict[str, list[tuple[str, str]]]) -> str:
    lines = [f"# Data dictionary of project {app.project}", ""]
    for name, cols in columns.items():
        spec = cfg.library.table(name)
        lines += [
            f"## {name} ({spec.grain})",
            "",
            "| column | type | meaning | library | this extract |",
            "|---|---|---|---|---|",
        ]
        by_name = {c.name: c for c in spec.columns}
        for col, typ in cols:
            c = by_name[col]
            lines.append(f"| {col} | {typ} | {c.meaning} | {c.generalization} | {_treatment(cfg, name, col, app)} |")
        lines.append("")
    return "\n".join(lines)


def readme(app: Application, manifest: dict[str, Any]) -> str:
    d = manifest["dates"]
    shift = (
        f"Every date of a person is moved by the same number of whole weeks (between -{d['shift_weeks']} and "
        f"{d['shift_weeks']}, never 0, different for each person): weekdays and every interval between one "
        "person's dates are exact, calendar dates are not. Diagnosis month and year are derived from the "
        "shifted dates. Rows are chosen by their true year, so a shifted date can lie a few weeks outside "
        "the years asked for."
        if d["shift"]
        else "Dates are not shifted."
    )
    tables = "\n".join(
        f"- `extract/{t}/`: {v['rows']:,} rows, years {v['years'][0]}-{v['years'][1]}, columns "
        + ", ".join(v["columns"])
        for t, v in manifest["tables"].items()
    )
    return f"""# Project {app.project}: {app.title}

This folder is the extract of release `{manifest["release"]["tag"]}` provisioned for this project
(provision {manifest["provision"]}, {manifest["provisioned_at"]}). Its tables are Parquet files,
readable by any engine, under their library names:

{tables}

`dictionary.md` describes every column; `manifest.json` records the application version, the release's
snapshots, the privacy result and the fingerprint of this project's key.

- **Pseudonyms are this project's own.** `SN_KEY`, `MID`, `YID` and `PRSCP_GRANT_NO` are keyed with a key
  only this project has: they do not match the library's or any other project's, and they stay the same
  for the same person when the project is re-provisioned.
- **Dates**: {d["precision"]} precision. {shift}
- **Recoding**: some people's age band, site or residence class is wider (or `*`) than in other tables of
  the library, so that every person shares them with at least {manifest["privacy"]["k"]} others.
- Results leave only through export review; the extract is deleted when the project closes
  (expires {manifest["application"]["expires"]}).
"""


def _count(n: int, t: int, rounding: int) -> str:
    return masked_text(protect_mapping({"n": n}, {"n": n}, t, rounding)["n"], t)


def render(cfg: Config, manifest: dict[str, Any], out: Path) -> Path:
    """The committee's provisioning report (HTML, one file, small counts masked)."""
    rules = cfg.privacy
    t, rounding = rules.min_cell_count, rules.rounding
    p = manifest["privacy"]
    rows = {n: v["rows"] for n, v in manifest["tables"].items()}
    persons = {n: max(v["persons"], 0) for n, v in manifest["tables"].items() if v["persons"] >= 0}
    shown = protect_mapping(persons, persons, t, rounding)
    models = [("person level", p["person_level"]), *p["one_event"].items()]
    model_rows = [
        [
            name,
            "passed" if s["passed"] else "FAILED",
            _count(s["people"], t, rounding),
            s["smallest_candidates"] if s["smallest_candidates"] is not None else "",
            f"{s['share_above_1_over_k'] * 100:.1f}%",
            f"{s['share_unique'] * 100:.1f}%",
            f"{s['average_risk']:.3f}",
            f"{s['highest_risk']:.3f}",
            s["rule"],
        ]
        for name, s in models
    ]
    dist = p.get("class_size_distribution") or {}
    parts = [
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>Provisioning of {E(manifest['project'])}</title><style>{CSS}</style></head><body>",
        f"<h1>Provisioning of project {E(manifest['project'])}</h1>",
        f"<p>{E(manifest['application']['title'])}. Application v{manifest['application']['version']} "
        f"(sha256 {E(manifest['application']['sha256'][:16])}…), approved by "
        f"{E(', '.join(manifest['application']['approved_by']))}; release {E(manifest['release']['tag'])}; "
        f"provision {manifest['provision']}; project key fingerprint {E(manifest['key_fingerprint'])}.</p>",
        f"<p><b>Privacy gate: {'passed' if p['passed'] else 'FAILED — provisioned under an exception'}</b>. "
        f"Attacker: {E(p['attacker'])}. One-event models compare the true date with released dates within "
        f"±{p['window_days']} days.</p>",
        "<h2>Attacker models</h2>",
        _table(
            [
                "model",
                "result",
                "people",
                "smallest candidate set",
                "risk > 1/k",
                "unique",
                "average risk",
                "highest risk",
                "rule",
            ],
            model_rows,
        ),
        bar_chart(
            "risk",
            "average re-identification risk by model (%)",
            [(n, round(100 * s["average_risk"], 1)) for n, s in models],
            y_label="average risk (%)",
        ),
        "<h2>Classes of the person-level quasi-identifiers</h2>",
        bar_chart("classes", "equivalence classes by size (people)", list(dist.items()), y_label="classes"),
        "<h2>What recoding cost this cohort</h2>",
        _table(
            ["step", "quasi-identifier", "action", "people"],
            [[c["step"], c["column"], c["action"], c["people"]] for c in p["costs"]],
            {3},
        )
        if p["costs"]
        else "<p>None: every class of this cohort already had at least k people.</p>",
        f"<p>{p['people_dropped']} people dropped; {p['never_finer_than_before']['values_coarsened']} values "
        "coarsened to what the project was given before.</p>",
        "<h2>Tables</h2>",
        _table(
            ["table", "years", "rows", "persons"],
            [
                [
                    n,
                    f"{v['years'][0]}-{v['years'][1]}",
                    rows[n],
                    masked_text(shown[n], t) if n in shown else "(via T200)",
                ]
                for n, v in manifest["tables"].items()
            ],
            {2},
        ),
        bar_chart(
            "persons",
            "persons per table (masked below the threshold, rounded)",
            [(n, shown[n]) for n in shown],
            y_label="persons",
            masked=f"<{t}",
        ),
    ]
    if manifest.get("exception"):
        parts.append("<h2>Exception</h2>")
        parts.append(_table(["reviewer", "reason"], [[e["by"], e["note"]] for e in manifest["exception"]]))
    if manifest.get("linkability"):
        parts.append("<h2>Linkability to other extracts through their content</h2>")
        parts.append(
            _table(
                ["other project", "shared people", "linkable by claim pattern", "share"],
                [[x["project"], x["shared"], x["linked"], f"{x['share'] * 100:.1f}%"] for x in manifest["linkability"]],
            )
        )
    parts.append("</body></html>")
    out.write_text("\n".join(parts), encoding="utf-8")
    return out
