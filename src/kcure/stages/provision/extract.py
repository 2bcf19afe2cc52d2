"""Provision, release -> one research project's extract: only what its application names, re-keyed,
date-shifted, recoded for its own cohort, and gated on its own re-identification risk.

1. **Read** exactly the data files of the release's snapshots (the caller lists them).
2. **Cohort**: the registry's people with a registered cancer that matches the application (site,
   diagnosis year, sex, age band, histology, stage), then its stratified sample, if it asks for one.
   A site or age the release has already widened matches only if the wider value lies wholly inside
   what was asked for; a suppressed one never matches (nothing outside the specification).
3. **Recode for this cohort**: the person-level classes of the cohort are not the library's (a cohort
   chosen by histology breaks them), so the recoding ladder runs again on the cohort, starting from
   the release's values, and never below what the project was given before (``previous``).
4. **Measure** each attacker model (:mod:`.risk`) on the true dates against the released ones; where
   a one-event model fails, the ladder is applied again to the people it finds at risk.
5. **Write**, only if every model passes (or an exception is recorded): the requested tables, columns
   and years (a row's year is its true year, so no event is cut or added at a window's edge by the
   shift); every person key and substitute key re-keyed under the project's key; every date moved by
   the person's keyed shift (whole weeks, never 0, within ±W) and cut to the asked precision; the
   diagnosis month and year derived from the shifted dates.

The project's key reaches Spark only as HMAC pads in a one-row relation (:mod:`kcure.core.transforms`).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from kcure.core import kanon as P
from kcure.core.recoding import apply_reveals, claim_parent, person_qis, persons
from kcure.core.spark import local_frame
from kcure.core.transforms import drop_keys, hmac_sha256, key_relation, substitute_key, with_keys
from kcure.core.zones import restrict_tree, restricted_dir
from kcure.stages.provision import risk as R

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame, SparkSession

    from kcure.core.config import Config
    from kcure.core.keys import Key
    from kcure.projects.application import Application

PERSON_KEY_CHARS = 64
DATE_FORMATS = {"day": "yyyy-MM-dd", "month": "yyyyMM"}
#: a parent table (T200, the statements) with at most this many rows for the project's people meets its
#: claim lines (T300, T400, T530) in broadcast joins, so the claim lines are read once and never
#: shuffled; above it, in shuffle joins. Spark cannot make that choice itself: it estimates a join's
#: size as the product of its sides', and adaptive execution learns the true size only after the claim
#: lines' shuffle has already been written. A row of the largest broadcast map (a 20-character key, a
#: 64-character SN_KEY) takes about 180 bytes in Spark's hash relation, so this many rows take about
#: 90 MB on the driver and on each executor (1%, a C16 cohort: 215,117 statements).
BROADCAST_PARENT_ROWS = 500_000


class ExtractRefused(RuntimeError):
    """The extract did not pass its privacy gate; ``privacy`` holds every model's figures."""

    def __init__(self, message: str, privacy: dict[str, Any]) -> None:
        super().__init__(message)
        self.privacy = privacy


@dataclass
class Extract:
    tables: dict[str, dict[str, int]]  # per table: rows, persons
    columns: dict[str, list[tuple[str, str]]]  # per table: (column, type) as written
    privacy: dict[str, Any]
    given: pd.DataFrame  # per project person (index: project SN_KEY), the quasi-identifiers as given


def given_to_parquet(given: pd.DataFrame, path: Path) -> None:
    """What each person was given, kept by the custodian so no re-provisioning gives finer values."""
    frame = given.astype("object").where(given.notna(), None)
    frame = frame.apply(lambda col: col.map(lambda v: None if v is None else str(v)))
    frame.reset_index().to_parquet(path, index=False)


def merge_given(given: pd.DataFrame, prior: pd.DataFrame | None) -> pd.DataFrame:
    """This extract's people, and everyone an earlier extract gave values to (dropped or not sampled now):
    a later provisioning that includes them again starts from what they had."""
    if prior is None or prior.empty:
        return given
    rest = prior.loc[~prior.index.isin(given.index)]
    return pd.concat([given.astype("object"), rest.reindex(columns=given.columns).astype("object")])


def given_from_parquet(path: Path) -> pd.DataFrame | None:
    return pd.read_parquet(path).set_index("_pid") if path.exists() else None


# --- reading ------------------------------------------------------------------------------------------


def _read(spark: SparkSession, cfg: Config, name: str, files: list[str]) -> DataFrame:
    spec = cfg.library.table(name)
    ddl = ", ".join(f"`{c.name}` {c.type}" for c in spec.columns)
    if not files:
        return local_frame(spark, [], ddl)
    return spark.read.schema(ddl).parquet(*files)


# --- the cohort --------------------------------------------------------------------------------------


def _site_condition(app: Application, tcode: Column) -> Column:
    """A TCODE (C16.2, or a block the release widened it to, C15-C26) inside one of the cohort's sites."""
    from pyspark.sql import functions as F

    code = F.upper(F.regexp_replace(tcode, r"\.", ""))
    lo = F.substring(code, 1, 3)
    hi = F.when(code.contains("-"), F.regexp_extract(code, r"-([A-Z]\d\d)$", 1)).otherwise(lo)
    cond = F.lit(False)
    ranges = app.cohort.site_ranges()
    for a, b in ranges:
        cond = cond | ((lo >= a) & (hi <= b) & (F.length(lo) == 3))
    if any(a <= "C00" and b >= "C97" for a, b in ranges):
        cond = cond | tcode.isNull() | (tcode == P.SUPPRESSED)  # every cancer: a suppressed site is inside
    return F.coalesce(cond, F.lit(False))


def _band_condition(app: Application, band: Column) -> Column:
    from pyspark.sql import functions as F

    if not app.cohort.age_bands:
        return F.lit(True)  # every age, a suppressed one too
    lo = F.regexp_extract(band, r"^(\d+)", 1).cast("int")
    hi = F.when(band.endswith("+"), F.lit(999)).otherwise(F.regexp_extract(band, r"-(\d+)$", 1).cast("int"))
    cond = F.lit(False)
    for a, b in app.cohort.age_bands:
        cond = cond | ((lo >= a) & (hi <= b))
    return F.coalesce(cond, F.lit(False))


def cohort_people(rgst: DataFrame, app: Application, window: Window) -> DataFrame:
    """The library's person keys of everyone with a registered cancer that matches the cohort (its
    diagnosis year as the extract shows it: see :class:`Window`)."""
    from pyspark.sql import functions as F

    c = app.cohort
    rgst = window.select("RGST", rgst, c.years, {})
    cond = F.col("SEX").isin(*c.sex)
    cond = cond & _site_condition(app, F.col("TCODE")) & _band_condition(app, F.col("AGE"))
    if c.histology:
        morph = F.substring("MCODE", 1, 4)
        cond = cond & F.coalesce(_any(morph.between(lo, hi) for lo, hi in c.histology), F.lit(False))
    if c.stage:
        cond = cond & F.col("SEER_GRP").isin(*c.stage)
    return rgst.where(F.coalesce(cond, F.lit(False))).select("SN_KEY").distinct()


def _any(conds: Any) -> Column:
    from functools import reduce

    return reduce(lambda a, b: a | b, conds)


def sample(people: pd.DataFrame, fraction: float, strata: tuple[str, ...], seed: int) -> pd.Index:
    """A stratified sample: in each stratum, the round(fraction x size) people first in a seeded order."""
    order = pd.Series([hashlib.sha256(f"{seed}|{p}".encode()).hexdigest() for p in people.index], index=people.index)
    frame = people[list(strata)].astype(str).assign(_u=order) if strata else pd.DataFrame({"_u": order})
    rank = frame.groupby(list(strata), dropna=False)["_u"].rank(method="first") if strata else frame["_u"].rank()
    size = frame.groupby(list(strata), dropna=False)["_u"].transform("size") if strata else len(frame)
    keep = rank <= pd.Series(size * fraction, index=frame.index).round()
    return people.index[keep.to_numpy()]


# --- never finer than before ------------------------------------------------------------------------


def _level(q: str, v: Any) -> int:
    """How coarse a released value is (0: as the library measures it)."""
    if v is None or v == P.SUPPRESSED:
        return 99
    if q == "TCODE3":
        return 1 if "-" in str(v) else 0
    if q == "AGE":
        s = str(v)
        if s.endswith("+"):
            return 0
        lo, hi = (int(x) for x in s.split("-"))
        return hi - lo + 1
    return 0


def _coarsen(q: str, v: Any, prior: Any) -> Any:
    """``v`` made at least as coarse as ``prior`` (the value given before)."""
    if prior is None or _level(q, prior) <= _level(q, v):
        return v
    if _level(q, prior) == 99:
        return P.SUPPRESSED
    if q == "TCODE3":
        return P.icd10_block(str(v))
    if q == "AGE":
        return P.widen_age(str(v), _level(q, prior))
    return v


def never_finer(work: pd.DataFrame, prior: pd.DataFrame | None) -> tuple[pd.DataFrame, int]:
    """Every person's quasi-identifiers at least as coarse as in the project's earlier extract."""
    if prior is None or prior.empty:
        return work, 0
    common = work.index.intersection(prior.index)
    changed = 0
    for q in ("AGE", "SIDO", "TCODE3"):
        if q not in work.columns or q not in prior.columns:
            continue
        old = work.loc[common, q]
        new = pd.Series([_coarsen(q, v, p) for v, p in zip(old, prior.loc[common, q], strict=True)], index=common)
        changed += int((new.astype(str) != old.astype(str)).sum())
        work.loc[common, q] = new
    return work, changed


# --- dates -------------------------------------------------------------------------------------------


def shift_days(key_col: str, person: Column, weeks: int) -> Column:
    """The person's shift in days: a keyed whole number of weeks in [-weeks, weeks], never 0."""
    from pyspark.sql import functions as F

    draw = F.conv(F.substring(hmac_sha256(F.concat(F.lit("SHIFT|"), person), key_col), 1, 8), 16, 10).cast("long")
    v = (draw % (2 * weeks)).cast("int")
    return F.when(v < weeks, v - weeks).otherwise(v - weeks + 1) * 7


def _date_columns(cfg: Config, table: str) -> dict[str, str]:
    """Each column of the table that holds a date: ``date``, ``text:<format>``, ``diagnosis``, ``dx_year``."""
    out = {}
    for c in cfg.library.table(table).columns:
        if c.type == "date":
            out[c.name] = "date"
        elif c.rule == "date_text":
            out[c.name] = f"text:{c.params.get('format', 'yyyyMMdd')}"
        elif c.rule == "diagnosis_date":
            out[c.name] = "diagnosis"
    diag = [c for c in cfg.library.table(table).columns if c.rule == "diagnosis_date"]
    for c in cfg.library.table(table).columns:
        if c.rule == "year" and diag and c.source == diag[0].source:
            out[c.name] = f"dx_year:{diag[0].name}"
    return out


def true_date(kind: str, col: Column) -> Column:
    from pyspark.sql import functions as F

    if kind == "date":
        return col
    if kind.startswith("text:"):
        return F.try_to_date(col, kind[5:])
    return F.try_to_date(F.concat(col, F.lit("15")), "yyyyMMdd")  # a diagnosis month: its middle


def released(kind: str, col: Column, shift: Column | None, precision: str) -> Column:
    """The value written for a date column: shifted (if ``shift``), at the asked precision."""
    from pyspark.sql import functions as F

    if kind.startswith("dx_year:"):
        base = true_date("diagnosis", F.col(kind[8:]))
        return F.year(F.date_add(base, shift) if shift is not None else base).cast("int")
    d = true_date(kind, col)
    moved = F.date_add(d, shift) if shift is not None else d
    if kind == "diagnosis":
        return F.date_format(moved, "yyyyMM")
    if kind == "date":
        return moved if precision == "day" else F.date_format(moved, "yyyyMM")
    fmt = kind[5:] if precision == "day" else "yyyyMM"
    return F.date_format(moved, fmt)


def released_interval(kind: str, value: Column, precision: str) -> tuple[Column, Column]:
    """The first and last day a released date value can mean."""
    from pyspark.sql import functions as F

    if precision == "day" and kind != "diagnosis":
        d = value if kind == "date" else F.try_to_date(value, kind[5:])
        return d, d
    first = F.try_to_date(F.concat(value, F.lit("01")), "yyyyMMdd")
    return first, F.last_day(first)


# --- the stage ---------------------------------------------------------------------------------------


@dataclass
class _Tables:
    """The cohort's rows of every table the extract needs, before columns are chosen."""

    frames: dict[str, DataFrame]
    small: frozenset[str]  # the parents broadcast to their claim lines

    def persons_of(self, cfg: Config, name: str, df: DataFrame) -> DataFrame:
        """``df`` with the SN_KEY of each row (claim lines through their statement)."""
        if "SN_KEY" in df.columns:
            return df
        key, parent = claim_parent(cfg, name)
        return df.join(_sized(self.frames[parent].select(key, "SN_KEY"), parent in self.small), key, "inner")


def _sized(df: DataFrame, broadcast: bool) -> DataFrame:
    """``df`` as the side of a join that is broadcast, when it is known to be small."""
    from pyspark.sql import functions as F

    return F.broadcast(df) if broadcast else df


def _needed(cfg: Config, app: Application) -> list[str]:
    names = set(app.tables) | {"RGST", "BFC"}
    for name in app.tables:
        spec = cfg.library.table(name)
        if "SN_KEY" not in spec.column_names:
            names.add(claim_parent(cfg, name)[1])
    return [n for n in cfg.library.tables if n in names]


def _anchor(cfg: Config, name: str) -> tuple[str, str] | None:
    """The dated column a table's year comes from (RGST: the diagnosis month), and its kind."""
    import re

    spec = cfg.library.table(name)
    if spec.year_via or not spec.year:
        return None
    dates = _date_columns(cfg, name)
    for col, kind in dates.items():
        if kind.startswith("dx_year:") and re.search(rf"\b{col}\b", spec.year):
            return kind[8:], "diagnosis"
    for col, kind in dates.items():
        if not kind.startswith("dx_year:") and re.search(rf"\b{col}\b", spec.year):
            return col, kind
    return None


class Window:
    """Which rows fall inside the years an application asks for.

    Without a shift, a row's year is the library's (``year:`` in ``conf/library.yaml``). With one, a
    dated row is inside when its *shifted* date is: choosing by the true date would cut every person's
    events at the true edges of the window, and their first and last released dates would then bound
    their shift. Where the window meets the edge of what the release holds (its first or last date of
    that kind), it is pulled in by W, because no shifted date can come from beyond that edge either.
    Year-only tables (BFC, G1E) keep their years: a shift of at most 26 weeks from mid-year keeps it.
    """

    def __init__(self, cfg: Config, raw: dict[str, DataFrame], keys: DataFrame, weeks: int, on: bool) -> None:
        self.cfg, self.raw, self.keys, self.weeks, self.on = cfg, raw, keys, weeks, on
        self._coverage: dict[str, tuple[Any, Any]] = {}

    def coverage(self, name: str, col: str, kind: str) -> tuple[Any, Any]:
        from pyspark.sql import functions as F

        if name not in self._coverage:
            d = true_date(kind, F.col(col))
            row = self.raw[name].agg(F.min(d).alias("lo"), F.max(d).alias("hi")).collect()[0]
            self._coverage[name] = (row["lo"], row["hi"])
        return self._coverage[name]

    def bounds(self, name: str, years: tuple[int, int]) -> tuple[date, date] | None:
        """The first and last shifted day a dated table's rows may have (None: no dated rows)."""
        anchor = _anchor(self.cfg, name)
        assert anchor is not None
        lo_cov, hi_cov = self.coverage(name, *anchor)
        if lo_cov is None:
            return None
        w = timedelta(days=7 * self.weeks)
        return max(date(years[0], 1, 1), lo_cov + w), min(date(years[1], 12, 31), hi_cov - w)

    def select(
        self, name: str, df: DataFrame, years: tuple[int, int], frames: dict[str, DataFrame],
        small: frozenset[str] = frozenset(),
    ) -> DataFrame:  # fmt: skip
        """``df``'s rows inside ``years``; a table whose year is its parent's (``year_via``) through the
        parent's rows in ``frames`` (broadcast if the parent is in ``small``)."""
        from pyspark.sql import functions as F

        spec = self.cfg.library.table(name)
        if spec.year_via:
            via = self.cfg.library.table(spec.year_via)
            key = next(c.name for c in via.columns if c.rule == "substitute")
            chosen = self.select(spec.year_via, frames[spec.year_via], years, frames).select(key).distinct()
            return df.join(_sized(chosen, spec.year_via in small), key, "left_semi")
        anchor = _anchor(self.cfg, name)
        if not self.on or anchor is None:
            return df.where(F.expr(str(spec.year)).between(*years))
        bounds = self.bounds(name, years)
        if bounds is None:
            return df.where(F.lit(False))
        moved = F.date_add(
            true_date(anchor[1], F.col(anchor[0])), shift_days("d", project_person(F.col("SN_KEY")), self.weeks)
        )
        return drop_keys(with_keys(df, self.keys).where(moved.between(F.lit(bounds[0]), F.lit(bounds[1]))), self.keys)


def run(
    spark: SparkSession,
    cfg: Config,
    app: Application,
    files: dict[str, list[str]],
    key: Key,
    out: Path,
    *,
    prior: pd.DataFrame | None = None,
    exception: bool = False,
) -> Extract:
    """Build the extract into ``out``; ExtractRefused when its gate fails and no exception is recorded.

    ``prior``: what each person was given by the project's earlier extract (:func:`given_from_parquet`).
    """
    from pyspark.sql import functions as F

    rules = cfg.privacy
    ext = rules.extracts
    if ext is None:
        raise ValueError("privacy.yaml has no extracts: section: no gate to provision against")
    raw = {n: _read(spark, cfg, n, files.get(n, [])) for n in _needed(cfg, app)}
    keys = key_relation(spark, {"p": key.derive("person"), "s": key.derive("substitute"), "d": key.derive("shift")})
    spark.sparkContext.setJobDescription(f"provision {app.project}: cohort and its quasi-identifiers")
    window = Window(cfg, raw, keys, ext.shift_weeks, app.date_shift)
    people_df = cohort_people(raw["RGST"], app, window)
    cancers = window.select("RGST", raw["RGST"], app.cohort.years, {})  # the cohort's registered cancers
    people, matched = _people(cfg, app, cancers, raw["BFC"], people_df)
    ids = _person_ids(spark, keys, cancers, list(people.index), ext.shift_weeks, app.date_shift)
    people = people.assign(_pid=ids["_pid"].reindex(people.index).to_numpy())
    qis = list(rules.quasi_identifiers)
    work = people[qis].astype("object").copy()
    work.index = people["_pid"]
    work, coarsened = never_finer(work, prior)
    work.index = people.index

    events = _events(spark, cfg, app, raw, people_df, keys, ext, window)
    thresholds = R.Thresholds(rules.k, ext.max_average_risk, ext.max_unique_share)
    result, privacy = _gate(work, qis, events, ext.shift_days if app.date_shift else 0, thresholds, rules)
    privacy["cohort"] = {"matched": matched, "sampled": len(people), "kept": len(result.table)}
    privacy["one_event_not_released"] = [m.name for m in ext.events if m.name not in privacy["one_event"]]
    privacy["never_finer_than_before"] = {"values_coarsened": coarsened, "had_previous": prior is not None}
    privacy["date_shift"] = {"weeks": ext.shift_weeks if app.date_shift else 0, "precision": app.date_precision}
    if not privacy["passed"] and not exception:
        raise ExtractRefused(_refusal(privacy, app, thresholds), privacy)
    privacy["exception"] = bool(exception and not privacy["passed"])

    restricted_dir(out)
    kept_people = local_frame(spark, [(p,) for p in result.table.index], "SN_KEY string")
    spark.sparkContext.setJobDescription(f"provision {app.project}: the cohort's statements")
    frames, small = _cohort_frames(cfg, raw, kept_people)
    decided = people.loc[result.table.index].copy()
    if app.date_shift:  # ages move with the diagnosis year the extract shows, so they cannot tell the true one
        decided["_dbyear"] = ids["_dbyear"].reindex(decided.index).astype("object")
        moved = shift_days("d", project_person(F.col("SN_KEY")), ext.shift_weeks)
        frames["RGST"] = drop_keys(
            with_keys(frames["RGST"], keys).withColumn("DBYEAR", released("dx_year:FDX", F.col("FDX"), moved, "day")),
            keys,
        )
    frames.update(apply_reveals(cfg, frames, persons(spark, decided, result, rules), broadcast=small))
    summary, columns = _write(spark, cfg, app, _Tables(frames, small), keys, out, window)
    given = result.table.copy()
    given.index = pd.Index(people.loc[given.index, "_pid"].to_numpy(), name="_pid")
    restrict_tree(out)
    return Extract(summary, columns, privacy, given)


def _people(
    cfg: Config, app: Application, cancers: DataFrame, bfc: DataFrame, people_df: DataFrame
) -> tuple[pd.DataFrame, int]:
    """The cohort's people (index: library SN_KEY) with the quasi-identifiers of their first registered
    cancer inside the cohort's years, sampled if asked."""
    qis = cfg.privacy.quasi_identifiers
    pdf: Any = person_qis(cancers.join(people_df, "SN_KEY", "left_semi"), bfc, "SIDO" in qis).toPandas()
    people = pdf.set_index("SN_KEY")
    people["_dbyear"] = people["DBYEAR"].astype("object").where(people["DBYEAR"].notna(), None)
    matched = len(people)
    if matched == 0:
        raise ExtractRefused(
            f"nobody in the release matches the cohort of {app.project} (a site or age the release widened "
            "matches only if the wider value lies inside the cohort's: ask for a block such as C15-C26)",
            {"passed": False, "person_level": {}, "one_event": {}},
        )
    if app.cohort.sample is not None:
        s = app.cohort.sample
        people = people.loc[sample(people, s.fraction, s.strata, s.seed)]
    return people, matched


def _write(
    spark: SparkSession,
    cfg: Config,
    app: Application,
    tables: _Tables,
    keys: DataFrame,
    out: Path,
    window: Window,
) -> tuple[dict[str, dict[str, int]], dict[str, list[tuple[str, str]]]]:
    """Each requested table into ``out``: its rows per person and year, its columns as the project gets them."""
    from pyspark.sql import functions as F

    frames = tables.frames
    summary: dict[str, dict[str, int]] = {}
    columns: dict[str, list[tuple[str, str]]] = {}
    for name, req in app.tables.items():
        df = tables.persons_of(cfg, name, window.select(name, frames[name], req.years, frames, tables.small))
        written = _project_columns(cfg, name, req.columns, with_keys(df, keys), app, app.date_shift, window.weeks)
        spark.sparkContext.setJobDescription(f"provision {app.project}: {name}")
        written.write.mode("overwrite").parquet(str(out / name))
        back = spark.read.parquet(str(out / name))
        has_person = "SN_KEY" in back.columns
        agg = [F.count(F.lit(1)).alias("rows")] + ([F.countDistinct("SN_KEY").alias("persons")] if has_person else [])
        row = back.agg(*agg).collect()[0]
        summary[name] = {"rows": int(row["rows"]), "persons": int(row["persons"]) if has_person else -1}
        columns[name] = [(f.name, f.dataType.simpleString()) for f in back.schema.fields]
    return summary, columns


def _person_ids(
    spark: SparkSession, keys: DataFrame, rgst: DataFrame, people: list[str], weeks: int, shift: bool
) -> pd.DataFrame:
    """Per library SN_KEY: the project's SN_KEY (HMAC under the project's person key) and the year of the
    first diagnosis as the extract shows it (shifted, if dates are)."""
    from pyspark.sql import Window as W
    from pyspark.sql import functions as F

    order = W.partitionBy("SN_KEY").orderBy(F.col("FDX").asc_nulls_last(), F.col("TCODE").asc_nulls_last())
    first = rgst.withColumn("_rn", F.row_number().over(order)).where("_rn = 1").select("SN_KEY", "FDX")
    df = local_frame(spark, [(p,) for p in people], "SN_KEY string").join(first, "SN_KEY", "left")
    moved = shift_days("d", project_person(F.col("SN_KEY")), weeks) if shift else None
    mapped: Any = drop_keys(
        with_keys(df, keys).select(
            "SN_KEY",
            project_person(F.col("SN_KEY")).alias("_pid"),
            released("dx_year:FDX", F.col("FDX"), moved, "day").alias("_dbyear"),
        ),
        keys,
    )
    return mapped.toPandas().set_index("SN_KEY")


def project_person(sn_key: Column) -> Column:
    from pyspark.sql import functions as F

    return F.substring(hmac_sha256(F.concat(F.lit("SN|"), sn_key), "p"), 1, PERSON_KEY_CHARS)


def _cohort_frames(
    cfg: Config, raw: dict[str, DataFrame], people: DataFrame
) -> tuple[dict[str, DataFrame], frozenset[str]]:
    """Every needed table restricted to ``people`` (claim lines through their statements), and the
    parents whose rows for ``people`` are few enough to be broadcast to their claim lines
    (:data:`BROADCAST_PARENT_ROWS`). The count reads the parent's SN_KEY column only, and each task
    stops one row past the limit; a large release's parent is still read once, in that one column."""
    frames = {name: df.join(people, "SN_KEY", "left_semi") for name, df in raw.items() if "SN_KEY" in df.columns}
    via = {name: claim_parent(cfg, name) for name in raw if name not in frames}
    parents = sorted({parent for _, parent in via.values()})
    small = frozenset(p for p in parents if frames[p].limit(BROADCAST_PARENT_ROWS + 1).count() <= BROADCAST_PARENT_ROWS)
    for name, (key, parent) in via.items():
        frames[name] = raw[name].join(_sized(frames[parent].select(key), parent in small), key, "left_semi")
    return frames, small


def _project_columns(
    cfg: Config, name: str, wanted: tuple[str, ...], df: DataFrame, app: Application, shift: bool, weeks: int
) -> DataFrame:
    """The requested columns of one table, re-keyed and with its dates shifted and cut to precision."""
    from pyspark.sql import functions as F

    spec = cfg.library.table(name)
    dates = _date_columns(cfg, name)
    moved = shift_days("d", project_person(F.col("SN_KEY")), weeks) if shift else None
    out = []
    for col in spec.columns:
        if col.name not in wanted:
            continue
        c = F.col(col.name)
        if col.rule == "person_key":
            value = project_person(c)
        elif col.rule == "substitute":
            value = substitute_key(c, "s", str(col.params.get("label") or col.source or col.name))
        elif col.name in dates:
            value = released(dates[col.name], c, moved, app.date_precision)
        else:
            value = c
        out.append(value.alias(col.name))
    return df.select(*out)


def _events(
    spark: SparkSession, cfg: Config, app: Application, raw: dict[str, DataFrame], people: DataFrame,
    keys: DataFrame, ext: Any, window: Window,
) -> pd.DataFrame:  # fmt: skip
    """One row per released event of each modelled kind: person, model, true day, released interval,
    and whether released days keep their weekday (day precision, shifted)."""
    from pyspark.sql import functions as F

    parts = []
    moved = shift_days("d", project_person(F.col("SN_KEY")), ext.shift_weeks) if app.date_shift else None
    for m in ext.events:
        req = app.tables.get(m.table)
        shown = [c for c in m.columns if req is not None and c in req.columns]
        if req is None or not shown:
            continue
        kinds = _date_columns(cfg, m.table)
        df = window.select(m.table, raw[m.table].join(people, "SN_KEY", "left_semi"), req.years, raw)
        if m.where:
            df = df.where(F.expr(m.where))
        # the first shown column that has a date on the row (an admission: FST_IPAT_DD, else RECU_FR_DD)
        true = F.coalesce(*[true_date(kinds[c], F.col(c)) for c in shown])
        value = F.coalesce(*[released(kinds[c], F.col(c), moved, app.date_precision) for c in shown])
        lo, hi = released_interval(kinds[shown[0]], value, app.date_precision)
        weekly = app.date_shift and app.date_precision == "day" and kinds[shown[0]] != "diagnosis"
        ev = with_keys(df, keys).select(
            F.col("SN_KEY").alias("person"), true.alias("true_date"), lo.alias("lo"), hi.alias("hi"),
        ).where("true_date IS NOT NULL")  # fmt: skip
        if m.which == "first":
            first = ev.groupBy("person").agg(F.min("true_date").alias("true_date"))
            ev = ev.join(first, ["person", "true_date"]).dropDuplicates(["person"])
        parts.append(ev.withColumn("model", F.lit(m.name)).withColumn("weekly", F.lit(weekly)))
    if not parts:
        return pd.DataFrame({"person": [], "model": [], "true_date": [], "lo": [], "hi": [], "weekly": []})
    union = parts[0]
    for p in parts[1:]:
        union = union.unionByName(p)
    spark.sparkContext.setJobDescription(f"provision {app.project}: events of the attacker models")
    return union.toPandas()


def _classes(work: pd.DataFrame, qis: list[str]) -> pd.Series:
    """One class label per person: its quasi-identifiers joined with ``|``. A Series also when nobody
    is left (``DataFrame.agg`` over rows gives an empty DataFrame then, which the risk models cannot read)."""
    text = work[qis].astype(str)
    label = pd.Series("", index=work.index, dtype="object")
    for i, q in enumerate(qis):
        label = label + ("|" if i else "") + text[q]
    return label


def _measure(work: pd.DataFrame, qis: list[str], events: pd.DataFrame, window: int, t: R.Thresholds) -> dict[str, Any]:
    classes = _classes(work, qis)
    person, person_risk = R.person_level(classes, t.k)
    models = R.one_event(classes, events, window, t) if len(events) else {}
    return {"person": (person, person_risk), "models": models}


def _gate(
    people: pd.DataFrame, qis: list[str], events: pd.DataFrame, window: int, t: R.Thresholds, rules: Any
) -> tuple[P.KAnonymityResult, dict[str, Any]]:
    """Recode the cohort until every model passes or the ladder ends; the figures of every model."""
    result = P.enforce_k(people, qis, t.k, rules.recoding)
    costs = [c.__dict__ for c in result.costs]
    dropped = list(result.dropped)
    work = result.table
    m = _measure(work, qis, events, window, t)
    for step in rules.recoding:
        failing = [name for name, (s, _) in m["models"].items() if not s["passed"]]
        if not failing:
            break
        at_risk = set()
        for name in failing:
            r = m["models"][name][1]
            at_risk |= set(r.index[r > 1 / t.k])
        idx = work.index.intersection(list(at_risk))
        if len(idx) == 0:
            break
        before = work.loc[idx, step.column]
        after = P.RECODERS[step.action](before, step)
        work.loc[idx, step.column] = after
        costs.append({"step": f"one-event: {step.label}", "column": step.column,
                      "action": "suppressed" if step.action == "suppress" else "recoded",
                      "people": int((before.astype(str) != after.astype(str)).sum())})  # fmt: skip
        again = P.enforce_k(work, qis, t.k, rules.recoding)  # a recoded person may now sit in a small class
        costs += [{**c.__dict__, "step": f"person level: {c.step}"} for c in again.costs]
        dropped += list(again.dropped)
        work = again.table
        m = _measure(work, qis, events, window, t)
    person, _ = m["person"]
    models = {name: s for name, (s, _) in m["models"].items()}
    # k-anonymity that leaves nobody passes every risk rule and releases nothing a project can use
    nobody_left = len(work) == 0 and len(people) > 0
    passed = not nobody_left and person["passed"] and all(s["passed"] for s in models.values())
    final = P.KAnonymityResult(t.k, work, dropped, [])
    privacy = {
        "passed": bool(passed),
        "k": t.k,
        "quasi_identifiers": qis,
        "attacker": "prosecutor: knows the target is in this project's cohort",
        "person_level": person,
        "one_event": models,
        "window_days": window,
        "costs": costs,
        "people_dropped": len(dropped),
        "nobody_left": nobody_left,
        "class_size_distribution": final.distribution() if len(work) else {},
    }
    return final, privacy


def _refusal(privacy: dict[str, Any], app: Application, t: R.Thresholds) -> str:
    lines = [f"the extract of {app.project} fails its privacy gate; nothing was provisioned:"]
    if privacy.get("nobody_left"):
        lines.append(
            f"  k-anonymity left nobody: all {privacy['people_dropped']} people are in classes smaller than "
            f"{privacy['k']} after every recoding step"
        )
    p = privacy["person_level"]
    if not p["passed"]:
        lines.append(f"  person level: highest risk {p['highest_risk']:.3f} > 1/{privacy['k']}")
    for name, s in privacy["one_event"].items():
        if not s["passed"]:
            lines.append(
                f"  {name}: average risk {s['average_risk']:.3f} (at most {t.max_average_risk}), "
                f"{s['share_unique'] * 100:.1f}% unique (at most {t.max_unique_share * 100:g}%) "
                f"among {s['people']} people"
            )
    hints = []
    if app.date_precision == "day":
        hints.append("date_precision: month")
    if not app.date_shift:
        hints.append("date_shift: true")
    hints += ["a wider cohort (more sites, years or age bands)", "fewer tables with event dates"]
    lines.append("  the application could ask for: " + "; ".join(hints))
    lines.append("  or two committee reviewers can record an exception (kcure project review ID --exception)")
    return "\n".join(lines)
