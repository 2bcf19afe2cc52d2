"""Automatic disclosure control of a table an analyst asks to export (the checks before any human).

Every rule reports what it found and the cells it touched (row number, column), so the export
committee sees why, not only whether. The rules, with the table's lineage (:mod:`kcure.projects.lineage`):

* ``keys``: no column named as a pseudonymous key of the library or the project, and no value holding
  a run of 16 or more hexadecimal characters (every key, pseudonym and key fingerprint is one);
* ``row_level``: a table whose rows mostly describe one person each is row-level data;
* ``extremes``: min, max, first, mode, list, ... describe one person's value: never exported;
* ``small_cells``: every count (count aggregates, ``--counts`` columns, integer sums and columns named
  like counts) between 1 and threshold-1;
* ``small_rows``: every statistic of a row whose people number 1 to threshold-1;
* ``dominance``: every sum or mean whose ``dominance_top`` largest contributors hold at least
  ``dominance_share`` of it;
* ``survival``: a table with a time column and a number at risk: at every time point the number at
  risk and the events are counts (above), and the number leaving the risk set between two time points
  (events and censoring together) is 0 or at least the threshold;
* ``differencing`` (for the reviewers): the same cell in an earlier export of the project, differing by
  1 to threshold-1.

With ``redact``, the cells of ``small_cells``, ``small_rows`` and ``dominance`` are suppressed, then as
many more as it takes so that no suppressed cell follows from the totals the table publishes (its
margin rows, and columns that are sums of others: :func:`kcure.core.disclosure.protect`), and the counts
shown are rounded. ``keys``, ``row_level``, ``extremes`` and ``survival`` cannot be redacted away.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from kcure.core.disclosure import Figures, protect, rounded

if TYPE_CHECKING:
    import pyarrow as pa

HEX_RUN = re.compile(r"[0-9A-Fa-f]{16,}")
COUNT_NAME = re.compile(
    r"(^n$|^n_|_n$|count|cnt|^num|people|persons|patients|cases|events?$|deaths?|died|risk|censor|freq)", re.I
)
TIME_NAME = re.compile(r"^(t|time|time_?point|months?|days?|weeks?|years?|interval|follow_?up.*|fu_.*)$", re.I)
RISK_NAME = re.compile(r"risk", re.I)
EVENT_NAME = re.compile(r"event|death|died", re.I)
MARGIN_WORDS = {"total", "all", "overall", "전체", "합계", "계"}
REDACTABLE = ("small_cells", "small_rows", "dominance")


@dataclass(frozen=True)
class Thresholds:
    threshold: int
    rounding: int
    dominance_top: int
    dominance_share: float


@dataclass
class Rule:
    name: str
    status: str  # passed | failed | warning | not_applicable | applied
    message: str
    cells: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class Report:
    status: str  # passed | redacted | refused
    rules: list[Rule]
    masked: list[dict[str, Any]] = field(default_factory=list)

    def failed(self) -> list[Rule]:
        return [r for r in self.rules if r.status == "failed"]

    def to_dict(self) -> dict[str, Any]:
        return {"status": self.status, "rules": [asdict(r) for r in self.rules], "masked": self.masked}


@dataclass
class Table:
    """The table under check, with what its lineage says of each row."""

    data: pa.Table
    kinds: dict[str, str]  # column -> label | count | sum | mean | extreme | other
    people: list[int] | None = None  # per row; None: not established
    shares: dict[str, list[float | None]] = field(default_factory=dict)  # amount column -> top-n share per row
    raw: dict[str, list[Any]] = field(default_factory=dict)  # statistic column -> its bare aggregate per row
    grouping: list[list[tuple[bool, str]]] | None = None  # per row, per GROUP BY expression: rolled up?, value
    contributors: dict[str, list[int]] = field(default_factory=dict)  # amount column -> people with a non-zero part


def _is_int(t: Any) -> bool:
    import pyarrow.types as pt

    return bool(pt.is_integer(t))


def classify(data: pa.Table, kinds: dict[str, str], declared: set[str]) -> dict[str, str]:
    """Each column's role; counts are what the query counted, what the analyst declared, and integer
    statistics (or integer columns) named like counts."""
    out = {}
    for f in data.schema:
        kind = kinds.get(f.name, "label")
        if f.name in declared or (kind in ("sum", "label") and _is_int(f.type) and COUNT_NAME.search(f.name)):
            kind = "count"
        out[f.name] = kind
    return out


def _is_margin(v: Any) -> bool:
    return v is None or (isinstance(v, float) and v != v) or (isinstance(v, str) and v.strip().lower() in MARGIN_WORDS)


def _shown(v: Any) -> Any:
    """A value as the check report may show it: never one shaped like a key."""
    return "<hidden: shaped like a key>" if isinstance(v, str) and HEX_RUN.search(v) else v


def _cell(rows: list[dict[str, Any]], labels: list[str], r: int, col: str) -> dict[str, Any]:
    return {"row": r + 1, "column": col, "labels": {k: _shown(rows[r][k]) for k in labels},
            "value": _shown(rows[r][col])}  # fmt: skip


@dataclass
class _Ctx:
    """The table as the rules read it."""

    rows: list[dict[str, Any]]
    kinds: dict[str, str]
    th: Thresholds
    raw: dict[str, list[Any]] = field(default_factory=dict)
    ints: frozenset[str] = frozenset()  # the integer-typed columns
    grouping: list[list[tuple[bool, str]]] | None = None
    contributors: dict[str, list[int]] = field(default_factory=dict)

    def value(self, r: int, col: str) -> Any:
        """The figure a rule checks: the bare aggregate when the lineage has it (``count(*) + 100`` is
        checked as the count), else the cell."""
        return self.raw[col][r] if col in self.raw else self.rows[r][col]

    def of(self, *kinds: str) -> list[str]:
        return [c for c, k in self.kinds.items() if k in kinds]

    @property
    def labels(self) -> list[str]:
        return self.of("label")

    def cell(self, r: int, col: str, **extra: Any) -> dict[str, Any]:
        return {**_cell(self.rows, self.labels, r, col), **extra}


def check(
    t: Table, kinds: dict[str, str], key_names: set[str], th: Thresholds,
    earlier: list[tuple[str, pa.Table, dict[str, str]]], redact: bool,
) -> tuple[Report, pa.Table | None]:  # fmt: skip
    """The check report, and (with ``redact``, when only redactable rules failed) the redacted table."""
    import pyarrow.types as pt

    ints = frozenset(f.name for f in t.data.schema if pt.is_integer(f.type))
    x = _Ctx(t.data.to_pylist(), kinds, th, t.raw, ints, t.grouping, t.contributors)
    rules = [_keys(x, key_names), _row_level(x, t.people), _extremes(x), _small_cells(x), _small_rows(x, t.people),
             _dominance(x, t.shares), _survival(x.rows, x.labels, kinds, th.threshold),
             _differencing(x.rows, x.labels, x.of("count"), earlier, th.threshold)]  # fmt: skip
    hard = [r for r in rules if r.status == "failed" and r.name not in REDACTABLE]
    soft = [r for r in rules if r.status == "failed" and r.name in REDACTABLE]
    if hard or (soft and not redact):
        return Report("refused", rules), None
    flagged = {(c["row"] - 1, c["column"]) for r in soft for c in r.cells}
    checked, masked, secondary = _redact(t.data, x, flagged)
    if soft:
        message = f"{len(secondary)} more cells suppressed so that no suppressed cell follows from the totals"
        rules.append(Rule("secondary", "applied", message, [x.cell(r, c) for r, c in secondary]))
    if th.rounding > 1:
        rules.append(Rule("rounding", "applied", f"counts shown rounded to the nearest {th.rounding}, in every export "
                                                 "(two exports' exact counts could be subtracted)"))  # fmt: skip
    status = "redacted" if soft else "passed"
    return Report(status, rules, [{"row": r + 1, "column": c} for r, c in sorted(masked)]), checked


def _keys(x: _Ctx, key_names: set[str]) -> Rule:
    named = [c for c in x.kinds if c.lower() in key_names or "sn_key" in c.lower()]
    hexed = [_cell(x.rows, [], r, c) for r, row in enumerate(x.rows) for c, v in row.items()
             if isinstance(v, str) and HEX_RUN.search(v)]  # fmt: skip
    if not (named or hexed):
        return Rule("keys", "passed", "no key column and no value shaped like a key")
    what = [f"columns named as keys: {', '.join(named)}"] if named else []
    what += [f"{len(hexed)} values with a run of 16+ hex characters (a key's form)"] if hexed else []
    return Rule("keys", "failed", "; ".join(what), hexed[:50])


def _row_level(x: _Ctx, people: list[int] | None) -> Rule:
    if people is None:
        return Rule("row_level", "failed", "the people behind each row could not be established")
    if x.rows and sorted(people)[len(people) // 2] <= 1:
        return Rule("row_level", "failed", f"row-level data: most of its {len(x.rows)} rows describe one person each")
    fewest = min(people) if people else 0
    return Rule("row_level", "passed", f"{len(x.rows)} rows; the fewest people behind a row: {fewest}")


def _extremes(x: _Ctx) -> Rule:
    extreme = x.of("extreme")
    if extreme:
        return Rule(
            "extremes", "failed", f"{', '.join(extreme)}: a min, max, first, mode or list shows one person's value"
        )
    return Rule("extremes", "passed", "no min, max, first, mode or list")


def _small_cells(x: _Ctx) -> Rule:
    k = x.th.threshold
    counts = [c for c in x.kinds if x.kinds[c] == "count" or (x.kinds[c] == "sum" and c in x.ints)]
    small = [x.cell(r, c) for r in range(len(x.rows)) for c in counts
             if isinstance(x.value(r, c), int | float) and 0 < x.value(r, c) < k]  # fmt: skip
    small += [
        x.cell(r, c, people_in_it=n)
        for c, per in x.contributors.items()
        for r, n in enumerate(per)
        if 0 < n < k and x.rows[r][c] is not None
    ]  # an amount is also a count of the people in it
    if small:
        return Rule("small_cells", "failed", f"{len(small)} counts between 1 and {k - 1}", small)
    return Rule("small_cells", "passed", f"counts checked: {', '.join(counts) or 'none'}")


def _small_rows(x: _Ctx, people: list[int] | None) -> Rule:
    k = x.th.threshold
    stats = x.of("count", "sum", "mean", "extreme")
    few = [r for r, n in enumerate(people or []) if 0 < n < k
           or (n == 0 and any(x.rows[r][c] not in (None, 0) for c in stats))]  # fmt: skip
    cells = [x.cell(r, c) for r in few for c in stats if x.rows[r][c] is not None]
    if few:
        return Rule("small_rows", "failed", f"{len(few)} rows describe 1 to {k - 1} people (or show figures of none)",
                    cells)  # fmt: skip
    return Rule("small_rows", "passed", f"every row describes 0 or at least {k} people")


def _dominance(x: _Ctx, shares: dict[str, list[float | None]]) -> Rule:
    amounts, th = x.of("sum", "mean"), x.th
    if not amounts:
        return Rule("dominance", "not_applicable", "no sum or mean")
    dominated = [x.cell(r, c, share=round(share, 3)) for c in amounts for r, share in enumerate(shares.get(c, []))
                 if share is not None and share >= th.dominance_share and x.rows[r][c] is not None]  # fmt: skip
    if dominated:
        what = f"{len(dominated)} amounts where the {th.dominance_top} largest contributors hold "
        return Rule("dominance", "failed", what + f"{th.dominance_share:.0%} or more", dominated)
    return Rule("dominance", "passed", f"amounts checked: {', '.join(amounts)}")


def _survival(rows: list[dict[str, Any]], labels: list[str], kinds: dict[str, str], k: int) -> Rule:
    time = next((c for c in labels if TIME_NAME.match(c)), None)
    risk = next((c for c, kk in kinds.items() if kk == "count" and RISK_NAME.search(c)), None)
    if time is None or risk is None:
        return Rule("survival", "not_applicable", "no time column with a number at risk")
    strata = [c for c in labels if c != time]
    groups: dict[tuple[Any, ...], list[int]] = {}
    for r, row in enumerate(rows):
        if not _is_margin(row[time]):
            groups.setdefault(tuple(row[c] for c in strata), []).append(r)
    drops = []
    for members in groups.values():
        members.sort(key=lambda r: rows[r][time])
        for a, b in itertools.pairwise(members):
            x, y = rows[a][risk], rows[b][risk]
            if isinstance(x, int | float) and isinstance(y, int | float) and 0 < x - y < k:
                cell = _cell(rows, [*strata, time], b, risk)
                cell["left_the_risk_set"] = x - y
                drops.append(cell)
    if drops:
        return Rule("survival", "failed", f"{len(drops)} time points where 1 to {k - 1} people leave the risk set "
                                          f"(events and censoring): use fewer, wider time points", drops)  # fmt: skip
    return Rule("survival", "passed", f"time {time}, at risk {risk}: every step loses 0 or at least {k} people")


def _differencing(rows: list[dict[str, Any]], labels: list[str], counts: list[str],
                  earlier: list[tuple[str, pa.Table, dict[str, str]]], k: int) -> Rule:  # fmt: skip
    if not earlier:
        return Rule("differencing", "not_applicable", "the project has no earlier export")
    close = []
    for req, table, kinds in earlier:
        their_labels = [c for c, kk in kinds.items() if kk == "label"]
        if set(their_labels) != set(labels):
            continue
        shared = [c for c in counts if kinds.get(c) == "count"]
        index = {tuple(_text(r[c]) for c in labels): r for r in table.to_pylist()}
        for r, row in enumerate(rows):
            other = index.get(tuple(_text(row[c]) for c in labels))
            for c in shared:
                if other is None or not isinstance(row[c], int | float) or not isinstance(other.get(c), int | float):
                    continue
                if 0 < abs(row[c] - other[c]) < k:
                    cell = _cell(rows, labels, r, c)
                    cell.update(earlier=req, difference=abs(row[c] - other[c]))
                    close.append(cell)
    names = ", ".join(e[0] for e in earlier)
    if close:
        what = f"{len(close)} cells differ by 1 to {k - 1} from the same cell of an earlier export"
        return Rule("differencing", "warning", f"{what}: reviewers, compare with {names}", close)
    return Rule("differencing", "passed", f"compared with the project's earlier exports: {names}")


def _text(v: Any) -> str:
    """A label as text, so a CSV read back (1) and the typed query result ('1') compare equal."""
    if v is None or (isinstance(v, float) and v != v):
        return ""
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    return str(v)


def margin_sums(rows: list[dict[str, Any]], labels: list[str],
                grouping: list[list[tuple[bool, str]]] | None = None) -> list[tuple[int, tuple[int, ...]]]:  # fmt: skip
    """The sums the table publishes: each margin row is the sum of the rows that agree with it elsewhere.

    With the query's grouping (ROLLUP / CUBE / GROUPING SETS: GROUPING() of each GROUP BY expression,
    from the lineage) a margin is exactly what the query rolled up, whatever its label says ('Any',
    NULL, ...). Without it, a label that is empty or 'Total'. Taken from the structure, not the numbers:
    counts of distinct people overlap (one person, two sites), so a margin is only nearly the sum of its
    parts, and a near sum gives a suppressed cell away to within a person or two."""
    if grouping is not None:
        keys = grouping
    else:
        keys = [[(_is_margin(row[c]), "" if _is_margin(row[c]) else str(row[c])) for c in labels] for row in rows]
    out = []
    for m, mk in enumerate(keys):
        for i, (rolled, _) in enumerate(mk):
            if not rolled:
                continue
            parts = tuple(r for r, rk in enumerate(keys) if r != m and not rk[i][0]
                          and all(rk[j] == mk[j] for j in range(len(mk)) if j != i))  # fmt: skip
            if parts:
                out.append((m, parts))
    return out


def column_sums(rows: list[dict[str, Any]], columns: list[str]) -> list[tuple[str, tuple[str, ...]]]:
    """Columns that are, in every row, the sum of two to four others (a 'total' beside its parts), or
    nearly: distinct people counted in overlapping parts add up to a little more than their total."""

    def near(total: Any, parts: list[Any]) -> bool:
        if total is None or any(p is None for p in parts):
            return False
        gap = sum(parts) - total
        return 0 <= gap <= max(2, 0.02 * abs(total)) and total >= max(parts, default=0)

    out = []
    for total in columns:
        others = [c for c in columns if c != total]
        for size in range(2, min(4, len(others)) + 1):
            for parts in itertools.combinations(others, size):
                if rows and all(near(row[total], [row[p] for p in parts]) for row in rows):
                    out.append((total, parts))
    return out


def _figures(x: _Ctx, flagged: set[tuple[int, str]]) -> Figures:
    """The statistics as figures for :func:`protect`: flagged ones count as one person, and the sums the
    table publishes (its margins, and columns that total others) as sums."""
    f = Figures()
    for r, row in enumerate(x.rows):
        for c in x.of("count", "sum", "mean"):
            if row[c] is not None:
                f.add((r, c), round(float(row[c])), persons=1 if (r, c) in flagged else x.th.threshold)
    margins = margin_sums(x.rows, x.labels, x.grouping)
    for c in x.of("count", "sum"):
        for m, parts in margins:
            f.add_sum((m, c), [(p, c) for p in parts])
    for total, columns in column_sums(x.rows, x.of("count", "sum")):
        for r in range(len(x.rows)):
            f.add_sum((r, total), [(r, c) for c in columns])
    return f


def _redact(
    data: pa.Table, x: _Ctx, flagged: set[tuple[int, str]]
) -> tuple[pa.Table, set[tuple[int, str]], list[tuple[int, str]]]:
    """The table with the flagged cells, and the secondary ones, suppressed and the counts rounded."""
    import pyarrow as pa

    shown = protect(_figures(x, flagged), x.th.threshold)
    masked = {key for key, v in shown.items() if v is None}
    secondary = sorted(masked - flagged, key=repr)
    masked |= flagged
    whole = {c for c in x.of("sum") if all(v is None or float(v).is_integer() for v in (r[c] for r in x.rows))}
    counts = set(x.of("count")) | whole  # a whole-number sum may be a count in disguise: rounded alike

    def out(r: int, c: str) -> Any:
        v = x.rows[r][c]
        if (r, c) in masked:
            return None
        if c in counts and v is not None and x.th.rounding > 1:
            return rounded(int(v), x.th.rounding)
        return v

    columns = {c: pa.array([out(r, c) for r in range(len(x.rows))], type=data.schema.field(c).type)
               for c in data.column_names}  # fmt: skip
    return pa.table(columns), masked, secondary  # type: ignore[return-value]
