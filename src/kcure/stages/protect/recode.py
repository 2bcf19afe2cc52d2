"""Stage 4, protect: linked/<build>/ -> protected/<build>/: k-anonymity by local recoding.

Person-level quasi-identifiers (``conf/privacy.yaml`` ``k_anonymity.quasi_identifiers``, from the
first registered cancer in RGST and the residence class in BFC in its year) form equivalence
classes. People in classes smaller than k are recoded step by step (``recoding``), only those
people; the recoded values are written into new RGST and BFC tables. People still unprotected are
dropped from every table when ``drop_last_resort`` is true; otherwise the stage records the failure
and writes no table, so the check stage fails and nothing can be published. The cost of every step,
the class-size distribution and l-diversity go to ``protected/<build>/_privacy.json``.

The linked tables are never touched: a table the step does not change is linked (hard link) or
copied into protected/ as it is, so running the stage again always starts from link's output.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kcure.core.contract import parent_of
from kcure.core.zones import PRIVACY, link_or_copy_tree, restrict_tree, restricted_dir
from kcure.stages.protect import kanon as P

if TYPE_CHECKING:
    import pandas as pd
    from pyspark.sql import Column, DataFrame, SparkSession

    from kcure.core.config import Config


def person_qis(rgst: DataFrame, bfc: DataFrame, qis: tuple[str, ...]) -> DataFrame:
    """One row per person: SN_KEY and the quasi-identifiers of their first registered cancer."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    w = Window.partitionBy("SN_KEY").orderBy(F.col("FDX").asc_nulls_last(), F.col("TCODE").asc_nulls_last())
    first = (
        rgst.withColumn("_rn", F.row_number().over(w))
        .where("_rn = 1")
        .select("SN_KEY", "SEX", "AGE", "DBYEAR", F.substring("TCODE", 1, 3).alias("TCODE3"))
    )
    if "SIDO" in qis:  # the residence in the diagnosis year, else in any year
        at_dx = bfc.groupBy("SN_KEY", "STD_YYYY").agg(F.max("SIDO").alias("_sido_year"))
        anytime = bfc.groupBy("SN_KEY").agg(F.max("SIDO").alias("_sido_any"))
        first = (
            first.join(at_dx, (first.SN_KEY == at_dx.SN_KEY) & (first.DBYEAR == at_dx.STD_YYYY), "left")
            .drop(at_dx.SN_KEY)
            .join(anytime, "SN_KEY", "left")
            .withColumn("SIDO", F.coalesce("_sido_year", "_sido_any"))
        )
    return first.select("SN_KEY", *qis)


def _recoded_rgst(rgst: DataFrame, qis: tuple[str, ...]) -> DataFrame:
    """RGST with a person's recoded quasi-identifiers (``_new_<QI>``, null where unchanged) applied."""
    from pyspark.sql import functions as F

    new: dict[str, Column] = {}
    if "AGE" in qis:
        new["AGE"] = F.when(F.col("_new_AGE").isNotNull(), F.col("_new_AGE")).otherwise(F.col("AGE"))
    if "TCODE3" in qis:  # a widened site shows its block and drops its KCD; a suppressed one shows nothing
        blocked = F.col("_new_TCODE3").isNotNull() & (F.col("_new_TCODE3") != F.substring("TCODE", 1, 3))
        suppressed = F.col("_new_TCODE3") == P.SUPPRESSED
        new["TCODE"] = F.when(suppressed, None).when(blocked, F.col("_new_TCODE3")).otherwise(F.col("TCODE"))
        new["KCD"] = F.when(blocked, None).otherwise(F.col("KCD"))
        new["MCODE"] = F.when(suppressed, None).otherwise(F.col("MCODE"))
    if "DBYEAR" in qis:
        year_suppressed = F.col("_new_DBYEAR") == P.SUPPRESSED
        new["DBYEAR"] = F.when(year_suppressed, None).otherwise(F.col("DBYEAR"))
        new["FDX"] = F.when(year_suppressed, None).otherwise(F.col("FDX"))
    return rgst.select(*[new.get(c, F.col(c)).alias(c) for c in rgst.columns if not c.startswith("_new_")])


def _recoded_bfc(bfc: DataFrame) -> DataFrame:
    from pyspark.sql import functions as F

    sido = F.when(F.col("_new_SIDO") == P.SUPPRESSED, F.lit(P.SUPPRESSED)).otherwise(F.col("SIDO"))
    return bfc.select(*[sido.alias(c) if c == "SIDO" else F.col(c) for c in bfc.columns if c != "_new_SIDO"])


def _changes(spark: SparkSession, people: pd.DataFrame, result: P.KAnonymityResult, qis: tuple[str, ...]) -> DataFrame:
    """SN_KEY and ``_new_<QI>`` for every person whose quasi-identifiers the recoding changed."""
    changed = result.table.copy()
    orig = people.loc[changed.index]
    mask = (changed[list(qis)].astype(str) != orig[list(qis)].astype(str)).any(axis=1)
    changes = changed[mask].reset_index().rename(columns={c: f"_new_{c}" for c in qis})
    cols = ["SN_KEY", *[f"_new_{c}" for c in qis]]
    rows = [tuple(None if v is None else str(v) for v in r) for r in changes[cols].itertuples(index=False)]
    from pyspark.sql import functions as F

    return F.broadcast(spark.createDataFrame(rows, ", ".join(f"{c} string" for c in cols)))


def _without(
    spark: SparkSession, cfg: Config, tables: dict[str, DataFrame], dropped: list[Any]
) -> dict[str, DataFrame]:
    """Every table without the rows of dropped people (claim lines through their statement's key)."""
    from pyspark.sql import functions as F

    gone = F.broadcast(spark.createDataFrame([(d,) for d in dropped], "SN_KEY string"))
    out = {}
    for name, df in tables.items():
        if "SN_KEY" in df.columns:
            out[name] = df.join(gone, "SN_KEY", "left_anti")
            continue
        feed = cfg.feeds[cfg.library.tables[name].source]
        key, parent = str(feed.person_via), cfg.library.by_feed[parent_of(cfg.feeds, feed).name]
        keys = tables[parent].join(gone, "SN_KEY", "inner").select(key).distinct()
        out[name] = df.join(F.broadcast(keys), key, "left_anti")
    return out


def _metrics(cfg: Config, people: pd.DataFrame, result: P.KAnonymityResult, deaths: pd.DataFrame) -> dict[str, Any]:
    rules = cfg.privacy
    qis = list(rules.quasi_identifiers)
    before = P.class_sizes(people, qis)
    sensitive = rules.sensitive_attribute
    diverse = result.table.join(deaths, how="left")
    return {
        "k": rules.k,
        "quasi_identifiers": qis,
        "people": len(people),
        "min_class_before": int(before.min()) if len(before) else 0,
        "min_class_after": result.min_class,
        "class_size_distribution": result.distribution(),
        "costs": [c.__dict__ for c in result.costs],
        "people_dropped": len(result.dropped),
        "l_diversity": {
            "attribute": sensitive,
            "l": P.l_diversity(diverse, qis, sensitive) if len(diverse) else 0,
            "required": rules.l,
        },
        "rows_dropped": {},
    }


def run(spark: SparkSession, cfg: Config, src: Path, out: Path) -> dict[str, Any]:
    """Protect the linked tables in ``src`` into ``out``; returns what ``_privacy.json`` records."""
    from pyspark.sql import functions as F

    rules = cfg.privacy
    qis = rules.quasi_identifiers
    tables = {n: spark.read.parquet(str(src / n)) for n in cfg.library.tables if (src / n).is_dir()}
    pdf: Any = person_qis(tables["RGST"], tables["BFC"], qis).toPandas()
    people = pdf.set_index("SN_KEY")
    if "DBYEAR" in qis:
        people["DBYEAR"] = people["DBYEAR"].astype("object")
    result = P.enforce_k(people, list(qis), rules.k, rules.recoding)
    attr = rules.sensitive_attribute
    deaths: Any = tables[rules.sensitive_table].groupBy("SN_KEY").agg(F.min(attr).alias(attr)).toPandas()
    metrics = _metrics(cfg, people, result, deaths.set_index("SN_KEY"))
    restricted_dir(out)
    if result.dropped and not rules.drop_last_resort:
        metrics["success"] = False
        metrics["failure"] = (
            f"{len(result.dropped)} people stay in classes smaller than k={rules.k} after recoding, "
            "and drop_last_resort is false"
        )
        (out / PRIVACY).write_text(json.dumps(metrics, indent=2, default=str) + "\n", encoding="utf-8")
        restrict_tree(out)
        return metrics
    new: dict[str, DataFrame] = {}  # the tables this run changes
    if result.costs:
        ch = _changes(spark, people, result, qis)
        new["RGST"] = _recoded_rgst(tables["RGST"].join(ch, "SN_KEY", "left"), qis)
        new["BFC"] = tables["BFC"]
        if "SIDO" in qis:
            new["BFC"] = _recoded_bfc(tables["BFC"].join(ch.select("SN_KEY", "_new_SIDO"), "SN_KEY", "left"))
    if result.dropped:
        new = _without(spark, cfg, {**tables, **new}, result.dropped)
    for name, df in tables.items():
        if name not in new:
            link_or_copy_tree(src / name, out / name)
            continue
        spark.sparkContext.setJobDescription(f"protect: {name}")
        new[name].select(*df.columns).write.mode("overwrite").parquet(str(out / name))
        metrics["rows_dropped"][name] = df.count() - spark.read.parquet(str(out / name)).count()
    metrics["success"] = True
    (out / PRIVACY).write_text(json.dumps(metrics, indent=2, default=str) + "\n", encoding="utf-8")
    restrict_tree(out)
    return metrics
