"""How linkable two projects' extracts still are through their content, although their keys differ.

Per-project pseudonyms stop a join on keys; they do not stop a join on what the rows say. Each
person's claims carry exact amounts, and a per-person date shift keeps every gap between their
dates exact, so the sequence of (gap to the previous claim, amount) is a fingerprint that survives
re-keying and shifting. Each claim after a person's first is a token, "days since the previous claim:
amount"; an analyst holding both extracts pairs each person of one with the person of the other who
shares the most such tokens (at least two, without a tie, ignoring tokens more than 50 people share),
which survives the two extracts cutting a person's claims at different edges. This counts the
people both extracts hold (found by the custodian through both keys: the truth), how many pairs
that rule makes, and how many of them are right.
Computed in DuckDB over the extracts' files; only counts leave this module.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Iterable

    from kcure.core.keys import Key

TABLE = "T200"
PERSON = "SN_KEY"
DATE = "RECU_FR_DD"
AMOUNT = "RVD_RPE_TAMT_AMT"


def _columns(folder: Path) -> dict[str, str]:
    """The extract's T200 columns and their Arrow types."""
    import pyarrow.parquet as pq

    files = sorted((folder / TABLE).glob("*.parquet"))
    return {f.name: str(f.type) for f in pq.read_schema(files[0])} if files else {}


def _tokens(con: Any, folder: Path, features: list[str], name: str) -> None:
    """Per person, each claim after their first as a token 'days since the previous:amount' (a table ``name``)."""
    files = str(folder / TABLE / "*.parquet").replace("'", "''")
    if DATE in features:
        gap, order = f"date_diff('day', lag({DATE}) OVER w, {DATE})", DATE
    else:
        gap, order = "0", AMOUNT
    amount = f"coalesce({AMOUNT}, -1)" if AMOUNT in features else "0"
    con.execute(
        f"""
        CREATE TEMP TABLE {name} AS
        SELECT DISTINCT {PERSON} AS person, g || ':' || a AS tok FROM (
            SELECT {PERSON}, {gap} AS g, {amount} AS a FROM read_parquet('{files}')
            WINDOW w AS (PARTITION BY {PERSON} ORDER BY {order}, {amount})
        ) WHERE g IS NOT NULL
        """
    )


#: a token more than this many people share identifies nobody; it is left out
COMMON_TOKEN = 50


def _best_matches(con: Any) -> Any:
    """For each person of a: the one person of b sharing most tokens with them (at least 2, no tie)."""
    return con.sql(
        f"""
        WITH rare_a AS (SELECT tok FROM ta GROUP BY tok HAVING count(*) <= {COMMON_TOKEN}),
             rare_b AS (SELECT tok FROM tb GROUP BY tok HAVING count(*) <= {COMMON_TOKEN}),
             shared AS (
                SELECT ta.person AS a, tb.person AS b, count(*) AS n
                FROM ta JOIN tb USING (tok) JOIN rare_a USING (tok) JOIN rare_b USING (tok)
                GROUP BY ALL
             ),
             ranked AS (
                SELECT a, b, n, max(n) OVER (PARTITION BY a) AS top,
                       count(*) FILTER (WHERE TRUE) OVER (PARTITION BY a, n) AS at_n
                FROM shared
             )
        SELECT a, b FROM ranked WHERE n = top AND at_n = 1 AND n >= 2
        """
    ).df()


def measure(a: Path, key_a: Key, b: Path, key_b: Key, library_people: Iterable[str]) -> dict[str, Any] | None:
    """Counts for extracts ``a`` and ``b`` (their extract/ folders); None when they share no content feature."""
    import duckdb

    ca, cb = _columns(a), _columns(b)
    common = set(ca) & set(cb)
    # gaps between days are exact under any two shifts; between shifted months they are not, so
    # month-level dates are left out
    dated = DATE in common and ca[DATE].startswith("date") and cb[DATE].startswith("date")
    features = [f for f in (DATE, AMOUNT) if f in common and (f != DATE or dated)]
    if PERSON not in common or not features:
        return None
    pa_key, pb_key = key_a.derive("person"), key_b.derive("person")
    truth = {}
    for sn in library_people:
        truth[pa_key.hmac_hex(f"SN|{sn}".encode())[:64]] = pb_key.hmac_hex(f"SN|{sn}".encode())[:64]
    con = duckdb.connect()
    try:
        _tokens(con, a, features, "ta")
        _tokens(con, b, features, "tb")
        in_a = {p for (p,) in con.execute("SELECT DISTINCT person FROM ta").fetchall()}
        in_b = {p for (p,) in con.execute("SELECT DISTINCT person FROM tb").fetchall()}
        pairs = _best_matches(con)
    finally:
        con.close()
    shared = sum(1 for p in in_a if truth.get(p) in in_b)
    correct = int(sum(truth.get(x) == y for x, y in zip(pairs.a, pairs.b, strict=True)))
    return {
        "features": features,
        "shared": int(shared),
        "matched": len(pairs),
        "linked": correct,
        "share": round(correct / shared, 6) if shared else 0.0,
    }
