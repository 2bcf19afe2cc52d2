"""Applying a k-anonymity recoding to released tables, in Spark (the protect stage and project extracts).

:func:`person_qis` gives one row per person with the person-level quasi-identifiers of their first
registered cancer; :func:`kcure.core.kanon.enforce_k` decides who is recoded how; :func:`persons`
turns those decisions into a small relation and :func:`apply_reveals` writes them into every column
that reveals a recoded quasi-identifier (``conf/privacy.yaml`` ``k_anonymity.reveals``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from kcure.core import kanon as P
from kcure.core.contract import parent_of
from kcure.core.spark import local_frame

if TYPE_CHECKING:
    from collections.abc import Collection

    import pandas as pd
    from pyspark.sql import Column, DataFrame, SparkSession

    from kcure.core.config import Config
    from kcure.core.rules import Privacy, Reveal

#: per person, what the recoding decided (one row per person of the release)
PERSON_COLUMNS = ("SN_KEY", "_band", "_dbyear", "_site", "_new_SIDO", "_new_SEX", "_new_DBYEAR")


def person_qis(rgst: DataFrame, bfc: DataFrame, with_sido: bool) -> DataFrame:
    """One row per person: SN_KEY and the quasi-identifiers of their first registered cancer."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    w = Window.partitionBy("SN_KEY").orderBy(F.col("FDX").asc_nulls_last(), F.col("TCODE").asc_nulls_last())
    first = (
        rgst.withColumn("_rn", F.row_number().over(w))
        .where("_rn = 1")
        .select("SN_KEY", "SEX", "AGE", "DBYEAR", F.substring("TCODE", 1, 3).alias("TCODE3"))
    )
    if not with_sido:
        return first
    # the residence in the diagnosis year, else in any year
    at_dx = bfc.groupBy("SN_KEY", "STD_YYYY").agg(F.max("SIDO").alias("_sido_year"))
    anytime = bfc.groupBy("SN_KEY").agg(F.max("SIDO").alias("_sido_any"))
    return (
        first.join(at_dx, (first.SN_KEY == at_dx.SN_KEY) & (first.DBYEAR == at_dx.STD_YYYY), "left")
        .drop(at_dx.SN_KEY)
        .join(anytime, "SN_KEY", "left")
        .withColumn("SIDO", F.coalesce("_sido_year", "_sido_any"))
        .drop("_sido_year", "_sido_any")
    )


def threat_model(rules: Privacy) -> dict[str, list[str]]:
    """What the k figure of a release protects against, and what it does not, in words."""
    names = {
        "SEX": "sex",
        "AGE": "age band at diagnosis (and so the birth year, to within that band)",
        "SIDO": "residence class in the diagnosis year",
        "DBYEAR": "diagnosis year",
        "TCODE3": "3-character site of the first cancer",
    }
    tables = sorted({r.table for r in rules.reveals})
    return {
        "holds_against": [
            f"an attacker who knows a person's {', '.join(names[q] for q in rules.quasi_identifiers)}, "
            f"and reads them from any released column ({', '.join(tables)}): every person in the release "
            f"shares those values with at least {rules.k - 1} others",
        ],
        "does_not_hold_against": [
            "a known event date: claim, admission, death, COVID-19 and vaccination dates are released at day "
            "level, and one such date makes most people unique",
            "the diagnosis month (RGST.FDX is YYYYMM)",
            "providers (T200.YID), and the pattern of a person's claims, costs and prescriptions",
            "the sites of second and later cancers beyond their ICD-10 block, and codes that are not C-codes",
            "screening measurements (G1E)",
            "knowing that a person belongs to a sub-cohort chosen by something else (histology, stage)",
        ],
    }


def persons(spark: SparkSession, people: pd.DataFrame, result: P.KAnonymityResult, rules: Privacy) -> DataFrame:
    """Per person kept: the (recoded) age band, the first diagnosis year, the site action, new values."""
    import pandas as pd

    qis = rules.quasi_identifiers
    kept = result.table
    orig = people.loc[kept.index]
    none = pd.Series([None] * len(kept), index=kept.index, dtype="object")

    def changed(q: str) -> pd.Series:
        if q not in qis:
            return none
        new, old = kept[q].astype(str), orig[q].astype(str)
        return new.where(new != old, None).astype("object")

    site = changed("TCODE3")
    frame = pd.DataFrame(
        {
            "SN_KEY": kept.index.astype(str),
            "_band": kept["AGE"].astype(str).astype("object") if "AGE" in qis else none,
            "_dbyear": orig["_dbyear"],
            "_site": site.map(lambda v: None if v is None else ("suppress" if v == P.SUPPRESSED else "widen")),
            "_new_SIDO": changed("SIDO"),
            "_new_SEX": changed("SEX"),
            "_new_DBYEAR": changed("DBYEAR"),
        }
    )
    rows = [tuple(None if v is None or v != v else v for v in r) for r in frame.itertuples(index=False, name=None)]
    schema = ", ".join(f"{c} {'int' if c == '_dbyear' else 'string'}" for c in PERSON_COLUMNS)
    return local_frame(spark, rows, schema)


def _block(column: str) -> Column:
    """The ICD-10 block of a code's first three characters (null outside C00-C97, or if shorter).

    One SQL CASE, parsed once by Spark, rather than a chain of fifteen ``when`` built call by call
    over py4j (thousands of round trips per build)."""
    from pyspark.sql import functions as F

    prefix = f"upper(substring(`{column.replace('`', '``')}`, 1, 3))"
    cases = " ".join(f"WHEN {prefix} BETWEEN '{lo}' AND '{hi}' THEN '{label}'" for lo, hi, label in P.ICD10_BLOCKS)
    # shorter than three characters: no block (as kanon.icd10_block, which counted the person's class)
    return F.expr(f"CASE WHEN length({prefix}) < 3 THEN NULL {cases} END")


def _shifted_band(band: Column, years: Column) -> Column:
    """'60-64' moved by 3 years is '63-67'; '85+' is '88+'; '*' stays '*'."""
    from pyspark.sql import functions as F

    d = F.coalesce(years, F.lit(0))
    lo = F.greatest(F.regexp_extract(band, r"^(\d+)", 1).cast("int") + d, F.lit(0))
    hi = F.greatest(F.regexp_extract(band, r"-(\d+)$", 1).cast("int") + d, F.lit(0))
    moved = F.when(band.endswith("+"), F.format_string("%02d+", lo)).otherwise(F.format_string("%02d-%02d", lo, hi))
    return F.when(band.isNull() | (band == P.SUPPRESSED), band).otherwise(moved)


def _recoded(r: Reveal, rules: Privacy) -> Column:
    """The new value of one revealing column, from the person's decisions joined to its row."""
    from pyspark.sql import functions as F

    col, site = F.col(r.column), F.col("_site")
    if r.kind == "age_band":
        return F.when(F.col("_band").isNull(), col).otherwise(
            _shifted_band(F.col("_band"), F.col(str(r.year)) - F.col("_dbyear"))
        )
    if r.kind == "value":
        new = F.col(f"_new_{r.qi}")
        return F.when(new.isNotNull(), new).otherwise(col)
    if r.kind == "site_code":
        return F.when(site == "suppress", None).when(site == "widen", _block(r.column)).otherwise(col)
    if r.kind == "diagnosis_code":
        cancer = F.upper(col).startswith("C")
        return (
            F.when(cancer & (site == "suppress"), None)
            .when(cancer & (site == "widen"), _block(r.column))
            .otherwise(col)
        )
    if r.kind == "morphology":
        return F.when(site == "suppress", None).otherwise(col)
    if r.kind == "site_procedure":
        return F.when(site.isNotNull() & col.isin(*rules.site_procedures), None).otherwise(col)
    raise ValueError(f"no recoding for {r.kind}")


def claim_parent(cfg: Config, name: str) -> tuple[str, str]:
    """A claim-line table's key to its parent table, and that table (T300: ``MID``, ``T200``)."""
    feed = cfg.feeds[cfg.library.tables[name].source]
    return str(feed.person_via), cfg.library.by_feed[parent_of(cfg.feeds, feed).name]


def decisions(
    cfg: Config, tables: dict[str, DataFrame], persons: DataFrame, name: str, broadcast: Collection[str] = ()
) -> DataFrame:
    """What table ``name``'s rows are joined to: the persons' decisions by SN_KEY or, for claim lines,
    those of the people the recoding touched, by their statement's key (so the table's recoded rows
    are a function of the table and this relation alone). A claim line's relation is marked for a
    broadcast join when its parent table is in ``broadcast`` (a parent known to be small)."""
    from pyspark.sql import functions as F

    if "SN_KEY" in tables[name].columns:
        return persons
    key, parent = claim_parent(cfg, name)
    touched = persons.where(" OR ".join(f"{c} IS NOT NULL" for c in PERSON_COLUMNS[3:]))
    chosen = tables[parent].select(key, "SN_KEY").join(touched, "SN_KEY").drop("SN_KEY")
    return F.broadcast(chosen) if parent in broadcast else chosen


def revealing(cfg: Config, tables: dict[str, DataFrame]) -> list[str]:
    """The tables with a column that reveals a quasi-identifier."""
    return [name for name in tables if any(r.table == name for r in cfg.privacy.reveals)]


def apply_reveals(
    cfg: Config, tables: dict[str, DataFrame], persons: DataFrame, broadcast: Collection[str] = ()
) -> dict[str, DataFrame]:
    """Every table with a revealing column, with the persons' decisions applied to it (``broadcast``:
    as :func:`decisions`)."""
    rules = cfg.privacy
    out = {}
    for name in revealing(cfg, tables):
        df = tables[name]
        reveals = [r for r in rules.reveals if r.table == name]
        on = "SN_KEY" if "SN_KEY" in df.columns else claim_parent(cfg, name)[0]
        joined = df.join(decisions(cfg, tables, persons, name, broadcast), on, "left")
        new = {r.column: _recoded(r, rules).cast(df.schema[r.column].dataType) for r in reveals}
        out[name] = joined.select(*[new[c].alias(c) if c in new else joined[c] for c in df.columns])
    return out
