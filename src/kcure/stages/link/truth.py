"""Linkage quality against a synthetic population's ground truth (``kcure generate``'s ``_truth/``).

Every staged record keeps its lineage (feed, year, delivery, file, line) through linking, and the
generator records the true person of every delivered line. An SN_KEY's true person is the one most
of its registry records belong to. Then, over records whose true person is in the cohort:
* precision = records linked to the right SN_KEY / records linked;
* recall    = records linked to the right SN_KEY / records whose true person is in the cohort.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession


def _truth_rows(spark: SparkSession, truth: Path) -> DataFrame:
    from pyspark.sql import functions as F

    files = sorted(str(p) for p in (truth / "rows").glob("*/*/*/*.parquet"))
    df = spark.read.parquet(*files).withColumn("_path", F.input_file_name())
    parts = F.split(F.col("_path"), "/")
    n = F.size(parts)
    return df.select(
        F.element_at(parts, n - 3).alias("_feed"),
        F.element_at(parts, n - 2).cast("int").alias("_year"),
        F.substring(F.element_at(parts, n - 1), 2, 3).cast("int").alias("_delivery"),
        F.element_at(parts, n).alias("_part"),
        F.col("line").alias("_line"),
        F.col("person_id"),
    )


def evaluate(spark: SparkSession, linked_dir: Path, truth: Path) -> dict[str, Any]:
    from pyspark.sql import functions as F

    lineage = spark.read.parquet(*sorted(str(p) for p in (linked_dir / "_lineage").iterdir() if p.is_dir()))
    lineage = lineage.withColumn("_part", F.concat(F.regexp_extract("_file", r"^(part-\d+)", 1), F.lit(".parquet")))
    rows = lineage.join(_truth_rows(spark, truth), ["_feed", "_year", "_delivery", "_part", "_line"], "left")
    persons = spark.read.parquet(str(truth / "persons.parquet")).select("person_id", "cohort")
    rows = rows.join(F.broadcast(persons), "person_id", "left")
    sn_truth = (
        rows.where((F.col("_feed") == "kccr_registry") & F.col("SN_KEY").isNotNull())
        .groupBy("SN_KEY")
        .agg(F.mode("person_id").alias("_sn_person"))
    )
    rows = rows.join(sn_truth, "SN_KEY", "left").where(~F.col("_dup"))
    linked = F.col("SN_KEY").isNotNull()
    correct = linked & (F.col("_sn_person") == F.col("person_id"))
    agg = (
        rows.groupBy("_feed", "_year")
        .agg(
            F.sum(F.when(linked, 1).otherwise(0)).alias("linked"),
            F.sum(F.when(correct, 1).otherwise(0)).alias("correct"),
            F.sum(F.when(F.col("cohort"), 1).otherwise(0)).alias("true_cohort"),
            F.sum(F.when(F.col("person_id").isNull(), 1).otherwise(0)).alias("no_truth"),
        )
        .collect()
    )
    per = [r.asDict() for r in agg]
    tot = {k: sum(int(r[k]) for r in per) for k in ("linked", "correct", "true_cohort", "no_truth")}
    return {
        "precision": tot["correct"] / tot["linked"] if tot["linked"] else 1.0,
        "recall": tot["correct"] / tot["true_cohort"] if tot["true_cohort"] else 1.0,
        **tot,
        "per_feed_year": sorted(per, key=lambda r: (r["_feed"], r["_year"])),
    }
