"""Stage 3, link: pseudonymized/<build>/ (keys only) -> linked/<build>/: the cohort-only library
tables, a linkage report and the owner-only lineage.

* Cohort: the people of ``conf/library.yaml`` ``cohort.table`` (the registry) diagnosed inside
  ``privacy.window``; a person is their linkage key (LK). A registry record with a bad RRN joins
  the cohort through its secondary key (SK) when that SK belongs to exactly one valid-RRN person.
* Records of feeds that name their person link by LK (``linked_rrn``) or are ``out_of_cohort``;
  without a valid RRN they link by SK when it matches exactly one cohort person
  (``linked_secondary``), else they are ``unlinked`` (an ambiguous SK never guesses).
* Records of a ``person_via`` feed (T300/T400/T530) follow their parent row through that key.
* ``SN_KEY`` = HMAC(library secret, LK): stable across releases, useless without the secret.
* Conflicts follow ``conflicts``: exact duplicates dropped, sex taken from the registry, rows of a
  ``death_date`` table dated before the first diagnosis dropped; all counted.
* A table whose feed has nothing staged is written empty with its schema (``if_no_input: empty``)
  or left out (``omit``); the result says which and why.
Accounting per feed and year: staged = in library + out of cohort + unlinked + dropped rows.

**Reuse.** A feed's table, lineage and report rows are a function of its pseudonymized input (that
feed's own reuse key), the persons it is linked against, this stage's code, the configuration and
the library secret. The persons are a function of the registry's input and of every distinct
(SK, LK) pair, so their key digests the pairs' rows (:func:`kcure.core.reuse.relation_digest`, one
aggregate over a cached relation). A feed that follows a parent row (``person_via``) also depends
on the parent's persons per key, whose digest the parent's record keeps. A feed whose key equals an
earlier build's links that build's files and takes its report rows from that build's record; only
the others are linked and counted again. ``builds.reuse: false`` turns this off.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kcure.core import transforms as T
from kcure.core.contract import parent_of
from kcure.core.reuse import code_digest, conf_digest, enabled, key_of, read_key, relation_digest, reusable, write_key
from kcure.core.spark import local_frame, read_parquet
from kcure.core.zones import (
    DICTIONARY,
    LINEAGE,
    LINKAGE_REPORT,
    LINKAGE_STATUSES,
    link_or_copy_tree,
    restrict_tree,
)

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

    from kcure.core.config import Config
    from kcure.core.rules import LibraryTable
    from kcure.core.secrets import Secret

#: the configuration files a linked feed depends on
CONF = ("feeds.yaml", "library.yaml", "privacy.yaml")
SPARK_TYPES = {"string": "string", "int": "int", "long": "bigint", "double": "double", "date": "date"}
#: per staged record, owner-only: where it came from, whom it was linked to and what became of it
LINEAGE_COLUMNS = (
    "_feed", "_year", "_delivery", "_file", "_line",
    "SN_KEY", "_who", "_status", "_dup", "_conflict_drop", "_sex_conflict", "_in_library",
)  # fmt: skip


@dataclass
class LinkResult:
    out: Path
    tables: dict[str, int]  # rows in each table written (empty tables included)
    report: list[dict[str, Any]] = field(default_factory=list)
    empty: dict[str, str] = field(default_factory=dict)  # table -> why it has no rows (or was left out)
    reused: dict[str, str] = field(default_factory=dict)  # feed -> the earlier build whose output it links


@dataclass
class People:
    """Who is who, computed once and cached: every write of every feed must see the same persons."""

    registry: DataFrame  # the cohort feed's records with _status and PK
    cohort: DataFrame  # PK of every cohort person
    cohort_map: DataFrame  # SK -> the one cohort LK it belongs to
    facts: DataFrame  # PK -> first diagnosis, registry sex
    sn_keys: DataFrame  # PK -> SN_KEY
    pairs: DataFrame  # every distinct (SK, LK) of the feeds that name their person
    cached: list[DataFrame] = field(default_factory=list)
    parents: dict[tuple[str, str], DataFrame] = field(default_factory=dict)  # (parent feed, key) -> its persons

    def release(self) -> None:
        for df in self.cached:
            df.unpersist()


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


def people(cfg: Config, feeds: dict[str, DataFrame], keys: DataFrame) -> People:
    """The cohort, the secondary-key maps, the registry's facts per person and each person's SN_KEY."""
    from pyspark import StorageLevel
    from pyspark.sql import functions as F

    lo, hi = cfg.privacy.window
    cohort_spec = cfg.library.cohort
    registry = feeds[cfg.library.tables[cohort_spec.table].source]
    in_window = F.col(cohort_spec.diagnosis_year).between(lo, hi)
    keep = StorageLevel.MEMORY_AND_DISK
    named = [df for f, df in feeds.items() if cfg.feeds[f].names_person]
    pairs = named[0].where(F.col("LK").isNotNull() & F.col("SK").isNotNull()).select("SK", "LK")
    for df in named[1:]:
        pairs = pairs.unionByName(df.where(F.col("LK").isNotNull() & F.col("SK").isNotNull()).select("SK", "LK"))
    pairs = pairs.distinct().persist(keep)
    reg = registry.join(secondary_map(pairs), "SK", "left").withColumn("PK", F.coalesce("LK", "LK_SK"))
    cohort = reg.where(F.col("PK").isNotNull() & in_window).select("PK").distinct().persist(keep)
    cohort_map = secondary_map(pairs.join(F.broadcast(cohort), pairs.LK == cohort.PK, "inner").select("SK", "LK"))
    status = (
        F.when(F.col("PK").isNull(), "unlinked")
        .when(~in_window, "out_of_cohort")
        .when(F.col("LK").isNotNull(), "linked_rrn")
        .otherwise("linked_secondary")
    )
    reg = reg.withColumn("_status", status).withColumn("PK", F.when(F.col("_status").startswith("linked"), F.col("PK")))
    sex = [F.mode("_SEX", deterministic=True).alias("_reg_sex")] if "_SEX" in reg.columns else []
    facts = (
        reg.where(F.col("PK").isNotNull())
        .groupBy("PK")
        .agg(F.min(cohort_spec.diagnosis_date).alias("_first_dx"), *sex)
        .persist(keep)
    )
    # SN_KEY once per person, not once per record: the library's records number ~1,500 per person
    sn_keys = T.drop_keys(T.with_keys(cohort, keys).withColumn("SN_KEY", T.hmac_sha256(F.col("PK"), "sn")), keys)
    sn_keys = sn_keys.persist(keep)
    return People(reg.drop("LK_SK"), cohort, cohort_map, facts, sn_keys, pairs, [pairs, cohort, facts, sn_keys])


def _parents(df: DataFrame, key: str) -> DataFrame:
    """One status, person and SN_KEY per parent key, chosen deterministically (a linked status sorts first)."""
    from pyspark.sql import functions as F

    fields = ("_status", "PK", "SN_KEY", "_who")
    best = F.min(F.struct(*fields)).alias("_p")
    return df.groupBy(key).agg(best).select(key, *[F.col(f"_p.{c}").alias(f"_p{c}") for c in fields])


def _who(df: DataFrame) -> DataFrame:
    """``_who``: a short digest of whoever a record is about (linked, out of cohort, or its secondary key),
    so disclosure control can count the people behind a figure, not the records (owner-only lineage)."""
    from pyspark.sql import functions as F

    person = F.coalesce(F.col("PK"), F.col("LK"), F.col("SK"))
    return df.withColumn("_who", F.substring(F.sha2(F.concat(F.lit("who|"), person), 256), 1, 16))


def assign(cfg: Config, feeds: dict[str, DataFrame], who: People) -> dict[str, DataFrame]:
    """Every feed's records with ``_status``, ``PK`` and ``SN_KEY``; via feeds follow their parent row."""
    from pyspark import StorageLevel
    from pyspark.sql import functions as F

    registry = cfg.library.tables[cfg.library.cohort.table].source
    out: dict[str, DataFrame] = {}
    for f, df in feeds.items():
        if cfg.feeds[f].names_person:
            own = who.registry if f == registry else classify(df, who.cohort, who.cohort_map)
            out[f] = _who(own.join(who.sn_keys, "PK", "left"))
    parents = who.parents  # cached: every write below must see the same parents
    for f, df in feeds.items():
        feed = cfg.feeds[f]
        if feed.person_via is None:
            continue
        key, parent = feed.person_via, parent_of(cfg.feeds, feed).name
        if parent not in out:  # nothing staged to follow: every row is unlinked, and counted
            none = F.lit(None).cast("string")
            out[f] = df.withColumn("_status", F.lit("unlinked"))
            out[f] = out[f].withColumn("PK", none).withColumn("SN_KEY", none).withColumn("_who", none)
            continue
        if (parent, key) not in parents:
            # one row per statement: at 5% its cached blocks outgrow the heap, and a MEMORY_AND_DISK
            # block spilled to disk is read back into memory whole (an OutOfMemoryError in link)
            parents[(parent, key)] = _parents(out[parent], key).persist(StorageLevel.DISK_ONLY)
            who.cached.append(parents[(parent, key)])
        via = F.col("_p_status").startswith("linked")
        status = F.when(via, "linked_via_mid").otherwise(F.coalesce(F.col("_p_status"), F.lit("unlinked")))
        out[f] = (
            df.join(parents[(parent, key)], key, "left")
            .withColumn("_status", status)
            .withColumn("PK", F.when(via, F.col("_pPK")))
            .withColumn("SN_KEY", F.when(via, F.col("_pSN_KEY")))
            .withColumn("_who", F.col("_p_who"))
            .drop("_p_status", "_pPK", "_pSN_KEY", "_p_who")
        )
    return out


def resolve_conflicts(cfg: Config, df: DataFrame, table: LibraryTable, facts: DataFrame) -> DataFrame:
    """``_dup``, ``_sex_conflict``, ``_conflict_drop`` and ``_in_library`` as ``conflicts`` says."""
    from pyspark.sql import functions as F

    rules = cfg.library.conflicts
    if rules.duplicates != "drop":
        df = df.withColumn("_dup", F.lit(False))
    has_sex = "_SEX" in df.columns and "_reg_sex" in facts.columns
    if has_sex or table.death_date:
        df = df.join(facts, "PK", "left")
    if has_sex:
        differs = F.col("_reg_sex").isNotNull() & (F.col("_SEX") != F.col("_reg_sex"))
        df = df.withColumn("_sex_conflict", F.coalesce(differs, F.lit(False)))
        if rules.sex == "registry" and "SEX" in table.column_names:
            df = df.withColumn("SEX", F.coalesce(F.col("_reg_sex"), F.col("SEX")))
    else:
        df = df.withColumn("_sex_conflict", F.lit(False))
    conflict = F.lit(False)
    if table.death_date and rules.death_before_diagnosis == "drop_death":
        first_day = F.rpad(F.col("_first_dx"), 8, "01")  # a yyyyMM diagnosis counts from its month's first day
        conflict = F.coalesce(F.col(table.death_date) < first_day, F.lit(False))
    df = df.withColumn("_conflict_drop", conflict)
    if table.death_date and rules.several_deaths == "keep_rrn":
        df = df.withColumn("_conflict_drop", F.col("_conflict_drop") | second_death(df))
    return df.withColumn("_in_library", F.col("PK").isNotNull() & ~F.col("_dup") & ~F.col("_conflict_drop"))


def second_death(df: DataFrame) -> Any:
    """True for a death row that ``conflicts.several_deaths: keep_rrn`` drops: of a person's rows still
    standing, the one linked by RRN is kept (the latest delivered: delivery, year, file, line), and a row
    linked by secondary key only when it is the person's one row.

    One window over the person; a row without a person is its own partition (its source position),
    so the death feed's many out-of-cohort rows are not all sorted in one task.
    """
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    standing = F.col("PK").isNotNull() & ~F.col("_dup") & ~F.col("_conflict_drop")
    rrn = F.col("_status") == "linked_rrn"
    where = ("_year", "_delivery", "_file", "_line")
    person = F.coalesce(F.col("PK"), F.concat_ws("|", F.lit("row"), *[F.col(c).cast("string") for c in where]))
    w = Window.partitionBy(person)
    best = Window.partitionBy(person).orderBy(
        standing.desc(), rrn.desc(), *[F.col(c).desc() for c in ("_delivery", "_year", "_file", "_line")]
    )
    rows = F.sum(F.when(standing, 1).otherwise(0)).over(w)
    kept = (F.row_number().over(best) == 1) & (rrn | (rows == 1))
    return standing & ~kept


def library_columns(df: DataFrame, table: LibraryTable) -> DataFrame:
    from pyspark.sql import functions as F

    return df.select(*[F.col(c.name).cast(SPARK_TYPES[c.type]).alias(c.name) for c in table.columns])


def empty_table(spark: SparkSession, table: LibraryTable) -> DataFrame:
    fields = ", ".join(f"{c.name} {SPARK_TYPES[c.type]}" for c in table.columns)
    return local_frame(spark, [], fields)


def write_feed(spark: SparkSession, df: DataFrame, feed: str, table: LibraryTable, out: Path) -> None:
    """The table's rows and the feed's lineage (the report is counted from every feed's lineage at the end)."""
    # Two writes, each recomputing its own narrow plan: Spark prunes each one's join to the columns
    # it writes, which costs less than caching every column of a feed. Both see the same rows:
    # every input is deterministic (the parents and person facts are cached).
    spark.sparkContext.setJobDescription(f"link: {feed} -> {table.name}")  # names the jobs in the UI/event log
    library_columns(df.where("_in_library"), table).write.mode("overwrite").parquet(str(out / table.name))
    spark.sparkContext.setJobDescription(f"link: {feed} lineage")
    df.select(*LINEAGE_COLUMNS).write.mode("overwrite").parquet(str(out / LINEAGE / feed))


def report(spark: SparkSession, lineage: list[Path]) -> list[dict[str, Any]]:
    """The linkage report of every feed-year, counted from the written lineage in one query.

    Rows are first grouped by feed, year and the person behind a kept linked or unlinked record (every
    other row falls in its feed-year's one group without a person), then by feed and year: the
    second level sums the counts and counts the people, so no count-distinct expands row by row and
    one pass serves every feed. An unlinked record about nobody known (no ``_who``) counts as one person.
    """
    from functools import reduce

    from pyspark.sql import functions as F

    spark.sparkContext.setJobDescription("link: report")
    written = reduce(lambda a, b: a.unionByName(b), [read_parquet(spark, p) for p in lineage])
    kept = ~F.col("_dup") & ~F.col("_conflict_drop")
    linked = F.col("_status").startswith("linked")
    who = F.when(linked, F.col("SN_KEY")).otherwise(F.coalesce(F.col("_who"), F.lit("")))
    person = kept & (linked | (F.col("_status") == "unlinked")) & who.isNotNull()

    def n(cond: Any) -> Any:
        return F.sum(F.when(cond, 1).otherwise(0)).alias("n")

    counts = {
        "staged": F.lit(True),
        **{s: (F.col("_status") == s) & kept for s in LINKAGE_STATUSES},
        "duplicates_dropped": F.col("_dup"),
        "conflicts_dropped": ~F.col("_dup") & F.col("_conflict_drop"),
        "sex_conflicts_flagged": F.col("_sex_conflict"),
        "in_library": F.col("_in_library"),
    }
    first = written.groupBy(
        "_feed", "_year", F.when(person, linked).alias("_linked"), F.when(person, who).alias("_p")
    ).agg(*[n(cond).alias(name) for name, cond in counts.items()])
    rows = (
        first.groupBy("_feed", "_year")
        .agg(
            *[F.sum(name).alias(name) for name in counts],
            F.sum(F.when(F.col("_linked"), 1).otherwise(0)).alias("linked_persons"),
            F.sum(F.when(~F.col("_linked"), 1).otherwise(0)).alias("unlinked_persons"),
        )
        .collect()
    )
    return [{k: (int(v) if isinstance(v, int) else v) for k, v in row.asDict().items()} for row in rows]


@dataclass
class Reuse:
    """What each feed's link output is a function of (see the module's "Reuse"), and what was reused."""

    base: dict[str, str]  # this stage's code, the configuration and the library secret's fingerprint
    people: str | None  # the key of the persons every feed is linked against (None: reuse is off)
    parents: dict[tuple[str, str], str] = field(default_factory=dict)  # (parent, key) -> its persons' digest
    reused: dict[str, str] = field(default_factory=dict)  # feed -> the earlier build whose output it links
    report: list[dict[str, Any]] = field(default_factory=list)  # the reused feeds' report rows

    def key(self, cfg: Config, src: Path, f: str, present: set[str]) -> str | None:
        """The key of feed ``f``'s link output (``present``: the feeds pseudonymized), or None where it
        cannot be known: then the feed is linked again and no key is written."""
        made = read_key(src / f)  # the pseudonymized feed's own key: what it was made from
        if self.people is None or made is None:
            return None
        doc: dict[str, Any] = {**self.base, "people": self.people, "feed": f, "input": made["key"]}
        feed = cfg.feeds[f]
        if feed.person_via is not None:
            parent = (parent_of(cfg.feeds, feed).name, feed.person_via)
            if parent[0] not in present:
                doc["parent"] = "none staged"
            elif parent in self.parents:
                doc["parent"] = self.parents[parent]
            else:
                return None  # the parent's persons are unknown (its own key could not be made)
        return key_of(doc)


def _reuse_plan(cfg: Config, library_secret: Secret, src: Path, who: People) -> Reuse:
    registry = cfg.library.tables[cfg.library.cohort.table].source
    base = {"code": code_digest(__name__), "conf": conf_digest(cfg, CONF), "secret": library_secret.fingerprint()}
    made = read_key(src / registry)
    if not enabled(cfg) or made is None:
        return Reuse(base, None)
    # the persons are a function of the registry and of every (SK, LK) pair: digest the pairs' rows
    return Reuse(base, key_of({**base, "registry": made["key"], "pairs": relation_digest(who.pairs)}))


def _reuse(out: Path, f: str, table: str, earlier: Path, doc: dict[str, Any], plan: Reuse) -> None:
    """Link an earlier build's table and lineage of feed ``f`` into this build, with what its key recorded."""
    link_or_copy_tree(earlier, out / LINEAGE / f)
    link_or_copy_tree(earlier.parent.parent / table, out / table)
    plan.reused[f] = earlier.parent.parent.name
    plan.report += doc.get("report", [])
    for key, digest in doc.get("parents", {}).items():
        plan.parents[(f, key)] = digest


def _empty_tables(spark: SparkSession, cfg: Config, present: set[str], result: LinkResult) -> None:
    """The tables whose feed has nothing staged: written empty, or left out, as ``if_no_input`` says."""
    for name, table in cfg.library.tables.items():
        if table.source in present:
            continue
        if table.if_no_input == "omit":
            result.empty[name] = f"left out: nothing of {table.source} is staged (if_no_input: omit)"
            continue
        empty_table(spark, table).write.mode("overwrite").parquet(str(result.out / name))
        result.tables[name] = 0
        result.empty[name] = f"no rows: nothing of {table.source} is staged"


def run(spark: SparkSession, cfg: Config, library_secret: Secret, src: Path, out: Path) -> LinkResult:
    """Link the pseudonymized feeds in ``src`` into the library tables, report and lineage in ``out``."""
    by_feed = cfg.library.by_feed
    feeds = {f: read_parquet(spark, src / f) for f in cfg.feeds if f in by_feed and (src / f).exists()}
    registry = cfg.library.tables[cfg.library.cohort.table].source
    if registry not in feeds:
        raise RuntimeError(f"no pseudonymized {registry} in {src}: nothing defines the cohort")
    who = people(cfg, feeds, T.key_relation(spark, {"sn": library_secret}))
    spark.sparkContext.setJobDescription("link: reuse digest of the persons")
    plan = _reuse_plan(cfg, library_secret, src, who)
    result = LinkResult(out, {})
    made: dict[str, str] = {}  # feed -> key of the outputs written (not reused) in this build
    for f, df in assign(cfg, feeds, who).items():  # the feeds that name their person come first
        table = cfg.library.tables[by_feed[f]]
        result.tables[table.name] = 0
        key = plan.key(cfg, src, f, set(feeds))
        earlier = reusable(out, f"{LINEAGE}/{f}", key) if key is not None else None
        if earlier is not None:
            _reuse(out, f, table.name, *earlier, plan)
            continue
        write_feed(spark, resolve_conflicts(cfg, df, table, who.facts), f, table, out)
        if key is not None:
            made[f] = key
            for (parent, k), persons in who.parents.items():
                if parent == f:
                    spark.sparkContext.setJobDescription(f"link: reuse digest of {f}'s persons by {k}")
                    plan.parents[(f, k)] = relation_digest(persons)
    who.release()
    fresh = [f for f in feeds if f not in plan.reused]
    result.report = (report(spark, [out / LINEAGE / f for f in fresh]) if fresh else []) + plan.report
    for f, key in made.items():  # last, once the feed's report is known: its outputs are complete
        parents = {k: d for (p, k), d in plan.parents.items() if p == f}
        write_key(out / LINEAGE / f, key, parents=parents, report=[r for r in result.report if r["_feed"] == f])
    result.reused = plan.reused
    _empty_tables(spark, cfg, set(feeds), result)
    result.report.sort(key=lambda r: (r["_feed"], r["_year"]))
    for r in result.report:
        result.tables[by_feed[str(r["_feed"])]] += int(r["in_library"])
    restrict_tree(out / LINEAGE)  # lineage + staging would map SN_KEY back to a person: owner-only
    write_dictionary(cfg, out, [t for t in cfg.library.tables if t in result.tables])
    (out / LINKAGE_REPORT).write_text(json.dumps(result.report, indent=2) + "\n", encoding="utf-8")
    return result


def write_dictionary(cfg: Config, out: Path, tables: list[str]) -> None:
    """The data dictionary of the library, generated from conf/library.yaml."""
    rows = [
        {
            "table": name,
            "column": c.name,
            "type": c.type,
            "meaning": c.meaning,
            "generalization": c.generalization,
        }
        for name in tables
        for c in cfg.library.tables[name].columns
    ]
    out.mkdir(parents=True, exist_ok=True)
    (out / DICTIONARY).write_text(json.dumps(rows, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    lines = ["| table | column | type | meaning | generalization |", "|---|---|---|---|---|"]
    lines += [f"| {r['table']} | {r['column']} | {r['type']} | {r['meaning']} | {r['generalization']} |" for r in rows]
    (out / DICTIONARY.replace(".json", ".md")).write_text("\n".join(lines) + "\n", encoding="utf-8")


def describe(report: list[dict[str, Any]]) -> str:
    """The linkage report summed per feed, for people."""
    cols = (
        "staged",
        *LINKAGE_STATUSES,
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
