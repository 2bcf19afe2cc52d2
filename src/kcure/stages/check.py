"""Stage 5, check: the release gates over protected/<build>/; nothing is published unless all pass.

* k-anonymity and l-diversity, as the protect stage measured them (``_privacy.json``);
* the Great Expectations suite of every library table (``expectations/library/<TABLE>.json``):
  columns, key uniqueness by grain, code sets, date windows, and no value that looks like an RRN, a
  phone number or a Korean street address;
* referential integrity: every SN_KEY is in the cohort table (RGST), every key a ``person_via``
  table joins through is in its parent table (every MID of T300/T400/T530 is in T200);
* accounting: per feed and year, the staged rows equal the linkage report's library + out of cohort
  + unlinked + dropped rows, and each table holds exactly the rows the report puts in the library.
A failure names the table and the check, with a few failing rows shown by pseudonymous key only.
The check stage never fails on a failed gate: it records the result, and the publish stage refuses.

**Reuse.** A table suite's result is a function of the table's bytes, the suite and its parameters,
and the code that runs it. The check summary records, per table, the identity of its files (device,
inode, size and modification time of each: a table linked from an earlier build is the same files)
and a digest of the suite, its parameters, this stage's code and the Great Expectations version.
A suite that passed in an earlier build on the very same files is not run again: its check is
recorded as before, and the summary's ``suites`` names the build it passed in. Failed suites always
run again; referential integrity and accounting are library-wide and always run.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kcure.core.contract import parent_of
from kcure.core.reuse import code_digest, enabled, files_identity, key_of
from kcure.core.spark import parquet_rows, read_parquet
from kcure.core.staging import Staging
from kcure.core.zones import LINKAGE_REPORT, LINKAGE_STATUSES, PRIVACY, read_json

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

    from kcure.core.config import Config

SAMPLE = 3


@dataclass
class Check:
    table: str
    check: str
    success: bool
    detail: str = ""
    sample: list[str] = field(default_factory=list)  # pseudonymous keys only
    severity: str = "critical"

    def message(self) -> str:
        keys = f" (for example {', '.join(self.sample)})" if self.sample else ""
        return f"{self.table}: {self.check} failed: {self.detail}{keys}"


@dataclass
class GateReport:
    checks: list[Check] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)
    suites: dict[str, dict[str, Any]] = field(default_factory=dict)  # table -> what its suite ran on (Reuse)

    @property
    def success(self) -> bool:
        return not self.failures

    @property
    def failures(self) -> list[Check]:
        return [c for c in self.checks if not c.success and c.severity == "critical"]

    def to_dict(self) -> dict[str, Any]:
        return {
            "success": self.success,
            "seconds": self.seconds,
            "checks": [c.__dict__ for c in self.checks],
            "suites": self.suites,
        }


@dataclass
class SuiteReuse:
    """The suites that passed in earlier builds: (table, files, suite digest) -> that build."""

    suite_base: dict[str, Any]
    passed: dict[tuple[str, str, str], str] = field(default_factory=dict)

    @classmethod
    def load(cls, cfg: Config, summaries: Path | None, params: dict[str, Any]) -> SuiteReuse:
        import great_expectations as gx

        base = {"code": code_digest(__name__), "gx": gx.__version__, "params": params}
        found = cls(base)
        if summaries is None or not enabled(cfg):
            return found
        this = summaries.name
        for path in sorted(summaries.parent.glob("*/check.json"), key=lambda p: p.stat().st_mtime):
            if path.parent.name == this:
                continue
            try:
                doc = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                continue
            for table, rec in (doc.get("suites") or {}).items():
                if rec.get("success") and rec.get("files"):
                    found.passed[(table, rec["files"], rec["suite"])] = rec.get("passed_in") or path.parent.name
        return found

    def suite_digest(self, suite: dict[str, Any]) -> str:
        """The digest of a table's suite (its JSON as loaded) with this code, GX version and parameters."""
        return key_of({**self.suite_base, "suite": suite})


def _expectations(
    spark: SparkSession, cfg: Config, tables: dict[str, DataFrame], docs: Path | None, where: Reused
) -> list[Check]:
    from kcure.core.suites import GateRunner, load_suite_json

    lo, hi = cfg.privacy.window
    params = {"window_start_year": lo, "window_end_year": hi}
    runner = GateRunner(docs)
    reuse = SuiteReuse.load(cfg, where.summaries, params)
    out = []
    for name, df in tables.items():
        suite_json = load_suite_json(f"library/{name}")
        files, suite = files_identity(where.protected / name, inodes=True), reuse.suite_digest(suite_json)
        rec: dict[str, Any] = {"files": files, "suite": suite}
        earlier = reuse.passed.get((name, files, suite)) if files else None
        if earlier is not None:
            n = len(suite_json["expectations"])
            out.append(Check(name, f"suite library/{name}", True, f"{n} expectations"))
            where.suites[name] = {**rec, "success": True, "passed_in": earlier}
            continue
        spark.sparkContext.setJobDescription(f"check: expectations {name}")
        res = runner.validate(f"library/{name}", df, batch=name, params=params, kind="spark")
        where.suites[name] = {**rec, "success": res.success}
        for o in res.outcomes:
            if not o.success and o.severity == "critical":
                detail = (
                    f"{o.unexpected_count} of {o.element_count} rows unexpected" if o.unexpected_count else "failed"
                )
                sample = _sample(df, o.expectation, o.column)
                out.append(Check(name, o.label, False, detail, sample))
        out.append(Check(name, f"suite library/{name}", res.success, f"{len(res.outcomes)} expectations"))
    runner.build_docs()
    return out


def _sample(df: DataFrame, expectation: str, column: str | None) -> list[str]:
    """A few keys of failing rows: SN_KEY or MID substitutes, never a value that could be an identifier."""
    from pyspark.sql import functions as F

    key = "SN_KEY" if "SN_KEY" in df.columns else "MID"
    if column is None or key not in df.columns:
        return []
    cols = column.split(",")
    if expectation in ("expect_compound_columns_to_be_unique", "expect_column_values_to_be_unique"):
        dup = df.groupBy(*cols).count().where("count > 1").select(*cols).limit(SAMPLE)
        rows = df.join(dup, cols, "inner").select(key).distinct().limit(SAMPLE).collect()
    elif expectation in ("expect_column_values_to_not_match_regex", "expect_column_values_to_match_regex"):
        return []  # which rows (mis)matched a pattern is a question for the custodian's own query, not a message
    else:
        rows = df.where(F.col(cols[0]).isNull()).select(key).limit(SAMPLE).collect() if cols[0] in df.columns else []
    return [str(r[0]) for r in rows if r[0] is not None]


def _orphans(children: dict[str, DataFrame], key: str, parents: DataFrame) -> dict[str, tuple[int, list[str]]]:
    """Per child table: how many distinct ``key`` values are missing from ``parents``, and a few of them.

    One Spark job for all the tables: their distinct keys are unioned, tagged with the table's name,
    and anti-joined with the parents' keys once.
    """
    from functools import reduce

    from pyspark.sql import Window
    from pyspark.sql import functions as F

    if not children:
        return {}
    tagged = [df.select(F.lit(name).alias("_table"), F.col(key)).distinct() for name, df in children.items()]
    union = reduce(lambda a, b: a.unionByName(b), tagged)
    missing = union.join(parents.select(key).distinct(), key, "left_anti")
    # the sample: the first few keys per table, numbered by a sort that spills rather than a list that grows
    first = F.row_number().over(Window.partitionBy("_table").orderBy(F.col(key).asc_nulls_last()))
    rows = (
        missing.withColumn("_rn", first)
        .groupBy("_table")
        .agg(
            F.count(F.lit(1)).alias("n"),
            F.sort_array(F.collect_list(F.when(F.col("_rn") <= SAMPLE, F.col(key)))).alias("sample"),
        )
        .collect()
    )
    found = {r["_table"]: (int(r["n"]), [str(k) for k in r["sample"]]) for r in rows}
    return {name: found.get(name, (0, [])) for name in children}


def _integrity(cfg: Config, tables: dict[str, DataFrame]) -> list[Check]:
    """Every person key is a cohort person; every claim line's key is a row of its parent table."""
    cohort = cfg.library.cohort.table
    out = []
    people = {n: df for n, df in tables.items() if n != cohort and "SN_KEY" in df.columns}
    for name, (n, sample) in _orphans(people, "SN_KEY", tables[cohort]).items():
        out.append(Check(name, f"every SN_KEY is in {cohort}", n == 0, f"{n} SN_KEY values not in {cohort}", sample))
    parents: dict[tuple[str, str], dict[str, DataFrame]] = {}
    for name in tables:
        feed = cfg.feeds[cfg.library.tables[name].source]
        if feed.person_via is not None:
            parent = cfg.library.by_feed[parent_of(cfg.feeds, feed).name]
            parents.setdefault((parent, feed.person_via), {})[name] = tables[name]
    for (parent, key), children in parents.items():
        for name, (n, sample) in _orphans(children, key, tables[parent]).items():
            out.append(Check(name, f"every {key} is in {parent}", n == 0, f"{n} {key} values not in {parent}", sample))
    return out


def _accounting(
    cfg: Config, report: list[dict[str, Any]], rows: dict[str, int], privacy: dict[str, Any]
) -> list[Check]:
    """Nothing lost: staged = accounted per feed-year, and each table holds exactly its in-library rows."""
    staging = Staging(cfg.local_path("staging"), cfg.local_path("quarantine"))
    out = []
    for r in report:
        cur = staging.current(r["_feed"], int(r["_year"]))
        staged = cur.staged_rows if cur else -1
        accounted = (
            sum(int(r[s]) for s in LINKAGE_STATUSES) + int(r["duplicates_dropped"]) + int(r["conflicts_dropped"])
        )
        if not staged == int(r["staged"]) == accounted:
            detail = f"staged {staged}, linked {r['staged']}, accounted {accounted}"
            out.append(Check(r["_feed"], f"rows of {r['_year']} accounted", False, detail))
    for feed, table in cfg.library.by_feed.items():
        if table not in rows:
            continue  # left out of the release (if_no_input: omit)
        linked = sum(int(r["in_library"]) for r in report if r["_feed"] == feed)
        dropped = int(privacy.get("rows_dropped", {}).get(table, 0))
        got = rows[table]
        out.append(
            Check(
                table,
                "rows equal the report's in-library rows less privacy drops",
                got == linked - dropped,
                f"table {got}, report {linked}, dropped for k-anonymity {dropped}",
            )
        )
    return out


def _privacy_checks(privacy: dict[str, Any]) -> list[Check]:
    k = privacy["k"]
    done = f"smallest class {privacy['min_class_after']}, {privacy['people_dropped']} people dropped"
    ld = privacy["l_diversity"]
    return [
        Check("*", f"k-anonymity (k={k})", bool(privacy["success"]), privacy.get("failure", done)),
        Check(
            "*",
            "the release keeps people",
            privacy["people"] == 0 or privacy["people_dropped"] < privacy["people"],
            f"{privacy['people'] - privacy['people_dropped']} of {privacy['people']} people kept",
        ),
        Check(
            "*",
            f"l-diversity of {ld['attribute']} (l={ld['required']})",
            ld["l"] >= ld["required"],
            f"smallest class has {ld['l']} distinct values",
            severity="warning",
        ),
    ]


@dataclass
class Reused:
    """Where the tables are, where the earlier builds' check summaries are, and what the suites ran on."""

    protected: Path
    summaries: Path | None  # this build's summary folder (its siblings: the earlier builds'); None: no reuse
    suites: dict[str, dict[str, Any]] = field(default_factory=dict)


def run(
    spark: SparkSession, cfg: Config, linked: Path, protected: Path, docs: Path, summaries: Path | None = None
) -> GateReport:
    """Every gate over the protected tables; Data Docs of the library suites go to ``docs``. With
    ``summaries`` (this build's summary folder), a suite that passed on the same files is not run again."""
    privacy = read_json(protected / PRIVACY)
    if privacy is None:
        raise FileNotFoundError(f"{protected / PRIVACY} is missing: run the protect stage first")
    report = GateReport(checks=_privacy_checks(privacy))
    if not privacy["success"]:
        return report
    tables = {n: read_parquet(spark, protected / n) for n in cfg.library.tables if (protected / n).is_dir()}
    linkage = read_json(linked / LINKAGE_REPORT) or []
    where = Reused(protected, summaries)
    for phase, fn in (
        ("expectations", lambda: _expectations(spark, cfg, tables, docs, where)),
        ("referential_integrity", lambda: _integrity(cfg, tables)),
        ("accounting", lambda: _accounting(cfg, linkage, {n: parquet_rows(protected / n) for n in tables}, privacy)),
    ):
        t0 = time.perf_counter()
        spark.sparkContext.setJobDescription(f"check: {phase}")
        report.checks += fn()
        report.seconds[phase] = round(time.perf_counter() - t0, 2)
    report.suites = where.suites
    return report
