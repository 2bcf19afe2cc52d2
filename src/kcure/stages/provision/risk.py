"""Re-identification risk of one extract, per attacker model (prosecutor: the target is in the cohort).

* **person level**: the attacker knows the target's person-level quasi-identifiers. The candidates
  are the target's equivalence class; the risk is 1 / its size.
* **one event** (one model per kind in ``privacy.yaml`` ``extracts.one_event_models``): the attacker
  also knows the *true* date of one event of the target (its first admission, its death, ...). The
  candidates are the people of the target's class with an event of that kind whose *released* date
  (shifted, at the extract's precision: a day, or a month as the interval of its days) lies within
  ±W days of that true date, W being the largest shift; at day precision, only on the same weekday
  and not on the true date itself, because shifts are whole weeks and never 0. Measuring on the true
  date makes a shift count only for what it hides; uniqueness of the shifted dates among themselves
  would hide the risk. For ``any`` models, a target's risk is its highest over its events.

For each model: the people it applies to, the smallest candidate set, the share of people whose
risk is above 1/k, the share unique, and the average and highest risk (ARX reports prosecutor risk
the same way). Computed in DuckDB over the events collected from Spark (one row per released event
of a modelled kind), with a range join per class.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pandas as pd


@dataclass(frozen=True)
class Thresholds:
    k: int
    max_average_risk: float
    max_unique_share: float


def _summary(risk: pd.Series, candidates: pd.Series, k: int) -> dict[str, Any]:
    n = len(risk)
    if n == 0:
        return {"people": 0, "smallest_candidates": None, "share_above_1_over_k": 0.0, "share_unique": 0.0,
                "average_risk": 0.0, "highest_risk": 0.0}  # fmt: skip
    return {
        "people": n,
        "smallest_candidates": int(candidates.min()),
        "share_above_1_over_k": round(float((risk > 1 / k).mean()), 6),
        "share_unique": round(float((candidates == 1).mean()), 6),
        "average_risk": round(float(risk.mean()), 6),
        "highest_risk": round(float(risk.max()), 6),
    }


def person_level(classes: pd.Series, k: int) -> tuple[dict[str, Any], pd.Series]:
    """``classes``: one class label per person (index: person). Returns the summary and each person's risk."""
    sizes = classes.map(classes.value_counts())
    risk = 1.0 / sizes
    out = _summary(risk, sizes, k)
    out["passed"] = bool(out["people"] == 0 or out["highest_risk"] <= 1 / k + 1e-12)
    out["rule"] = f"highest risk <= 1/{k}"
    return out, risk


def one_event(
    classes: pd.Series, events: pd.DataFrame, window_days: int, t: Thresholds
) -> dict[str, tuple[dict[str, Any], pd.Series]]:
    """Per model: the summary and each person's risk.

    ``events``: columns ``person``, ``model``, ``true_date`` (the event's true day), ``lo`` and ``hi``
    (the first and last day the released value can mean: equal at day precision) and ``weekly`` (the
    released day was shifted by a non-zero whole number of weeks, which the attacker knows too, so only
    a day a multiple of 7 days away from the true date, and not the true date itself, can be the target's).
    """
    import duckdb

    cls = pd.DataFrame({"person": classes.index.astype(str), "cls": classes.astype(str).to_numpy()})
    con = duckdb.connect()
    try:
        con.register("ev_in", events)
        con.register("cls_in", cls)
        rows = con.execute(
            """
            WITH e AS (SELECT ev_in.*, cls_in.cls FROM ev_in JOIN cls_in USING (person)),
            per_event AS (
                SELECT t.model, t.person, t.true_date, count(DISTINCT c.person) AS n
                FROM e AS t JOIN e AS c
                  ON t.model = c.model AND t.cls = c.cls
                 AND c.lo <= t.true_date + CAST(? AS INTEGER) AND c.hi >= t.true_date - CAST(? AS INTEGER)
                 AND (NOT c.weekly OR (date_diff('day', t.true_date, c.lo) % 7 = 0 AND c.lo <> t.true_date))
                GROUP BY ALL
            )
            SELECT model, person, min(n) AS n FROM per_event GROUP BY ALL
            """,
            [window_days, window_days],
        ).df()
    finally:
        con.close()
    out = {}
    groups = dict(tuple(rows.groupby("model", sort=False)))
    # in the events' order (the configuration's): DuckDB's parallel aggregate returns groups in any order
    for model in pd.unique(events["model"]):
        if model not in groups:
            continue
        n = groups[model].set_index("person")["n"].astype("int64")
        risk = 1.0 / n
        s = _summary(risk, n, t.k)
        s["passed"] = bool(
            s["average_risk"] <= t.max_average_risk + 1e-12 and s["share_unique"] <= t.max_unique_share + 1e-12
        )
        s["rule"] = f"average risk <= {t.max_average_risk} and share unique <= {t.max_unique_share}"
        out[str(model)] = (s, risk)
    return out
