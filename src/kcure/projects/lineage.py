"""Who is behind each row of an exported table: the audited query, run again with its lineage.

A result leaves only if every row describes enough people and no amount is dominated by one or two
of them. The result file alone cannot say that (thirty claim lines can be one person), but the query
that made it can: this module parses the query (DuckDB's own parser, ``json_serialize_sql``), keeps it
whole, and appends to its select list

* ``count(DISTINCT <person>)``: the people behind each row, and
* for every ``sum``/``avg`` in it, ``list(struct_pack(p := <person>, x := <its argument>))`` under the
  same ``FILTER``: each person's contributions, from which the largest contributors' share follows,

where ``<person>`` is the ``SN_KEY`` visible in the query's outermost ``FROM`` (unqualified, else through
each alias there, first that binds). The rewritten query runs in the same sandbox over the same extract,
so its rows are the result's rows, each with its lineage; the caller checks that the rows agree.

A query that is not one aggregating ``SELECT`` (row-level data, or a ``UNION`` of aggregates) has no
lineage here, and says why.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass, field
from typing import Any

PEOPLE = "__kcure_people"
CONTRIB = "__kcure_c"
RAW = "__kcure_raw"  # the bare aggregate of a statistic column (a count inside arithmetic is checked raw)
GROUPED = "__kcure_g"  # GROUPING() of each GROUP BY expression, under ROLLUP / CUBE / GROUPING SETS
GROUP_KEY = "__kcure_k"  # and its value, as text
KEY = "sn_key"
KEY_COUNTS = {"count", "approx_count_distinct"}  # SN_KEY may be counted, nothing else
COUNTS = {"count", "count_star", "count_if", "countif", "approx_count_distinct", "regr_count"}
ADDITIVE = {"sum", "fsum", "sumkahan", "kahan_sum", "sum_no_overflow"}
AVERAGES = {"avg", "mean", "favg", "decimal_average"}
SPREAD = {"stddev", "stddev_pop", "stddev_samp", "variance", "var_pop", "var_samp"}  # checked as means are
PERSON_JOIN_KEYS = {"sn_key", "mid"}  # an equality on either keeps a row one person's (a claim is one person's)
TABLE_FUNCTIONS = {"range", "generate_series", "unnest"}  # the only table functions a query may call


def aggregates() -> frozenset[str]:
    """Every aggregate function DuckDB has: any of them not counted, summed, averaged or a spread
    (min, max, median, quantiles, mode, first, lists, string_agg, json_group_array, ...) can show one
    person's value, and is an extreme."""
    global _AGGREGATES
    if _AGGREGATES is None:
        import duckdb

        con = duckdb.connect()
        try:
            rows = con.execute("SELECT DISTINCT function_name FROM duckdb_functions() WHERE function_type='aggregate'")
            _AGGREGATES = frozenset(str(r[0]).lower() for r in rows.fetchall()) | COUNTS | ADDITIVE | AVERAGES
        finally:
            con.close()
    return _AGGREGATES


_AGGREGATES: frozenset[str] | None = None


class NoLineage(ValueError):
    """The query has no lineage here; the message says why (one line, no data)."""


@dataclass
class Column:
    """What one output column of the query is."""

    name: str
    kind: str  # label | count | sum | mean (avg, stddev, variance) | extreme (any other aggregate)
    function: str = ""


@dataclass
class Plan:
    sql: str  # the rewritten query
    columns: list[Column]
    amounts: list[int] = field(default_factory=list)  # output positions of sum/avg columns, in order
    persons: int = 1  # person-key candidates: columns PEOPLE<j> and CONTRIB<j>_<slot> for each
    # and RAW<pos> for each statistic column, GROUPED<i> and GROUP_KEY<i> for each group expression
    extras: list[str] = field(default_factory=list)  # the names of the added columns, in order


def _scalar(sql: str, arg: str) -> Any:
    """One value from a connection with no data at all: DuckDB's parser only."""
    import duckdb

    con = duckdb.connect()
    try:
        row = con.execute(sql, [arg]).fetchone()
    finally:
        con.close()
    assert row is not None
    return row[0]


def _serialize(sql: str) -> dict[str, Any]:
    doc = json.loads(_scalar("SELECT json_serialize_sql(?)", sql))
    if doc.get("error"):
        raise NoLineage("the query could not be parsed for its lineage")
    return dict(doc)


def _deserialize(doc: dict[str, Any]) -> str:
    return str(_scalar("SELECT json_deserialize_sql(?)", json.dumps(doc)))


def _aggregate_in(expr: Any) -> dict[str, Any] | None:
    """The first aggregate function in ``expr`` (the item itself, or inside round(), casts, ...)."""
    if isinstance(expr, dict):
        if expr.get("class") == "FUNCTION" and str(expr.get("function_name", "")).lower() in aggregates():
            return expr
        if expr.get("class") == "WINDOW":
            return None
        for v in expr.values():
            found = _aggregate_in(v)
            if found is not None:
                return found
    elif isinstance(expr, list):
        for v in expr:
            found = _aggregate_in(v)
            if found is not None:
                return found
    return None


def _all_aggregates(expr: Any) -> list[str]:
    if isinstance(expr, dict):
        own = [str(expr["function_name"]).lower()] if expr.get("class") == "FUNCTION" and str(
            expr.get("function_name", "")).lower() in aggregates() else []  # fmt: skip
        return own + [a for v in expr.values() for a in _all_aggregates(v)]
    if isinstance(expr, list):
        return [a for v in expr for a in _all_aggregates(v)]
    return []


def _has(expr: Any, cls: str) -> bool:
    if isinstance(expr, dict):
        return expr.get("class") == cls or any(_has(v, cls) for v in expr.values())
    if isinstance(expr, list):
        return any(_has(v, cls) for v in expr)
    return False


def _kind(item: dict[str, Any]) -> tuple[str, str]:
    """What an output column is. One aggregate per column, and no window or subquery: otherwise a
    column could hide a count behind another statistic, or rows behind a window."""
    found = _all_aggregates(item)  # a window or subquery in it is refused by guard(), at every level
    if not found:
        return "label", ""
    if len(found) > 1:
        raise NoLineage("an exported column combines several aggregates: one per column (avg() for a mean)")
    name = found[0]
    for kind, names in (("count", COUNTS), ("sum", ADDITIVE), ("mean", AVERAGES | SPREAD)):
        if name in names:
            return kind, name
    return "extreme", name


def _aliases(table: Any) -> list[str]:
    """The names the outermost FROM gives its tables and subqueries, left to right."""
    if not isinstance(table, dict):
        return []
    kind = table.get("type")
    if kind == "JOIN":
        return _aliases(table.get("left")) + _aliases(table.get("right"))
    if kind == "BASE_TABLE":
        return [table.get("alias") or table.get("table_name", "")]
    return [table["alias"]] if table.get("alias") else []


def _refs(expr: Any) -> set[str]:
    """The one-part column names ``expr`` refers to."""
    if isinstance(expr, dict):
        own = {str(expr["column_names"][0]).lower()} if expr.get("class") == "COLUMN_REF" and len(
            expr.get("column_names") or []) == 1 else set()  # fmt: skip
        return own.union(*(_refs(v) for v in expr.values()))
    if isinstance(expr, list):
        return set().union(*(_refs(v) for v in expr))
    return set()


def _relations(node: Any) -> set[str]:
    """Every name a relation has anywhere in the query (tables, aliases, CTEs): a column reference that
    is one of them alone is a whole row, a struct of every column."""
    out: set[str] = set()
    if isinstance(node, dict):
        is_table_ref = "class" not in node and node.get("type") in ("BASE_TABLE", "SUBQUERY", "TABLE_FUNCTION", "JOIN")
        if is_table_ref:
            out |= {str(node.get(k) or "").lower() for k in ("alias", "table_name")} - {""}
        for entry in (node.get("cte_map") or {}).get("map") or []:
            out.add(str(entry.get("key", "")).lower())
        for v in node.values():
            out |= _relations(v)
    elif isinstance(node, list):
        for v in node:
            out |= _relations(v)
    return out


def _replace(expr: Any, marker: str, by: dict[str, Any]) -> Any:
    if isinstance(expr, dict):
        if expr.get("class") == "COLUMN_REF" and expr.get("column_names") == [marker]:
            return copy.deepcopy(by)
        return {k: _replace(v, marker, by) for k, v in expr.items()}
    if isinstance(expr, list):
        return [_replace(v, marker, by) for v in expr]
    return expr


def _colref(names: list[str]) -> dict[str, Any]:
    return {"class": "COLUMN_REF", "type": "COLUMN_REF", "alias": "", "query_location": 0,
            "query_location_length": 0, "column_names": names}  # fmt: skip


def _items(sql: str) -> list[dict[str, Any]]:
    return list(_serialize(sql)["statements"][0]["node"]["select_list"])


def _is_key(e: Any) -> bool:
    return isinstance(e, dict) and e.get("class") == "COLUMN_REF" and str(e["column_names"][-1]).lower() == KEY


def _mentions_key(e: Any) -> bool:
    """Whether ``e`` uses the person key other than inside count(...) (a scalar subquery counts)."""
    if _is_key(e):
        return True
    if isinstance(e, dict):
        if e.get("class") == "FUNCTION" and str(e.get("function_name", "")).lower() in KEY_COUNTS:
            return False
        return any(_mentions_key(v) for v in e.values())
    if isinstance(e, list):
        return any(_mentions_key(v) for v in e)
    return False


def _item_problem(item: dict[str, Any]) -> str | None:
    alias = str(item.get("alias") or "").lower()
    if _is_key(item):
        return None if alias in ("", KEY) else "SN_KEY is renamed"
    if item.get("class") == "STAR":
        renamed = [str(r.get("value", "")).lower() for r in item.get("rename_list") or []]
        replaced = [str(r.get("key", "")).lower() for r in item.get("replace_list") or []]
        if KEY in renamed + replaced or item.get("columns") or item.get("expr"):
            return "a star expression renames or selects columns by pattern"
        return None
    if alias == KEY:
        return "another column is named SN_KEY"
    if _mentions_key(item):
        return "SN_KEY is used in an expression (only as itself, or inside count)"
    return None


def _join_keys(cond: Any) -> set[str]:
    """The person-preserving keys a join condition equates (``a.SN_KEY = b.SN_KEY``, ``a.MID = b.MID``),
    under ANDs only."""
    if not isinstance(cond, dict):
        return set()
    if cond.get("type") == "CONJUNCTION_AND":
        return {k for c in cond.get("children") or [] for k in _join_keys(c)}
    if cond.get("type") == "COMPARE_EQUAL":
        sides = [cond.get("left"), cond.get("right")]
        names = {
            str(x["column_names"][-1]).lower() for x in sides if isinstance(x, dict) and x.get("class") == "COLUMN_REF"
        }
        return names & PERSON_JOIN_KEYS if len(names) == 1 and all(
            isinstance(x, dict) and x.get("class") == "COLUMN_REF" for x in sides) else set()  # fmt: skip
    return set()


def _constant(table: dict[str, Any]) -> bool:
    """A FROM item that holds no person's data: VALUES, range(), generate_series()."""
    if table.get("type") == "EXPRESSION_LIST":
        return True
    if table.get("type") == "TABLE_FUNCTION":
        fn = table.get("function") or {}
        return str(fn.get("function_name", "")).lower() in ("range", "generate_series") and not _has(fn, "COLUMN_REF")
    if table.get("type") == "SUBQUERY":
        inner = ((table.get("subquery") or {}).get("node")) or {}
        return inner.get("type") == "SELECT_NODE" and inner.get("from_table", {}).get("type") == "EXPRESSION_LIST"
    return False


def _from_problem(table: Any) -> str | None:
    """Every join of two FROM items that hold people's data must keep each row one person's: ON an
    equality of SN_KEY (or of MID, a claim being one person's), or USING one of them. A cross join with
    VALUES or range() is fine; a cross join of two people's data would let one person's values be counted
    as everyone's."""
    if not isinstance(table, dict) or table.get("type") != "JOIN":
        return None
    for side in ("left", "right"):
        problem = _from_problem(table.get(side))
        if problem:
            return problem
    if _constant(table.get("left") or {}) or _constant(table.get("right") or {}):
        return None
    using = {str(c).lower() for c in table.get("using_columns") or []}
    if using & PERSON_JOIN_KEYS or _join_keys(table.get("condition")):
        return None
    if str(table.get("ref_type", "")).upper() == "NATURAL":
        return "a NATURAL join (name the key: USING (SN_KEY) or USING (MID))"
    return "a join that does not match SN_KEY (or MID) between two tables of people's data"


def _select_problem(node: dict[str, Any]) -> str | None:
    for item in node.get("select_list") or []:
        problem = _item_problem(item)
        if problem:
            return problem
        if str(item.get("alias") or "").lower().startswith("__kcure"):
            return "a column named __kcure... (reserved for the lineage)"
        if _has(item, "WINDOW") or _has(item, "SUBQUERY"):
            return "a window or a subquery computes a value"
    if node.get("type") == "SELECT_NODE":
        if node.get("qualify"):
            return "QUALIFY"
        return _from_problem(node.get("from_table"))
    return None


def _node_problem(node: dict[str, Any], relations: set[str]) -> str | None:
    problem = _select_problem(node)
    if problem:
        return problem
    names = [*(node.get("column_name_alias") or []), *(node.get("aliases") or [])]
    if any(str(n).lower() == KEY for n in names):
        return "a column alias list names a column SN_KEY"
    if node.get("type") in ("PIVOT", "UNPIVOT"):
        return "PIVOT/UNPIVOT"
    if node.get("type") == "TABLE_FUNCTION":
        name = str((node.get("function") or {}).get("function_name", "")).lower()
        if name not in TABLE_FUNCTIONS:
            return f"the table function {name[:40]} (only the extract's tables, range and unnest)"
    if node.get("class") == "COLUMN_REF" and len(node.get("column_names") or []) == 1 \
            and str(node["column_names"][0]).lower() in relations:  # fmt: skip
        return "a whole row is used as a value"
    if node.get("class") == "FUNCTION" and any(
        isinstance(a, dict) and (a.get("expression") or a).get("class") == "STAR" for a in node.get("arguments") or []
    ):
        return "a star inside a function"
    return None


def guard(node: Any, relations: set[str] | None = None) -> None:
    """Refuse a query in which the people behind a row could be miscounted: ``SN_KEY`` renamed,
    computed on, aggregated but by count, or another column given its name, in any SELECT of it
    (subqueries and CTEs too); a whole row used as a value; a table function other than range or
    unnest (``query()`` runs SQL this check cannot see)."""
    if relations is None:
        relations = _relations(node)
    if isinstance(node, list):
        for v in node:
            guard(v, relations)
        return
    if not isinstance(node, dict):
        return
    problem = _node_problem(node, relations)
    if problem:
        raise NoLineage(f"{problem}: the people behind each row cannot be counted")
    for v in node.values():
        guard(v, relations)


@dataclass
class Query:
    """An aggregating query, parsed: what its columns are, and where a person key may come from."""

    doc: dict[str, Any]
    columns: list[Column]
    amounts: list[int]
    candidates: list[str | None]  # each alias of the outer FROM, then None (SN_KEY unqualified)

    @property
    def node(self) -> dict[str, Any]:
        return dict(self.doc["statements"][0]["node"])

    def plan(self, persons: list[str | None]) -> Plan:
        """The query with, for each of ``persons``, a people count and the amounts' contributions; the
        raw aggregate of each statistic; and, under grouping sets, each group expression's GROUPING()."""
        node = self.node
        items = node["select_list"]
        extra: list[dict[str, Any]] = []
        for j, person in enumerate(persons):
            ref = _colref([person, "SN_KEY"] if person else ["SN_KEY"])
            counted = _items(f"SELECT count(DISTINCT __kcure_person) AS {PEOPLE}{j}")
            extra += [_replace(i, "__kcure_person", ref) for i in counted]
            for slot, pos in enumerate(self.amounts):
                agg = _aggregate_in(items[pos])
                assert agg is not None
                arg = (agg.get("arguments") or [{}])[0]
                arg = arg.get("expression", arg) if isinstance(arg, dict) else arg
                sql = (
                    f"SELECT list(struct_pack(p := __kcure_person, x := CAST(__kcure_arg AS DOUBLE))) "
                    f"AS {CONTRIB}{j}_{slot}"
                )
                item = _replace(_replace(_items(sql)[0], "__kcure_person", ref), "__kcure_arg", arg)
                inner = _aggregate_in(item)
                assert inner is not None
                inner["filter"] = copy.deepcopy(agg.get("filter"))
                extra.append(item)
        for pos, column in enumerate(self.columns):
            if column.kind != "label":
                raw = copy.deepcopy(_aggregate_in(items[pos]))
                assert raw is not None
                extra.append({**raw, "alias": f"{RAW}{pos}"})
        if len(node.get("group_sets") or []) > 1:
            for i, expr in enumerate(node.get("group_expressions") or []):
                sql = f"SELECT grouping(__kcure_g) AS {GROUPED}{i}, CAST(__kcure_g AS VARCHAR) AS {GROUP_KEY}{i}"
                extra += [_replace(it, "__kcure_g", expr) for it in _items(sql)]
        new = copy.deepcopy(self.doc)
        new["statements"][0]["node"]["select_list"] = [*items, *extra]
        names = [str(i["alias"]) for i in extra]
        return Plan(_deserialize(new), self.columns, self.amounts, len(persons), names)


def parse(sql: str) -> Query:
    """The query's shape; NoLineage when it is not one aggregating SELECT whose people can be counted."""
    doc = _serialize(sql)
    statements = doc.get("statements") or []
    if len(statements) != 1:
        raise NoLineage("one statement per query")
    node = statements[0]["node"]
    if node.get("type") != "SELECT_NODE":
        raise NoLineage("the query is not one SELECT ... GROUP BY (a UNION or VALUES has no lineage here)")
    items = node.get("select_list") or []
    if any(i.get("class") == "STAR" for i in items):
        raise NoLineage("the query selects *: name each column it exports")
    columns = []
    for n, item in enumerate(items):
        kind, fn = _kind(item)
        columns.append(Column(str(item.get("alias") or f"#{n + 1}"), kind, fn))
    if not (node.get("group_expressions") or any(c.kind != "label" for c in columns)):
        raise NoLineage("row-level data: the query does not aggregate (GROUP BY, count, sum, ...)")
    stats = {str(i.get("alias") or "").lower() for i, c in zip(items, columns, strict=True) if c.kind != "label"} - {""}
    for item in items:
        own = str(item.get("alias") or "").lower()
        if _refs(item) & (stats - {own}):
            raise NoLineage("an exported column refers to another exported statistic by its name: compute it again")
    guard(doc["statements"])
    amounts = [n for n, c in enumerate(columns) if c.kind in ("sum", "mean")]
    return Query(doc, columns, amounts, [*(a for a in _aliases(node.get("from_table")) if a), None])


def dominance(contributions: list[list[dict[str, Any]] | None], top: int) -> list[float | None]:
    """For each row: the largest share of its amount that ``top`` people hold, each person's contributions
    summed first, taken on the positive and the negative contributions apart (offsetting amounts cannot
    hide a dominant one); None where the row has no amount."""
    return [share for share, _ in profile(contributions, top)]


def profile(contributions: list[list[dict[str, Any]] | None], top: int) -> list[tuple[float | None, int]]:
    """For each row: (the dominance share, the number of people whose contributions do not sum to 0).
    The second is a count however the amount is written (``sum(CASE ... THEN 1 ELSE 0 END)``)."""
    out: list[tuple[float | None, int]] = []
    for row in contributions:
        per: dict[Any, float] = {}
        for c in row or []:
            if c is None or c.get("x") is None:
                continue
            per[c["p"]] = per.get(c["p"], 0.0) + float(c["x"])
        share = None
        for side in ([v for v in per.values() if v > 0], [-v for v in per.values() if v < 0]):
            total = sum(side)
            if total > 0:
                s = sum(sorted(side, reverse=True)[:top]) / total
                share = s if share is None else max(share, s)
        out.append((share, sum(1 for v in per.values() if v != 0)))
    return out


def combined(a: list[list[dict[str, Any]] | None], b: list[list[dict[str, Any]] | None],
             sign: float) -> list[list[dict[str, Any]] | None]:  # fmt: skip
    """Two amounts' contributions as one (``a + sign * b``), row by row: two columns that each look safe
    can publish, by their difference, one person's amount (the same offsets added to both)."""
    return [[*(ra or []), *({"p": c["p"], "x": None if c.get("x") is None else sign * float(c["x"])}
                           for c in rb or [] if c is not None)] for ra, rb in zip(a, b, strict=True)]  # fmt: skip
