"""Stage 2, pseudonymize: staging/ (identifiers) -> pseudonymized/<build>/<feed>/ (keys + payload).

The only stage that sees identifiers and the linkage secret. For every staged row of a feed that
names its person (an ``rrn`` column in ``conf/feeds.yaml``) it computes
* ``LK``: HMAC-SHA256(linkage secret, normalized RRN) when the RRN passes its check digit;
* ``SK``: HMAC-SHA256(linkage secret, "SK|name|birth|sex") where name, birth date and sex are known
  (birth and sex from the feed's own columns, else from the RRN's first seven digits).
Every row of every feed gets the payload ``conf/library.yaml`` describes for its table: each
column made ``from`` a source column by its ``rule`` (generalizations with the parameters of
``conf/privacy.yaml``, keyed substitutes for source keys). Nothing else survives: no identifier,
no source key. Exact duplicates are flagged here, where the whole delivered record is visible, and
``_SEX`` keeps a feed's own sex for the link stage's conflict count. Lineage (``_feed, _year,
_delivery, _file, _line``) is kept for accounting.

**Reuse.** A pseudonymized feed is a function of the live staged version of every year of that
feed (exact duplicates are recognized across the feed's years), the configuration that shapes it
(``feeds.yaml``, ``library.yaml``, ``privacy.yaml``), this stage's code and the two secrets. Their
digest, :func:`feed_key`, is written next to the output as ``_REUSE_KEY`` after the write. A later
build whose key for a feed equals an earlier build's links that build's files (hard links, no
bytes copied) instead of pseudonymizing the feed again, and says so in its summary and in the
release manifest. ``builds.reuse: false`` in ``conf/pipeline.yaml`` turns this off.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

from kcure.core import transforms as T
from kcure.core.reuse import code_digest, conf_digest, enabled, key_of, reusable, write_key
from kcure.core.staging import Staging
from kcure.core.zones import link_or_copy_tree

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame, SparkSession

    from kcure.core.config import Config, Feed
    from kcure.core.rules import Generalization, LibraryColumn, LibraryTable
    from kcure.core.secrets import Secret

LINEAGE = ["_feed", "_year", "_delivery", "_file", "_line"]
KEYS = ["LK", "SK", "RRN_VALID"]
SPARK_TYPES = {"string": "string", "int": "int", "long": "bigint", "double": "double", "date": "date"}


@dataclass
class PseudonymizeResult:
    out: Path
    feeds: list[str]  # the feeds that had staged data
    missing: list[str] = field(default_factory=list)  # the feeds with nothing staged
    reused: dict[str, str] = field(default_factory=dict)  # feed -> the earlier build whose output it links


#: the configuration files a pseudonymized feed depends on
CONF = ("feeds.yaml", "library.yaml", "privacy.yaml")


def feed_key(cfg: Config, staging: Staging, feed: str, secrets: dict[str, Secret], code: str) -> str:
    """The digest a pseudonymized feed is a function of (see the module's "Reuse")."""
    versions = {}
    for year_dir in sorted((staging.root / feed).glob("[0-9]" * 4)):
        cur = staging.current(feed, int(year_dir.name))
        if cur is not None:
            versions[year_dir.name] = cur.version
    doc = {
        "feed": feed,
        "staged": versions,
        "conf": conf_digest(cfg, CONF),
        "code": code,
        "secrets": {kind: s.fingerprint() for kind, s in sorted(secrets.items())},
    }
    return key_of(doc)


def read_staged(spark: SparkSession, staging: Staging, feed: str) -> DataFrame | None:
    """The live staged version of every year of a feed, with ``_feed`` and ``_year``."""
    from pyspark.sql import functions as F

    from kcure.core.spark import read_parquet

    frames = []
    for year_dir in sorted((staging.root / feed).glob("[0-9]" * 4)):
        path = staging.current_path(feed, int(year_dir.name))
        if path is None:
            continue
        df = read_parquet(spark, path).withColumn("_feed", F.lit(feed)).withColumn("_year", F.lit(int(year_dir.name)))
        frames.append(df)
    if not frames:
        return None
    out = frames[0]
    for f in frames[1:]:
        out = out.unionByName(f)
    return out


def identity_keys(df: DataFrame, has_birth_sex: bool) -> DataFrame:
    """LK, SK and RRN_VALID from RRN, NAME and (if present) BRTH and SEX. Needs the 'link' key pads.

    The cleaned RRN, its validity, birth date and sex are columns of their own, one projection each:
    written as one nested expression, Spark would re-run the RRN's regex for every digit it checks.
    """
    from pyspark.sql import functions as F

    c = F.col
    # one projection per step, each reading the columns of the step before: the regexes run once, and
    # rrn_digits_only / normalized_name are completed by nonblank() over the cleaned columns
    df = df.withColumn("_rrn", T.rrn_digits(c("RRN"))).withColumn("_name", T.squeezed_name(c("NAME")))
    df = df.withColumn("_rrn", T.nonblank(c("_rrn"))).withColumn("_name", T.nonblank(c("_name")))
    birth = F.coalesce(c("BRTH"), T.rrn_birth(c("_rrn"))) if has_birth_sex else T.rrn_birth(c("_rrn"))
    sex = F.coalesce(c("SEX"), T.rrn_sex(c("_rrn"))) if has_birth_sex else T.rrn_sex(c("_rrn"))
    df = df.withColumn("RRN_VALID", T.rrn_valid(c("_rrn"))).withColumn("_birth", birth).withColumn("_sex", sex)
    df = df.withColumn("_sk_msg", T.secondary_message(c("_name"), c("_birth"), c("_sex"), normalized=True))
    return (
        df.withColumn("LK", F.when(c("RRN_VALID"), T.hmac_sha256(c("_rrn"), "link")))
        .withColumn("SK", F.when(c("_sk_msg").isNotNull(), T.hmac_sha256(c("_sk_msg"), "link")))
        .drop("_rrn", "_name", "_birth", "_sex", "_sk_msg")
    )


def _age_at(p: dict[str, str]) -> Column:
    from pyspark.sql import functions as F

    return F.col(p["at"]) if "at" in p else F.make_date(F.col(p["at_mid_year"]), F.lit(7), F.lit(1))


def _treatment_type(p: dict[str, str]) -> Column:
    from pyspark.sql import functions as F

    kind = F.col(p["type_column"])
    return F.coalesce(kind, F.lit(p["default_type"])) if "default_type" in p else kind


def rule_column(col: LibraryColumn, g: Generalization) -> Column:
    """One library column from its source column, as ``conf/library.yaml`` says (docs/contract.md §4-5)."""
    from pyspark.sql import functions as F

    rules: dict[str, Callable[[Column, dict[str, str]], Column]] = {
        "copy": lambda src, p: src,
        "year": lambda src, p: F.year(src),
        "age_band": lambda src, p: T.age_band(src, _age_at(p), g.age_band_years, g.age_top_band),
        "diagnosis_date": lambda src, p: F.date_format(src, "yyyyMM" if g.diagnosis_date == "yyyymm" else "yyyyMMdd"),
        "date_text": lambda src, p: F.date_format(src, p["format"]),
        "kcd": lambda src, p: T.kcd_generalized(src, g.kcd_chars, g.kcd_chars_mental),
        "residence_class": lambda src, p: T.residence_class(src, g.residence_classes),
        "substitute": lambda src, p: T.substitute_key(src, "lib", p.get("label", str(col.source))),
        "treatment_code": lambda src, p: T.treatment_code(_treatment_type(p), src, g.device_code_chars),
        "ingredient_code": lambda src, p: F.substring(src, 1, g.ingredient_code_chars),
    }
    if col.rule not in rules:  # person_key is the link stage's; the configuration admits nothing else
        raise ValueError(f"no pseudonymize rule {col.rule!r} for {col.name}")
    return rules[col.rule](F.col(str(col.source)), col.params).cast(SPARK_TYPES[col.type]).alias(col.name)


def pseudonymize_feed(df: DataFrame, feed: Feed, table: LibraryTable, g: Generalization) -> DataFrame:
    """Keys + generalized payload + lineage; no identifier survives. ``df`` carries the key pads."""
    from pyspark.sql import functions as F

    payload = [rule_column(c, g) for c in table.columns if c.rule != "person_key"]
    if feed.has("SEX"):  # the feed's own sex, for the link stage's count of disagreements
        payload.append(F.col("SEX").alias("_SEX"))
    delivered = feed.column_names  # the staged columns, as the contract lists them
    # exact duplicates (re-sent records) are only recognizable here, where the whole record is visible
    df = T.flag_duplicates(df, delivered, cluster="MID" if "MID" in delivered else None)
    keys = []
    if feed.names_person:
        df = identity_keys(df, has_birth_sex=feed.has("BRTH") and feed.has("SEX"))
        keys = [F.col(k) for k in KEYS]
    # lineage, keys and payload only: the key pads and every delivered column end here
    return df.select(*[F.col(x) for x in LINEAGE], "_dup", *keys, *payload)


def run(spark: SparkSession, cfg: Config, secrets: dict[str, Secret], out: Path) -> PseudonymizeResult:
    """Pseudonymize every staged feed into ``out/<feed>/`` (partitioned by ``_year``); a small input's
    feeds two (as many as the cores) at a time (:func:`kcure.core.spark.concurrent_jobs`)."""
    from kcure.core.spark import concurrent_jobs, folder_mb, run_concurrently

    staging = Staging(cfg.local_path("staging"), cfg.local_path("quarantine"))
    keys = T.key_relation(spark, {"link": secrets["linkage"], "lib": secrets["library"].derive("substitute-keys")})
    tables = cfg.library.by_feed
    result = PseudonymizeResult(out, [])
    reuse = enabled(cfg)
    code = code_digest(__name__)
    todo: list[tuple[str, str]] = []
    outcome: dict[str, str] = {}
    for name in cfg.feeds:
        if name not in tables:
            continue  # a feed no table is made from is not read at all
        key = feed_key(cfg, staging, name, secrets, code)
        earlier = reusable(out, name, key) if reuse else None
        if earlier is not None:
            link_or_copy_tree(earlier[0], out / name)
            outcome[name] = "reused"
            result.reused[name] = earlier[0].parent.name
            continue
        todo.append((name, key))

    def one(name: str, key: str) -> str:
        spark.sparkContext.setJobDescription(f"pseudonymize: {name}")  # names this thread's jobs in the UI/event log
        df = read_staged(spark, staging, name)
        if df is None:
            return "missing"
        table = cfg.library.tables[tables[name]]
        pseudo = pseudonymize_feed(T.with_keys(df, keys), cfg.feeds[name], table, cfg.privacy.generalization)
        pseudo.write.mode("overwrite").partitionBy("_year").parquet(str(out / name))
        write_key(out / name, key)  # last: the output is complete
        return "made"

    # one walk of staging: its size decides the concurrency, each feed's size the order
    size = {f.name: folder_mb(f) for f in staging.root.iterdir() if f.is_dir()} if staging.root.is_dir() else {}
    threads = concurrent_jobs(cfg.spark, sum(size.values()))
    if threads > 1:  # the largest first, so that no large feed starts last and runs alone
        todo.sort(key=lambda t: -size.get(t[0], 0.0))
    made = run_concurrently([partial(one, name, key) for name, key in todo], threads)
    outcome.update({name: what for (name, _), what in zip(todo, made, strict=True)})
    for name in cfg.feeds:
        if outcome.get(name) == "missing":
            result.missing.append(name)
        elif name in outcome:
            result.feeds.append(name)
    return result
