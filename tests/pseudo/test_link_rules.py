"""The link job's rules on a handful of hand-made pseudonymized records."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from pyspark.testing import assertDataFrameEqual

from kcure.core.secrets import Secret
from kcure.stages.link import linker

pytestmark = pytest.mark.spark
LIB = Secret("library", b"l" * 40)
LIN = ["_feed string", "_year int", "_delivery short", "_file string", "_line long", "_dup boolean"]
KEYS = ["LK string", "SK string", "RRN_VALID boolean"]


def sn(lk: str) -> str:
    return LIB.hmac_hex(lk.encode())


def _write(spark, root: Path, feed: str, cols: list[str], rows: list[tuple]) -> None:  # type: ignore[no-untyped-def,type-arg]
    full = [(feed, r[0], 1, "part-00000", i + 2, i > 0 and r == rows[i - 1], *r[1:]) for i, r in enumerate(rows)]
    spark.createDataFrame(full, ", ".join(LIN + cols)).write.parquet(str(root / feed))


@pytest.fixture(scope="module")
def linked(spark, cfg, tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    home = tmp_path_factory.mktemp("link-rules")
    c = dataclasses.replace(cfg, home=home)
    root = home / "pseudonymized" / "b"
    reg_cols = [
        *KEYS,
        "DBYEAR int",
        "SEX string",
        "AGE string",
        "FDX string",
        "TCODE string",
        "MCODE string",
        "KCD string",
        "SEER_GRP string",
        "TX string",
        "METHOD string",
        "LATERCODE string",
        "GRADE string",
        "_SEX string",
    ]
    tail = ("C169", "81403", "C169", "2", "10000", "7", "0", "2")
    _write(
        spark,
        root,
        "kccr_registry",
        reg_cols,
        [
            (2015, "a", "sa", True, 2015, "1", "60-64", "201503", *tail, "1"),
            (2016, "b", "sb", True, 2016, "2", "50-54", "201601", *tail, "2"),
            (2016, None, "sc", False, 2016, "1", "70-74", "201606", *tail, "1"),  # bad RRN: joins through its SK
            (2017, "e1", "sx", True, 2017, "2", "40-44", "201702", *tail, "2"),
            (2017, "e2", "sx", True, 2017, "2", "40-44", "201702", *tail, "2"),  # same name, birth and sex as e1
            (2011, "z", "sz", True, 2011, "1", "60-64", "201112", *tail, "1"),  # diagnosed before the window
        ],
    )
    bfc_cols = [
        *KEYS,
        "STD_YYYY int",
        "SEX string",
        "AGE string",
        "SIDO string",
        "GAIBJA_TYPE string",
        "CTRB_VTILE int",
        "DSB_GRADE string",
        "DSB_TYPE string",
        "_SEX string",
    ]
    pay = ("60-64", "Seoul", "5", 10, None, None)
    _write(
        spark,
        root,
        "nhis_eligibility",
        bfc_cols,
        [
            (2015, "a", "sa", True, 2015, "2", *pay, "2"),  # sex disagrees with the registry
            (2016, None, "sa", False, 2016, "1", *pay, "1"),  # bad RRN, SK of a cohort person -> linked_secondary
            (2016, "c", "sc", True, 2016, "1", *pay, "1"),  # the valid-RRN record that lets the registry's bad RRN join
            (2016, "d", "sd", True, 2016, "1", *pay, "1"),  # not in the registry -> out of cohort
            (2017, None, "sx", False, 2017, "2", *pay, "2"),  # SK shared by two cohort people -> unlinked
            (2017, "b", "sb", True, 2017, "2", *pay, "2"),
            (2017, "b", "sb", True, 2017, "2", *pay, "2"),  # exact duplicate
        ],
    )
    _write(
        spark,
        root,
        "kostat_death",
        [*KEYS, "DREGDATE string", "SAIN1 string", "SAIN2 string", "_SEX string"],
        [
            (2015, "a", "sa", True, "20150211", "C169", None, "1"),  # before a's diagnosis month (201503)
            (2019, "b", "sb", True, "20190501", "C169", None, "2"),
            # a second death of b, by secondary key: a stranger's unidentified death (keep_rrn drops it)
            (2020, None, "sb", False, "20200101", "I219", None, "2"),
            # two deaths of a by secondary key only (a's RRN row is dropped above): neither is trusted
            (2018, None, "sa", False, "20180301", "I219", None, "1"),
            (2018, None, "sa", False, "20180302", "J189", None, "1"),
            (2019, None, "sc", False, "20190704", "C169", None, "1"),  # c's one death, by secondary key: kept
        ],
    )
    return linker.run(spark, c, LIB, root, home / "linked" / "b"), spark


def test_report_counts_every_rule(linked) -> None:  # type: ignore[no-untyped-def]
    result, _ = linked
    rep = {(r["_feed"], r["_year"]): r for r in result.report}
    assert rep[("kccr_registry", 2016)]["linked_secondary"] == 1
    assert rep[("kccr_registry", 2011)]["out_of_cohort"] == 1
    e16 = rep[("nhis_eligibility", 2016)]
    assert (e16["linked_secondary"], e16["linked_rrn"], e16["out_of_cohort"]) == (1, 1, 1)
    e17 = rep[("nhis_eligibility", 2017)]
    assert (e17["unlinked"], e17["duplicates_dropped"], e17["linked_rrn"]) == (1, 1, 1)
    assert rep[("nhis_eligibility", 2015)]["sex_conflicts_flagged"] == 1
    assert rep[("kostat_death", 2015)]["conflicts_dropped"] == 1
    assert (rep[("kostat_death", 2019)]["in_library"], rep[("kostat_death", 2019)]["linked_secondary"]) == (2, 1)


def test_a_person_keeps_one_death_and_a_secondary_key_never_outvotes_the_rrn(linked) -> None:  # type: ignore[no-untyped-def]
    result, _ = linked
    rep = {(r["_feed"], r["_year"]): r for r in result.report}
    assert (rep[("kostat_death", 2020)]["conflicts_dropped"], rep[("kostat_death", 2020)]["in_library"]) == (1, 0)
    assert (rep[("kostat_death", 2018)]["conflicts_dropped"], rep[("kostat_death", 2018)]["in_library"]) == (2, 0)
    r = rep[("kostat_death", 2020)]
    assert r["staged"] == sum(r[s] for s in linker.LINKAGE_STATUSES) + r["duplicates_dropped"] + r["conflicts_dropped"]


def test_library_rows_and_resolved_values(linked) -> None:  # type: ignore[no-untyped-def]
    result, spark = linked
    rgst = spark.read.parquet(str(result.out / "RGST")).select("SN_KEY", "DBYEAR")
    want = spark.createDataFrame(
        [(sn("a"), 2015), (sn("b"), 2016), (sn("c"), 2016), (sn("e1"), 2017), (sn("e2"), 2017)],
        "SN_KEY string, DBYEAR int",
    )
    assertDataFrameEqual(rgst, want)
    bfc = spark.read.parquet(str(result.out / "BFC")).select("SN_KEY", "STD_YYYY", "SEX")
    want_bfc = spark.createDataFrame(
        [(sn("a"), 2015, "1"), (sn("a"), 2016, "1"), (sn("c"), 2016, "1"), (sn("b"), 2017, "2")],
        "SN_KEY string, STD_YYYY int, SEX string",
    )
    assertDataFrameEqual(bfc, want_bfc)  # the registry's sex wins over eligibility's
    death = spark.read.parquet(str(result.out / "DEATH")).select("SN_KEY", "DREGDATE")
    want_death = [(sn("b"), "20190501"), (sn("c"), "20190704")]  # one death per person, b's by RRN
    assertDataFrameEqual(death, spark.createDataFrame(want_death, "SN_KEY string, DREGDATE string"))
