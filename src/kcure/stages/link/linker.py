"""Link: pseudonymized feeds (keys only) -> the ten cohort-only library tables and a linkage report.

* Cohort: registry records diagnosed inside ``privacy.window.diagnosis_years``; a person is their
  linkage key (LK). A registry record with a bad RRN joins the cohort through its secondary key (SK)
  when that SK belongs to exactly one valid-RRN person anywhere.
* Records with a valid RRN link by LK (``linked_rrn``) or are ``out_of_cohort``. Records without one
  link by SK when it matches exactly one cohort person (``linked_secondary``), else ``unlinked``.
* T300/T400/T530 follow their T200 statement through the substitute MID.
* ``SN_KEY`` = HMAC(library secret, LK): stable across releases, useless without the secret.
* Conflicts are resolved by ``conf/library.yaml`` ``conflicts``: exact duplicates dropped, sex taken
  from the registry, deaths dated before the first diagnosis month dropped; all counted.
Accounting per feed and year: staged = in library + out of cohort + unlinked + dropped conflicts.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kcure.core import transforms as T
from kcure.core.config import Config
from kcure.stages.pseudonymize import PERSON_FEEDS

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

    from kcure.core.secrets import Secret

SPARK_TYPES = {"string": "string", "int": "int", "long": "bigint", "double": "double", "date": "date"}
CHILD_FEEDS = ("hira_t300", "hira_t400", "hira_t530")
STATUSES = ("linked_rrn", "linked_secondary", "linked_via_mid", "out_of_cohort", "unlinked")
#: where the privacy step keeps link's version of each table it replaces (see privacy_gate)
PRE_PRIVACY = "_pre_privacy"
#: per staged record, owner-only: where it came from, whom it was linked to and what became of it
LINEAGE = (
    "_feed", "_year", "_delivery", "_file", "_line",
    "SN_KEY", "_status", "_dup", "_conflict_drop", "_sex_conflict", "_in_library",
)  # fmt: skip


@dataclass
class LinkResult:
    out: Path
    tables: dict[str, int]
    report: list[dict[str, Any]] = field(default_factory=list)


def library_tables(cfg: Config) -> dict[str, dict[str, Any]]:
    tables: dict[str, dict[str, Any]] = cfg.library["tables"]
    return tables


def feed_table(cfg: Config) -> dict[str, str]:
    return {spec["source"]: name for name, spec in library_tables(cfg).items()}


def secondary_map(pairs: DataFrame) -> DataFrame:
    """SK -> LK where the SK belongs to exactly one LK (ambiguous secondary keys resolve to nothing)."""
    from pyspark.sql import functions as F

    return (
        pairs.groupBy("SK")
        .agg(F.countDistinct("LK").alias("_n"), F.min("LK").alias("LK_SK"))
        .where(F.col("_n") == 1)
        .select("SK", "LK_SK")
    )


def classify(df: DataFrame, cohort: DataFrame, sk_map: DataFrame) -> DataFrame:
    """Add ``_status`` and ``PK`` (the person's LK) to a person feed's records."""
    from pyspark.sql import functions as F

    df = df.join(F.broadcast(cohort.select(F.col("PK").alias("LK"), F.lit(True).alias("_in"))), "LK", "left")
    df = df.join(sk_map, "SK", "left")
    status = (
        F.when(F.col("LK").isNotNull() & F.col("_in").isNotNull(), "linked_rrn")
        .when(F.col("LK").isNotNull(), "out_of_cohort")
        .when(F.col("LK_SK").isNotNull(), "linked_secondary")
        .otherwise("unlinked")
    )
    pk = F.when(status == "linked_rrn", F.col("LK")).when(status == "linked_secondary", F.col("LK_SK"))
    return df.withColumn("_status", status).withColumn("PK", pk).drop("_in", "LK_SK")


def _select_library(df: DataFrame, spec: dict[str, Any]) -> DataFrame:
    from pyspark.sql import functions as F

    return df.select(*[F.col(c["name"]).cast(SPARK_TYPES[c["type"]]).alias(c["name"]) for c in spec["columns"]])


def run(spark: SparkSession, cfg: Config, library_secret: Secret, build: str) -> LinkResult:
    from pyspark import StorageLevel
    from pyspark.sql import functions as F

    src = cfg.local_path("pseudonymized") / build
    out = cfg.local_path("linked") / build
    # a new link output: the privacy step's copy of the previous one must not outlive it
    shutil.rmtree(out / PRE_PRIVACY, ignore_errors=True)
    lo, hi = (int(y) for y in cfg.privacy["window"]["diagnosis_years"])
    rules = cfg.library["conflicts"]
    tables = library_tables(cfg)
    by_feed = feed_table(cfg)
    feeds = {f: spark.read.parquet(str(src / f)) for f in by_feed if (src / f).exists()}
    if "kccr_registry" not in feeds:
        raise RuntimeError(f"no pseudonymized registry in {src}: nothing defines the cohort")
    keys = T.key_relation(spark, {"sn": library_secret})

    # 1. who is in the cohort
    pairs = None
    for f in PERSON_FEEDS:
        if f in feeds:
            p = feeds[f].where(F.col("LK").isNotNull() & F.col("SK").isNotNull()).select("SK", "LK")
            pairs = p if pairs is None else pairs.unionByName(p)
    assert pairs is not None
    pairs = pairs.distinct().persist(StorageLevel.MEMORY_AND_DISK)
    reg = feeds["kccr_registry"].join(secondary_map(pairs), "SK", "left")
    reg = reg.withColumn("PK", F.coalesce("LK", "LK_SK"))
    cohort = (reg.where(F.col("PK").isNotNull() & F.col("DBYEAR").between(lo, hi)).select("PK").distinct()).persist(
        StorageLevel.MEMORY_AND_DISK
    )
    cohort_map = secondary_map(pairs.join(F.broadcast(cohort), pairs.LK == cohort.PK, "inner").select("SK", "LK"))

    # 2. person-level facts used to resolve conflicts
    reg_status = (
        F.when(F.col("PK").isNull(), "unlinked")
        .when(~F.col("DBYEAR").between(lo, hi), "out_of_cohort")
        .when(F.col("LK").isNotNull(), "linked_rrn")
        .otherwise("linked_secondary")
    )
    reg = reg.withColumn("_status", reg_status).withColumn(
        "PK", F.when(F.col("_status").startswith("linked"), F.col("PK"))
    )
    person = (
        reg.where(F.col("PK").isNotNull())
        .groupBy("PK")
        .agg(
            F.min("FDX").alias("_first_fdx"),
            F.mode("SEX", deterministic=True).alias("_reg_sex"),
        )
        .persist(StorageLevel.MEMORY_AND_DISK)
    )
    # SN_KEY once per person, not once per record: the library's records number ~1,500 per person
    sn_keys = (
        T.drop_keys(T.with_keys(cohort, keys).withColumn("SN_KEY", T.hmac_sha256(F.col("PK"), "sn")), keys)
    ).persist(StorageLevel.MEMORY_AND_DISK)

    report_rows: list[Any] = []
    counts: dict[str, int] = {}
    linked: dict[str, DataFrame] = {}
    for f, df in feeds.items():
        if f == "kccr_registry":
            linked[f] = reg.drop("LK_SK")
        elif f in PERSON_FEEDS:
            linked[f] = classify(df, cohort, cohort_map)
    for f in list(linked):
        linked[f] = linked[f].join(sn_keys, "PK", "left")
    # children follow their T200 statement. One status per MID, chosen deterministically (a linked
    # status sorts first), and cached: every write below must see the same parents.
    parents = None
    if "hira_t200" in linked:
        parents = (
            linked["hira_t200"]
            .groupBy("MID")
            .agg(F.min(F.struct("_status", "PK", "SN_KEY")).alias("_p"))
            .select(
                "MID",
                F.col("_p._status").alias("_parent"),
                F.col("_p.PK").alias("_ppk"),
                F.col("_p.SN_KEY").alias("_psn"),
            )
            .persist(StorageLevel.MEMORY_AND_DISK)
        )
        for f in CHILD_FEEDS:
            if f in feeds:
                c = feeds[f].join(parents, "MID", "left")
                via = F.col("_parent").startswith("linked")
                status = F.when(via, "linked_via_mid").otherwise(F.coalesce(F.col("_parent"), F.lit("unlinked")))
                linked[f] = (
                    c.withColumn("_status", status)
                    .withColumn("PK", F.when(via, F.col("_ppk")))
                    .withColumn("SN_KEY", F.when(via, F.col("_psn")))
                    .drop("_parent", "_ppk", "_psn")
                )

    for f, df in linked.items():
        spec = tables[by_feed[f]]
        # exact duplicates were marked by pseudonymize, which still saw the whole delivered record
        if rules.get("duplicates") != "drop":
            df = df.withColumn("_dup", F.lit(False))
        conflict = F.lit(False)
        if f in ("kccr_registry", "nhis_eligibility", "kostat_death"):
            df = df.join(person, "PK", "left")
            sex_col = "_SEX" if f == "kostat_death" else "SEX"
            sex_conflict = F.col("_reg_sex").isNotNull() & (F.col(sex_col) != F.col("_reg_sex"))
            df = df.withColumn("_sex_conflict", F.coalesce(sex_conflict, F.lit(False)))
            if rules.get("sex") == "registry" and f != "kostat_death":
                df = df.withColumn("SEX", F.coalesce(F.col("_reg_sex"), F.col("SEX")))
            if f == "kostat_death" and rules.get("death_before_diagnosis") == "drop_death":
                conflict = F.coalesce(F.col("DREGDATE") < F.concat(F.col("_first_fdx"), F.lit("01")), F.lit(False))
        else:
            df = df.withColumn("_sex_conflict", F.lit(False))
        df = df.withColumn("_conflict_drop", conflict)
        df = df.withColumn("_in_library", F.col("PK").isNotNull() & ~F.col("_dup") & ~F.col("_conflict_drop"))
        table = by_feed[f]
        # Two writes, each recomputing its own narrow plan: Spark prunes each one's join to the columns
        # it writes, which costs less than caching every column of a feed. Both see the same rows:
        # every input is deterministic (the parents and person facts are cached).
        spark.sparkContext.setJobDescription(f"link: {f} -> {table}")  # names the Spark jobs in the UI/event log
        _select_library(df.where("_in_library"), spec).write.mode("overwrite").parquet(str(out / table))
        spark.sparkContext.setJobDescription(f"link: {f} lineage")
        df.select(*LINEAGE).write.mode("overwrite").parquet(str(out / "_lineage" / f))
        spark.sparkContext.setJobDescription(f"link: {f} report")
        written = spark.read.parquet(str(out / "_lineage" / f))
        not_dropped = ~F.col("_dup") & ~F.col("_conflict_drop")
        report_rows += (
            written.groupBy("_feed", "_year")
            .agg(
                F.count(F.lit(1)).alias("staged"),
                *[F.sum(F.when((F.col("_status") == s) & not_dropped, 1).otherwise(0)).alias(s) for s in STATUSES],
                F.sum(F.when(F.col("_dup"), 1).otherwise(0)).alias("duplicates_dropped"),
                F.sum(F.when(~F.col("_dup") & F.col("_conflict_drop"), 1).otherwise(0)).alias("conflicts_dropped"),
                F.sum(F.when(F.col("_sex_conflict"), 1).otherwise(0)).alias("sex_conflicts_flagged"),
                F.sum(F.when(F.col("_in_library"), 1).otherwise(0)).alias("in_library"),
            )
            .collect()
        )
        counts[table] = 0
    report = [{k: (int(v) if isinstance(v, int) else v) for k, v in row.asDict().items()} for row in report_rows]
    report.sort(key=lambda r: (r["_feed"], r["_year"]))
    for r in report:
        counts[by_feed[str(r["_feed"])]] += int(r["in_library"])
    for cached in (pairs, cohort, person, sn_keys, parents):
        if cached is not None:
            cached.unpersist()
    restrict(out / "_lineage")  # lineage + staging would map SN_KEY back to a person: owner-only
    write_dictionary(cfg, out)
    (out / "_linkage_report.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    return LinkResult(out, counts, report)


def write_dictionary(cfg: Config, out: Path) -> None:
    """The data dictionary of the library, generated from conf/library.yaml."""
    rows = []
    for table, spec in library_tables(cfg).items():
        for c in spec["columns"]:
            rows.append(
                {
                    "table": table,
                    "column": c["name"],
                    "type": c["type"],
                    "meaning": c.get("meaning", ""),
                    "generalization": c.get("generalization", ""),
                }
            )
    out.mkdir(parents=True, exist_ok=True)
    (out / "_dictionary.json").write_text(json.dumps(rows, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    lines = ["| table | column | type | meaning | generalization |", "|---|---|---|---|---|"]
    lines += [f"| {r['table']} | {r['column']} | {r['type']} | {r['meaning']} | {r['generalization']} |" for r in rows]
    (out / "_dictionary.md").write_text("\n".join(lines) + "\n", encoding="utf-8")


def describe(report: list[dict[str, Any]]) -> str:
    """The linkage report summed per feed, for people."""
    cols = (
        "staged",
        "linked_rrn",
        "linked_secondary",
        "linked_via_mid",
        "out_of_cohort",
        "unlinked",
        "duplicates_dropped",
        "conflicts_dropped",
        "sex_conflicts_flagged",
        "in_library",
    )
    heads = ("staged", "by RRN", "by 2nd key", "via MID", "out", "unlinked", "dups", "conflict", "sex!", "library")
    lines = [f"{'feed':<18}" + "".join(f"{h:>11}" for h in heads)]
    feeds: dict[str, dict[str, int]] = {}
    for r in report:
        acc = feeds.setdefault(r["_feed"], dict.fromkeys(cols, 0))
        for c in cols:
            acc[c] += int(r[c])
    for f, acc in feeds.items():
        lines.append(f"{f:<18}" + "".join(f"{acc[c]:>11,}" for c in cols))
    return "\n".join(lines)


def restrict(path: Path) -> None:
    """Owner-only: the directory tree and every file in it."""
    import os

    for root, _dirs, files in os.walk(path):
        os.chmod(root, 0o700)
        for f in files:
            os.chmod(os.path.join(root, f), 0o600)
