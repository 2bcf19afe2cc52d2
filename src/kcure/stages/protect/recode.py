"""The privacy step of a release: k-anonymity by local recoding, applied to the library tables.

Person-level quasi-identifiers (conf/privacy.yaml ``k_anonymity.quasi_identifiers``): sex, age band
and 3-character site of the first diagnosis, its year, and the residence class of that year. People
in classes smaller than k are recoded step by step (``recoding``), only those people; the result is
written back into RGST and BFC, people still unprotected are dropped from every table when
``drop_last_resort`` is true (else the gate fails), and the cost of every step is recorded in
``linked/<build>/_privacy.json`` with the class-size distribution and l-diversity.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kcure.core.config import Config
from kcure.stages.link.linker import PRE_PRIVACY, restrict
from kcure.stages.protect import kanon as P

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

QIS = ["SEX", "AGE", "SIDO", "DBYEAR", "TCODE3"]


def person_qis(rgst: DataFrame, bfc: DataFrame) -> DataFrame:
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    w = Window.partitionBy("SN_KEY").orderBy(F.col("FDX").asc_nulls_last(), F.col("TCODE").asc_nulls_last())
    first = (
        rgst.withColumn("_rn", F.row_number().over(w))
        .where("_rn = 1")
        .select("SN_KEY", "SEX", "AGE", "DBYEAR", F.substring("TCODE", 1, 3).alias("TCODE3"))
    )
    at_dx = bfc.groupBy("SN_KEY", "STD_YYYY").agg(F.max("SIDO").alias("_sido_year"))
    anytime = bfc.groupBy("SN_KEY").agg(F.max("SIDO").alias("_sido_any"))
    return (
        first.join(at_dx, (first.SN_KEY == at_dx.SN_KEY) & (first.DBYEAR == at_dx.STD_YYYY), "left")
        .drop(at_dx.SN_KEY)
        .join(anytime, "SN_KEY", "left")
        .select("SN_KEY", "SEX", "AGE", F.coalesce("_sido_year", "_sido_any").alias("SIDO"), "DBYEAR", "TCODE3")
    )


def _source(out: Path, name: str) -> Path:
    """Link's version of a table: the kept copy when an earlier run of this step replaced it.

    Running the gates again on a build (an Airflow retry, a rerun by hand) must start from the link
    output, not recode what this step already recoded.
    """
    kept = out / PRE_PRIVACY / name
    return kept if kept.exists() else out / name


def _swap_in(new: Path, target: Path) -> None:
    """Put ``new`` at ``target``; whatever was there is moved aside first and deleted after."""
    aside = target.with_name(target.name + ".privacy-old")
    shutil.rmtree(aside, ignore_errors=True)
    if target.exists():
        target.rename(aside)
    new.rename(target)
    shutil.rmtree(aside, ignore_errors=True)


def _replace_dir(spark: SparkSession, df: DataFrame, out: Path, name: str) -> None:
    """Write ``df`` as table ``name``; link's version is kept (owner-only) the first time.

    Safe to interrupt anywhere: the next run reads link's version from wherever it is.
    """
    target = out / name
    tmp = target.with_name(target.name + ".privacy-tmp")
    df.write.mode("overwrite").parquet(str(tmp))
    kept = out / PRE_PRIVACY / name
    if not kept.exists():
        kept.parent.mkdir(mode=0o700, exist_ok=True)
        target.rename(kept)
        restrict(kept.parent)
    _swap_in(tmp, target)


def _restore(out: Path, names: list[str]) -> None:
    """Tables an earlier run replaced and this one leaves alone go back to link's version."""
    for name in names:
        kept = out / PRE_PRIVACY / name
        if kept.exists():
            _swap_in(kept, out / name)


def apply(spark: SparkSession, cfg: Config, build: str) -> dict[str, Any]:
    from pyspark.sql import functions as F

    out = cfg.local_path("linked") / build
    conf = cfg.privacy
    k = int(conf["k_anonymity"]["k"])
    steps = list(conf.get("recoding", []))
    tables = {n: spark.read.parquet(str(_source(out, n))) for n in cfg.library["tables"]}
    pdf: Any = person_qis(tables["RGST"], tables["BFC"]).toPandas()
    people = pdf.set_index("SN_KEY")
    people["DBYEAR"] = people["DBYEAR"].astype("object")
    before = P.class_sizes(people, QIS)
    result = P.enforce_k(people, QIS, k, steps)
    ddf: Any = tables["DEATH"].groupBy("SN_KEY").agg(F.min("SAIN1").alias("SAIN1")).toPandas()
    deaths = ddf.set_index("SN_KEY")
    sensitive = str(conf["l_diversity"]["sensitive_attribute"])
    diverse = result.table.join(deaths.rename(columns={"SAIN1": sensitive}), how="left")
    metrics: dict[str, Any] = {
        "k": k,
        "people": len(people),
        "min_class_before": int(before.min()) if len(before) else 0,
        "min_class_after": result.min_class,
        "class_size_distribution": result.distribution(),
        "costs": [c.__dict__ for c in result.costs],
        "people_dropped": len(result.dropped),
        "l_diversity": {
            "attribute": sensitive,
            "l": P.l_diversity(diverse, QIS, sensitive) if len(diverse) else 0,
            "required": int(conf["l_diversity"]["l"]),
        },
        "rows_dropped": {},
    }
    if result.dropped and not conf.get("drop_last_resort", True):
        metrics["success"] = False
        metrics["failure"] = (
            f"{len(result.dropped)} people stay in classes smaller than k={k} after recoding, "
            "and drop_last_resort is false"
        )
        _restore(out, list(tables))
        (out / "_privacy.json").write_text(json.dumps(metrics, indent=2, default=str) + "\n", encoding="utf-8")
        return metrics
    changed = result.table.copy()
    orig = people.loc[changed.index]
    mask = (changed[QIS].astype(str) != orig[QIS].astype(str)).any(axis=1)
    changes = changed[mask].reset_index().rename(columns={c: f"_new_{c}" for c in QIS})
    new: dict[str, DataFrame] = {}  # the tables this run replaces
    if len(changes) or result.dropped:
        schema = "SN_KEY string, " + ", ".join(f"_new_{c} string" for c in QIS)
        rows = [
            tuple(None if v is None else str(v) for v in r)
            for r in changes[["SN_KEY", *[f"_new_{c}" for c in QIS]]].itertuples(index=False)
        ]
        ch = F.broadcast(spark.createDataFrame(rows, schema))
        dropped = F.broadcast(spark.createDataFrame([(d,) for d in result.dropped], "SN_KEY string"))
        rg = tables["RGST"].join(ch, "SN_KEY", "left")
        site_blocked = F.col("_new_TCODE3").isNotNull() & (F.col("_new_TCODE3") != F.substring("TCODE", 1, 3))
        site_suppressed = F.col("_new_TCODE3") == P.SUPPRESSED
        year_suppressed = F.col("_new_DBYEAR") == P.SUPPRESSED
        rg = rg.select(
            *[
                (
                    F.when(F.col("_new_AGE").isNotNull(), F.col("_new_AGE")).otherwise(F.col("AGE")).alias("AGE")
                    if c == "AGE"
                    else F.when(site_suppressed, None)
                    .when(site_blocked, F.col("_new_TCODE3"))
                    .otherwise(F.col("TCODE"))
                    .alias("TCODE")
                    if c == "TCODE"
                    else F.when(site_blocked, None).otherwise(F.col(c)).alias(c)
                    if c == "KCD"
                    else F.when(site_suppressed, None).otherwise(F.col(c)).alias(c)
                    if c == "MCODE"
                    else F.when(year_suppressed, None).otherwise(F.col(c)).alias(c)
                    if c in ("DBYEAR", "FDX")
                    else F.col(c)
                )
                for c in tables["RGST"].columns
            ]
        )
        bf = tables["BFC"].join(ch.select("SN_KEY", "_new_SIDO"), "SN_KEY", "left")
        bf = bf.select(
            *[
                F.when(F.col("_new_SIDO") == P.SUPPRESSED, F.lit(P.SUPPRESSED)).otherwise(F.col(c)).alias(c)
                if c == "SIDO"
                else F.col(c)
                for c in tables["BFC"].columns
            ]
        )
        new.update(RGST=rg, BFC=bf)
        if result.dropped:
            mids = [r[0] for r in tables["T200"].join(dropped, "SN_KEY", "inner").select("MID").collect()]
            gone_mids = F.broadcast(spark.createDataFrame([(m,) for m in mids], "MID string"))
            for name, df in tables.items():
                base = new.get(name, df)
                if "SN_KEY" in df.columns:
                    kept = base.join(dropped, "SN_KEY", "left_anti")
                else:
                    kept = base.join(gone_mids, "MID", "left_anti")
                new[name] = kept.select(*df.columns)
        counts = {name: tables[name].count() for name in new}  # before any table is replaced
        for name, df in new.items():
            before_rows = counts[name]
            _replace_dir(spark, df.select(*tables[name].columns), out, name)
            after_rows = spark.read.parquet(str(out / name)).count()
            metrics["rows_dropped"][name] = before_rows - after_rows
    _restore(out, [n for n in tables if n not in new])
    metrics["success"] = True
    (out / "_privacy.json").write_text(json.dumps(metrics, indent=2, default=str) + "\n", encoding="utf-8")
    return metrics
