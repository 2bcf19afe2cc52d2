"""The automatic export checks and the lineage rewrite, on hand-made tables and queries."""

from __future__ import annotations

from typing import Any

import pyarrow as pa
import pytest

from kcure.projects.lineage import CONTRIB, PEOPLE, NoLineage, combined, dominance, parse, profile
from kcure.projects.sdc import Table, Thresholds, check, classify, column_sums, margin_sums

TH = Thresholds(threshold=5, rounding=5, dominance_top=2, dominance_share=0.9)
KEYS = {"sn_key", "mid"}


def _check(rows: list[dict[str, Any]], kinds: dict[str, str], people: list[int] | None = None,
           shares: dict[str, list[float | None]] | None = None, redact: bool = False,
           earlier: list[Any] | None = None) -> tuple[Any, pa.Table | None]:  # fmt: skip
    data = pa.Table.from_pylist(rows)
    kinds = classify(data, kinds, set())
    return check(Table(data, kinds, people or [50] * len(rows), shares or {}), kinds, KEYS, TH, earlier or [], redact)


def _rule(report: Any, name: str) -> Any:
    return next(r for r in report.rules if r.name == name)


def test_counts_are_recognised_by_aggregate_declaration_and_name() -> None:
    data = pa.Table.from_pylist([{"year": 2016, "deaths": 3, "amount": 10, "n_people": 7, "code": 12}])
    kinds = classify(data, {"year": "label", "deaths": "sum", "amount": "sum", "n_people": "label"}, {"code"})
    assert kinds == {"year": "label", "deaths": "count", "amount": "sum", "n_people": "count", "code": "count"}


def test_a_clean_table_passes() -> None:
    report, redacted = _check([{"site": "C16", "n": 40}, {"site": "C18", "n": 0}], {"site": "label", "n": "count"})
    assert report.status == "passed" and redacted is not None and redacted.column("n").to_pylist() == [40, 0]
    assert {r.name: r.status for r in report.rules}["small_cells"] == "passed"


def test_survival_steps_that_lose_one_to_four_people_are_refused_even_with_redact() -> None:
    rows = [{"site": "a", "time": t, "at_risk": r, "events": e} for t, r, e in ((0, 100, 20), (3, 70, 10), (6, 67, 0))]
    report, redacted = _check(rows, {"site": "label", "time": "label", "at_risk": "count", "events": "count"},
                              redact=True)  # fmt: skip
    rule = _rule(report, "survival")
    assert report.status == "refused" and redacted is None and rule.status == "failed"
    assert [(c["row"], c["left_the_risk_set"]) for c in rule.cells] == [(3, 3)]


def test_dominated_amounts_are_flagged_and_suppressed() -> None:
    rows = [{"site": "a", "n": 30, "cost": 1000.0}, {"site": "b", "n": 30, "cost": 900.0}]
    report, redacted = _check(rows, {"site": "label", "n": "count", "cost": "sum"},
                              shares={"cost": [0.95, 0.40]}, redact=True)  # fmt: skip
    assert report.status == "redacted" and [c["row"] for c in _rule(report, "dominance").cells] == [1]
    assert redacted is not None and redacted.column("cost").to_pylist() == [None, 900.0]


def test_a_masked_cell_is_not_left_alone_beside_a_total_column() -> None:
    rows = [{"site": "a", "male": 2, "female": 30, "total": 32}, {"site": "b", "male": 40, "female": 35, "total": 75}]
    kinds = {"site": "label", "male": "count", "female": "count", "total": "count"}
    assert column_sums(rows, ["male", "female", "total"]) == [("total", ("male", "female"))]
    report, redacted = _check(rows, kinds, redact=True)
    assert report.status == "redacted" and redacted is not None
    first = redacted.to_pylist()[0]
    assert first["male"] is None and (first["female"] is None or first["total"] is None)  # a second cell went


def test_margins_come_from_the_structure_even_when_people_overlap() -> None:
    rows = [{"site": "a", "sex": "1", "n": 3}, {"site": "a", "sex": "2", "n": 40}, {"site": "a", "sex": None, "n": 42}]
    assert margin_sums(rows, ["site", "sex"]) == [(2, (0, 1))]  # 3 + 40 != 42: one person has both
    report, redacted = _check(rows, {"site": "label", "sex": "label", "n": "count"}, redact=True)
    assert report.status == "redacted" and redacted is not None and redacted.column("n").to_pylist()[0] is None
    assert sum(v is None for v in redacted.column("n").to_pylist()) >= 2


def test_a_cell_close_to_an_earlier_exports_is_shown_to_the_reviewers() -> None:
    earlier = pa.Table.from_pylist([{"site": "a", "n": 40}, {"site": "b", "n": 50}])
    report, _ = _check([{"site": "a", "n": 42}, {"site": "b", "n": 60}], {"site": "label", "n": "count"},
                       earlier=[("kc20261130010-x001", earlier, {"site": "label", "n": "count"})])  # fmt: skip
    rule = _rule(report, "differencing")
    assert report.status == "passed" and rule.status == "warning" and [c["row"] for c in rule.cells] == [1]


def test_keys_are_refused_and_never_repeated_in_the_report() -> None:
    key = "ab" * 32
    report, _ = _check([{"who": key, "n": 9}], {"who": "label", "n": "count"}, redact=True)
    rule = _rule(report, "keys")
    assert report.status == "refused" and rule.status == "failed" and key not in str(report.to_dict())
    report, _ = _check([{"MID": "x", "n": 9}], {"MID": "label", "n": "count"})
    assert "columns named as keys: MID" in _rule(report, "keys").message


def test_min_and_max_are_never_exported() -> None:
    report, _ = _check([{"site": "a", "oldest": 97}], {"site": "label", "oldest": "extreme"}, redact=True)
    assert report.status == "refused" and _rule(report, "extremes").status == "failed"


def test_the_lineage_rewrite_keeps_the_query_and_adds_people_and_contributions() -> None:
    sql = ("SELECT site, count(*) FILTER (WHERE x > 1) AS n, round(avg(cost) FILTER (WHERE cost > 0), 1) AS c "
           "FROM T200 t JOIN RGST r USING (SN_KEY) GROUP BY site")  # fmt: skip
    query = parse(sql)
    assert [c.kind for c in query.columns] == ["label", "count", "mean"] and query.amounts == [2]
    assert query.candidates == ["t", "r", None]
    plan = query.plan(query.candidates[:2])
    assert plan.sql.startswith('SELECT site, count_star() FILTER (WHERE (x > 1)) AS n, round(avg("cost")')
    assert f"count(DISTINCT t.SN_KEY) AS {PEOPLE}0" in plan.sql and f"count(DISTINCT r.SN_KEY) AS {PEOPLE}1" in plan.sql
    assert f'x := CAST("cost" AS DOUBLE))) FILTER (WHERE ("cost" > 0)) AS {CONTRIB}1_0' in plan.sql


@pytest.mark.parametrize(
    ("sql", "why"),
    [
        ("SELECT AGE, SEX FROM RGST", "row-level data"),
        ("SELECT 1 AS a UNION SELECT 2", "not one SELECT"),
        ("SELECT * FROM RGST GROUP BY ALL", "selects *"),
        ("SELECT AGE, count(*) n FROM (SELECT AGE, MID AS SN_KEY FROM T200 JOIN RGST USING (SN_KEY)) GROUP BY AGE",
         "another column is named SN_KEY"),
        ("SELECT k, count(DISTINCT SN_KEY) n FROM (SELECT a.SN_KEY AS k, b.SN_KEY FROM RGST a, RGST b) GROUP BY k",
         "SN_KEY is renamed"),
        ("SELECT h, count(*) n FROM (SELECT md5(SN_KEY) h FROM RGST) GROUP BY h", "used in an expression"),
        ("SELECT k, count(*) n FROM (SELECT unnest(l) k FROM (SELECT list(SN_KEY) l FROM RGST)) GROUP BY k",
         "used in an expression"),
        ("SELECT x, count(*) n FROM (SELECT MID FROM T200) t(SN_KEY) GROUP BY x", "alias list"),
        ("WITH p(SN_KEY, x) AS (SELECT MID, 1 FROM T200) SELECT x, count(*) n FROM p GROUP BY x", "alias list"),
        ("SELECT AGE, count(*) n FROM (SELECT * REPLACE (MID AS SN_KEY) FROM T200) GROUP BY AGE", "star"),
        ("SELECT AGE, count(*) n FROM (SELECT * RENAME (MID AS SN_KEY) FROM T200) GROUP BY AGE", "star"),
        ("SELECT s, count(*) n FROM (SELECT row_number() OVER (PARTITION BY SN_KEY) s FROM T200) GROUP BY s",
         "used in an expression"),
        ("SELECT k, count(*) n FROM query('SELECT SN_KEY k FROM RGST') q GROUP BY k", "table function query"),
        ("SELECT SEX, count(*) n, max(x) OVER () m FROM RGST GROUP BY SEX", "window"),
        ("SELECT SEX, 0 * count(*) + sum(AMT) s FROM T200 GROUP BY SEX", "several aggregates"),
        ("SELECT SEX, count(*) n, json_group_array(r::varchar) j FROM RGST r GROUP BY SEX", "whole row"),
        ("SELECT k, count(*) n FROM (SELECT struct_extract(r, 'SN_KEY') k FROM RGST r) GROUP BY k", "whole row"),
        ("SELECT g.HEIGHT, count(*) n FROM RGST a, (SELECT HEIGHT FROM G1E ORDER BY HEIGHT DESC LIMIT 5) g GROUP BY 1",
         "a join that does not match SN_KEY"),
        ("SELECT b.AGE, count(*) n FROM RGST a JOIN RGST b ON a.SN_KEY <> b.SN_KEY GROUP BY 1",
         "does not match SN_KEY"),
        ("SELECT AGE, count(*) n FROM RGST NATURAL JOIN G1E GROUP BY 1", "NATURAL"),
        ("SELECT TCODE, count(DISTINCT SN_KEY) AS n, n + 0 AS m FROM RGST GROUP BY 1", "another exported statistic"),
        ("SELECT TCODE, count(*) AS n, 0 AS __kcure_g1 FROM RGST GROUP BY 1", "reserved for the lineage"),
        ("SELECT SEX, regr_avgy(AMT, 1) m FROM T200 GROUP BY 1", None),
        ("SELECT s, count(*) n FROM (SELECT SN_KEY, (SELECT max(HEIGHT) FROM G1E) s FROM RGST) GROUP BY s", "subquery"),
    ],
)  # fmt: skip
def test_queries_without_a_sound_lineage_say_why(sql: str, why: str | None) -> None:
    if why is None:  # parsed, but its column is an extreme (any aggregate not counted, summed or averaged)
        assert [c.kind for c in parse(sql).columns] == ["label", "extreme"]
        return
    with pytest.raises(NoLineage, match=why):
        parse(sql)


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT site, t.years AS time, count(DISTINCT SN_KEY) AS n FROM (SELECT SN_KEY, TCODE AS site FROM RGST) p "
        "CROSS JOIN (VALUES (0), (2)) t(years) GROUP BY site, t.years",
        "SELECT r.SEX, count(DISTINCT r.SN_KEY) n FROM RGST r LEFT JOIN DEATH d USING (SN_KEY) GROUP BY 1",
        "SELECT d.DIV_CD, count(DISTINCT t.SN_KEY) n FROM T200 t JOIN T300 d ON t.MID = d.MID AND d.AMT > 0 GROUP BY 1",
        "SELECT i, count(*) n FROM RGST, range(3) r(i) GROUP BY i",
    ],
)  # fmt: skip
def test_joins_that_keep_each_row_one_persons_are_accepted(sql: str) -> None:
    assert parse(sql).columns


def test_two_amounts_whose_difference_is_one_persons_are_caught() -> None:
    offsets = [{"p": str(i), "x": 1e6 * (-1) ** i} for i in range(40)]
    a = [[{"p": "big", "x": 28_655_140.0}, *offsets]]  # sum(big claim + offset)
    b = [[*offsets]]  # sum(offset)
    assert dominance(a, 2)[0] < 0.9 and dominance(b, 2)[0] < 0.9  # each column alone looks safe
    assert dominance(combined(a, b, -1.0), 2) == [pytest.approx(1.0)]  # a - b is one person's amount
    assert profile([[{"p": "a", "x": 1.0}, {"p": "b", "x": 1.0}, {"p": "c", "x": 1.0}, {"p": "d", "x": 0.0}]], 2) == [
        (pytest.approx(2 / 3), 3)
    ]  # a sum of indicators: 3 people in it, whatever the column is called


def test_an_amount_with_few_people_in_it_is_a_small_cell_and_a_row_of_nobody_is_flagged() -> None:
    data = pa.Table.from_pylist([{"g": "all", "n": 500, "x": 3.0}, {"g": "none", "n": 0, "x": 7.0}])
    kinds = classify(data, {"g": "label", "n": "count", "x": "sum"}, set())
    t = Table(data, kinds, [500, 0], {"x": [0.67, None]}, contributors={"x": [3, 0]})
    report, checked = check(t, kinds, KEYS, TH, [], True)
    assert [c["row"] for c in _rule(report, "small_cells").cells] == [1]
    assert [c["row"] for c in _rule(report, "small_rows").cells] == [2, 2]
    assert checked is not None and checked.column("x").to_pylist() == [None, None]


def test_dominance_sums_each_persons_contributions_first() -> None:
    rows = [[{"p": "a", "x": 50.0}, {"p": "a", "x": 45.0}, {"p": "b", "x": 3.0}, {"p": "c", "x": 2.0}],
            [{"p": str(i), "x": 10.0} for i in range(10)], None]  # fmt: skip
    assert dominance(rows, 2) == [pytest.approx(0.98), pytest.approx(0.2), None]


def test_an_alias_cannot_inject_sql_into_the_lineage() -> None:
    import duckdb

    alias = 'a"") * 0 + 100 AS __kcure_people0 --'
    query = parse(f'SELECT SEX, count(*) AS n FROM RGST AS "{alias}" GROUP BY SEX')
    plan = query.plan([query.candidates[0]])
    con = duckdb.connect()
    con.execute("CREATE TABLE RGST AS SELECT 'k' || (i % 3) AS SN_KEY, '1' AS SEX FROM range(9) t(i)")
    people = con.execute(f"SELECT {PEOPLE}0 FROM ({plan.sql})").fetchall()
    assert people == [(3,)]  # three people, not the 100 the alias tried to write
