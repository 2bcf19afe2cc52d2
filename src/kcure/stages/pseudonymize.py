"""Pseudonymize: staged feeds (identifiers) -> keys + generalized payload (no identifiers).

The only step that sees identifiers. For every staged row it computes
* ``LK``: HMAC-SHA256(linkage secret, normalized RRN) when the RRN passes its check digit;
* ``SK``: HMAC-SHA256(linkage secret, "SK|name|birth|sex") where name, birth date and sex are known
  (birth and sex from the feed's own columns, else from the RRN's first seven digits);
* keyed substitutes for MID, YKIHO (-> YID) and PRSCP_GRANT_NO, consistent across feeds and years;
and generalizes quasi-identifiers as ``conf/privacy.yaml`` says. Every direct identifier of the
contract is dropped. Lineage (``_feed, _year, _file, _line``) is kept for accounting.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kcure.core import transforms as T
from kcure.core.config import Config
from kcure.core.deliveries import FEEDS
from kcure.core.staging import Staging

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame, SparkSession

    from kcure.core.secrets import Secret

LINEAGE = ["_feed", "_year", "_delivery", "_file", "_line"]
KEYS = ["LK", "SK", "RRN_VALID"]
PERSON_FEEDS = (
    "kccr_registry",
    "nhis_eligibility",
    "nhis_screening",
    "hira_t200",
    "kostat_death",
    "kdca_covid_case",
    "kdca_vaccination",
)


@dataclass
class PseudonymizeResult:
    out: Path
    feeds: list[str]  # the feeds that had staged data


def read_staged(spark: SparkSession, staging: Staging, feed: str) -> DataFrame | None:
    """The live staged version of every year of a feed, with ``_feed`` and ``_year``."""
    from pyspark.sql import functions as F

    frames = []
    for year_dir in sorted((staging.root / feed).glob("[0-9]" * 4)):
        path = staging.current_path(feed, int(year_dir.name))
        if path is None:
            continue
        df = (
            spark.read.parquet(str(path))
            .withColumn("_feed", F.lit(feed))
            .withColumn("_year", F.lit(int(year_dir.name)))
        )
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


def _payload(feed: str, privacy: dict[str, Any]) -> list[Column]:
    """The generalized payload columns of one feed (SOURCES.md §4-5, conf/privacy.yaml)."""
    from pyspark.sql import functions as F

    g = privacy["generalization"]
    band, top = int(g["age_band_years"]), int(g["age_top_band"])
    kc, km = int(g["kcd_chars"]), int(g["kcd_chars_mental"])
    ing = int(g["ingredient_code_chars"])
    dev = int(g["device_code_chars"])
    c = F.col

    def kcd(name: str) -> Column:
        return T.kcd_generalized(c(name), kc, km).alias(name)

    if feed == "kccr_registry":
        fdx = (
            F.date_format(c("FDX"), "yyyyMM")
            if g["diagnosis_date"] == "yyyymm"
            else F.date_format(c("FDX"), "yyyyMMdd")
        )
        return [
            F.year(c("FDX")).alias("DBYEAR"),
            c("SEX"),
            T.age_band(c("BRTH"), c("FDX"), band, top).alias("AGE"),
            fdx.alias("FDX"),
            c("TCODE"),
            c("MCODE"),
            kcd("KCD"),
            c("SEER_GRP"),
            c("TX"),
            c("METHOD"),
            c("LATERCODE"),
            c("GRADE"),
        ]
    if feed == "nhis_eligibility":
        mid_year = F.make_date(c("STD_YYYY"), F.lit(7), F.lit(1))
        return [
            c("STD_YYYY").cast("int").alias("STD_YYYY"),
            c("SEX"),
            T.age_band(c("BRTH"), mid_year, band, top).alias("AGE"),
            T.residence_class(c("SIDO_CD"), privacy["generalization"]["residence_classes"]).alias("SIDO"),
            c("GAIBJA_TYPE"),
            c("CTRB_VTILE").cast("int").alias("CTRB_VTILE"),
            c("DSB_GRADE"),
            c("DSB_TYPE"),
        ]
    if feed == "nhis_screening":
        measures = [
            "HEIGHT",
            "WEIGHT",
            "WAIST",
            "BP_HIGH",
            "BP_LWST",
            "BLDS",
            "TOT_CHOLE",
            "HDL_CHOLE",
            "LDL_CHOLE",
            "TRIGLYCERIDE",
            "HMG",
            "OLIG_PROTE_CD",
            "CREATININE",
            "SGOT_AST",
            "SGPT_ALT",
            "GAMMA_GTP",
            "SMK_STAT_TYPE_RSPS_CD",
            "DRNK_HABIT_RSPS_CD",
        ]
        return [F.year(c("HME_DT")).alias("EXMD_BZ_YYYY"), *[c(m) for m in measures]]
    if feed == "hira_t200":
        return [
            T.substitute_key(c("MID"), "lib", "MID").alias("MID"),
            T.substitute_key(c("YKIHO"), "lib", "YKIHO").alias("YID"),
            c("CL_CD"),
            c("FOM_TP_CD"),
            kcd("M_SICK_CD"),
            kcd("SUB_SICK_CD"),
            c("DGSBJT_CD"),
            c("RECU_FR_DD"),
            c("RECU_TO_DD"),
            c("FST_IPAT_DD"),
            c("VST_DDCNT"),
            c("RECU_DDCNT"),
            c("RVD_RPE_TAMT_AMT"),
            c("SOPR_YN"),
            c("PRCL_SYM_TP_CD"),
            c("DGRSLT_TP_CD"),
        ]
    if feed == "hira_t300":
        return [
            T.substitute_key(c("MID"), "lib", "MID").alias("MID"),
            c("LN_NO"),
            c("CZ_ITEM_CD"),
            c("DIV_TY_CD"),
            T.treatment_code(c("DIV_TY_CD"), c("DIV_CD"), dev).alias("DIV_CD"),
            F.substring(c("GNL_CD"), 1, ing).alias("GNL_CD"),
            c("FQ1_MDCT_QTY"),
            c("DY1_MDCT_QTY"),
            c("TOT_USE_QTY_OR_EXEC_FQ"),
            c("UNIT_COST"),
            c("AMT"),
        ]
    if feed == "hira_t400":
        return [
            T.substitute_key(c("MID"), "lib", "MID").alias("MID"),
            c("SICK_SNO"),
            kcd("SICK_CD"),
            c("SICK_TY_CD"),
            c("DGSBJT_CD"),
        ]
    if feed == "hira_t530":
        return [
            T.substitute_key(c("MID"), "lib", "MID").alias("MID"),
            T.substitute_key(c("PRSCP_GRANT_NO"), "lib", "PRSCP").alias("PRSCP_GRANT_NO"),
            c("LN_NO"),
            c("DIV_TY_CD"),
            T.treatment_code(F.coalesce(c("DIV_TY_CD"), F.lit("3")), c("DIV_CD"), dev).alias("DIV_CD"),
            F.substring(c("GNL_CD"), 1, ing).alias("GNL_CD"),
            c("FQ1_MDCT_QTY"),
            c("DY1_MDCT_QTY"),
            c("TOT_MCNT"),
        ]
    if feed == "kostat_death":
        return [
            F.date_format(c("DTH_DATE"), "yyyyMMdd").alias("DREGDATE"),
            c("SAIN1"),
            c("SAIN2"),
            c("SEX").alias("_SEX"),
        ]
    if feed == "kdca_covid_case":
        return [c("CONF_DATE"), c("SEVERITY"), c("HOSP_YN"), c("ICU_YN"), c("DEATH_YN")]
    if feed == "kdca_vaccination":
        return [c("VCNYMD"), c("VCNCD"), c("VCNTME")]
    raise ValueError(f"no pseudonymization rule for feed {feed}")


def pseudonymize_feed(df: DataFrame, feed: str, privacy: dict[str, Any], cols: list[str]) -> DataFrame:
    """Keys + generalized payload + lineage; no identifier survives. ``df`` carries the key pads."""
    from pyspark.sql import functions as F

    payload = _payload(feed, privacy)
    # exact duplicates (re-sent records) are only recognizable here, where the whole record is visible
    df = T.flag_duplicates(df, [c for c in cols if not c.startswith("_")], cluster="MID" if "MID" in cols else None)
    if feed in PERSON_FEEDS:
        df = identity_keys(df, has_birth_sex="BRTH" in cols and "SEX" in cols)
        keys = [F.col(k) for k in KEYS]
    else:
        keys = []
    return df.select(*[F.col(x) for x in LINEAGE], "_dup", *keys, *payload)


def run(spark: SparkSession, cfg: Config, secrets: dict[str, Secret], build: str) -> PseudonymizeResult:
    """Pseudonymize every staged feed into ``pseudonymized/<build>/<feed>/``."""
    staging = Staging(cfg.local_path("staging"), cfg.local_path("quarantine"))
    out = cfg.local_path("pseudonymized") / build
    keys = T.key_relation(spark, {"link": secrets["linkage"], "lib": secrets["library"].derive("substitute-keys")})
    done: list[str] = []
    for feed in FEEDS:
        df = read_staged(spark, staging, feed)
        if df is None:
            continue
        cols = df.columns
        # pseudonymize_feed selects lineage, keys and payload only, so the key pads do not survive it
        result = pseudonymize_feed(T.with_keys(df, keys), feed, cfg.privacy, cols)
        spark.sparkContext.setJobDescription(f"pseudonymize: {feed}")  # names the Spark jobs in the UI/event log
        result.write.mode("overwrite").partitionBy("_year").parquet(str(out / feed))
        done.append(feed)
    return PseudonymizeResult(out, done)
