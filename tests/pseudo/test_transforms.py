"""Each pseudonymization transform on tiny DataFrames, asserted with assertDataFrameEqual."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac

import pytest
from pyspark.sql import functions as F
from pyspark.testing import assertDataFrameEqual

from kcure.core import transforms as T
from kcure.core.secrets import Secret
from kcure.core.spark import local_frame

pytestmark = pytest.mark.spark
KEY = Secret("linkage", b"k" * 40)
LONG_KEY = Secret("library", b"L" * 100)  # longer than the SHA-256 block: hashed first, as RFC 2104 says


@pytest.mark.parametrize("secret", [KEY, LONG_KEY])
def test_hmac_from_builtins_equals_python_hmac(spark, secret: Secret) -> None:  # type: ignore[no-untyped-def]
    msgs = ["8001011234560", "SK|김민준|19800101|1", ""]
    df = spark.createDataFrame([(m,) for m in msgs], "m string")
    keys = T.key_relation(spark, {"k": secret})
    got = T.with_keys(df, keys).select("m", T.hmac_sha256(F.col("m"), "k").alias("h"))
    want = spark.createDataFrame(
        [(m, hmac.new(secret._value, m.encode(), hashlib.sha256).hexdigest()) for m in msgs], "m string, h string"
    )
    assertDataFrameEqual(got, want)


def test_key_material_is_not_in_the_query_plan(spark) -> None:  # type: ignore[no-untyped-def]
    df = spark.createDataFrame([("8001011234560",)], "m string")
    keys = T.key_relation(spark, {"k": KEY})
    q = T.with_keys(df, keys).select(T.hmac_sha256(F.col("m"), "k").alias("h"))
    plan = q._jdf.queryExecution().toString()  # parsed, analyzed, optimized and physical plans
    ipad, opad = KEY.pads()
    for material in (KEY._value.decode(), ipad.hex(), opad.hex(), ipad.hex().upper(), opad.hex().upper()):
        assert material not in plan


def test_key_material_stays_in_the_jvm_so_joining_the_keys_starts_no_python_worker(spark) -> None:  # type: ignore[no-untyped-def]
    """The keys are scanned from a local relation that the JVM holds, not from a Python RDD: a Python
    RDD's rows are pickled into every task that reads them, and Spark starts Python worker processes
    (each of them then holding the pads) to unpickle them."""
    df = local_frame(spark, [("8001011234560",)], "m string")
    q = T.with_keys(df, T.key_relation(spark, {"k": KEY})).select(T.hmac_sha256(F.col("m"), "k").alias("h"))
    plan = q._jdf.queryExecution().executedPlan().toString()
    assert "LocalTableScan [k_ipad" in plan
    assert "ExistingRDD" not in plan and "PythonRDD" not in q._jdf.queryExecution().toRdd().toDebugString()


def test_rrn_validity_birth_and_sex(spark) -> None:  # type: ignore[no-untyped-def]
    rows = [("8001011234560",), ("8001011234568",), ("0412314123458",), ("12345",), (None,), ("800101123456X",)]
    df = spark.createDataFrame(rows, "r string")
    got = df.select(
        "r", T.rrn_valid(F.col("r")).alias("v"), T.rrn_birth(F.col("r")).alias("b"), T.rrn_sex(F.col("r")).alias("s")
    )
    from kcure.core.rrn import is_valid

    want = spark.createDataFrame(
        [
            ("8001011234560", True, dt.date(1980, 1, 1), "1"),
            ("8001011234568", False, dt.date(1980, 1, 1), "1"),
            ("0412314123458", is_valid("0412314123458"), dt.date(2004, 12, 31), "2"),
            ("12345", False, None, None),
            (None, False, None, None),
            ("800101123456X", False, dt.date(1980, 1, 1), "1"),
        ],
        "r string, v boolean, b date, s string",
    )
    assertDataFrameEqual(got, want)


def test_digits_only_and_secondary_message(spark) -> None:  # type: ignore[no-untyped-def]
    df = spark.createDataFrame(
        [
            (" 800101-1234560 ", " 김 민준 ", dt.date(1980, 1, 1), "1"),
            ("", "john smith", dt.date(1990, 2, 3), "2"),
            (None, None, None, "1"),
        ],
        "r string, n string, b date, s string",
    )
    got = df.select(
        T.rrn_digits_only(F.col("r")).alias("r"), T.secondary_message(F.col("n"), F.col("b"), F.col("s")).alias("m")
    )
    want = spark.createDataFrame(
        [("8001011234560", "SK|김민준|19800101|1"), (None, "SK|JOHNSMITH|19900203|2"), (None, None)],
        "r string, m string",
    )
    assertDataFrameEqual(got, want)


def test_age_bands_with_85_plus(spark) -> None:  # type: ignore[no-untyped-def]
    at = dt.date(2020, 6, 15)
    births = [
        dt.date(2020, 1, 1),
        dt.date(2015, 6, 16),
        dt.date(1960, 6, 15),
        dt.date(1935, 6, 16),
        dt.date(1935, 6, 15),
        None,
    ]
    df = spark.createDataFrame([(b, at) for b in births], "b date, a date")
    got = df.select(T.age_band(F.col("b"), F.col("a")).alias("band"))
    want = spark.createDataFrame([("00-04",), ("00-04",), ("60-64",), ("80-84",), ("85+",), (None,)], "band string")
    assertDataFrameEqual(got, want)


def test_kcd_residence_and_treatment_code_generalization(spark) -> None:  # type: ignore[no-untyped-def]
    classes = {"Seoul": ["11"], "Metropolitan": ["26", "27", "28", "29", "30", "31"], "Other": None}
    df = spark.createDataFrame(
        [
            ("C1690", "11", "3", "641900330"),
            ("F3290", "26", "8", "J5083115"),
            ("I10", "41", "1", "AA154"),
            (None, None, "3", None),
        ],
        "k string, s string, t string, d string",
    )
    got = df.select(
        T.kcd_generalized(F.col("k")).alias("k"),
        T.residence_class(F.col("s"), classes).alias("s"),
        T.treatment_code(F.col("t"), F.col("d")).alias("d"),
    )
    want = spark.createDataFrame(
        [("C169", "Seoul", None), ("F32", "Metropolitan", "J5083"), ("I10", "Other", "AA154"), (None, None, None)],
        "k string, s string, d string",
    )
    assertDataFrameEqual(got, want)


def test_substitute_keys_are_consistent_and_label_separated(spark) -> None:  # type: ignore[no-untyped-def]
    df = spark.createDataFrame([("201500001",), ("201500001",), ("201500002",)], "v string")
    keys = T.key_relation(spark, {"k": KEY})
    got = (
        T.with_keys(df, keys)
        .select(
            T.substitute_key(F.col("v"), "k", "MID").alias("mid"),
            T.substitute_key(F.col("v"), "k", "YKIHO").alias("yid"),
        )
        .collect()
    )
    assert got[0].mid == got[1].mid != got[2].mid
    assert got[0].mid != got[0].yid
    assert len(got[0].mid) == 20
    assert got[0].mid == KEY.hmac_hex(b"MID|201500001")[:20]


@pytest.mark.parametrize("cluster", [None, "MID"])
def test_flag_duplicates_marks_every_later_exact_copy_only(spark, cluster: str | None) -> None:  # type: ignore[no-untyped-def]
    rows = [
        # MID, LN, CODE, _year, _file, _line
        ("m1", 1, "A", 2015, "part-0", 1),
        ("m1", 1, "A", 2015, "part-0", 2),  # copy of line 1, later: duplicate
        ("m1", 1, "B", 2015, "part-0", 3),  # differs in one column: kept
        ("m1", 1, None, 2015, "part-0", 4),
        ("m1", 1, None, 2016, "part-0", 1),  # a copy with a null, a year later: duplicate
        ("m2", 1, "A", 2014, "part-1", 9),  # same as m1's but another MID: kept
        ("m1", 1, "A", 2014, "part-9", 7),  # the earliest copy of m1/1/A: it is the original
    ]
    df = spark.createDataFrame(rows, "MID string, LN int, CODE string, _year int, _file string, _line int")
    got = T.flag_duplicates(df, ["MID", "LN", "CODE"], cluster=cluster)
    flagged = {(r["_year"], r["_file"], r["_line"]): r["_dup"] for r in got.collect()}
    assert got.count() == len(rows)
    assert flagged == {
        (2015, "part-0", 1): True,
        (2015, "part-0", 2): True,
        (2015, "part-0", 3): False,
        (2015, "part-0", 4): False,
        (2016, "part-0", 1): True,
        (2014, "part-1", 9): False,
        (2014, "part-9", 7): False,
    }


def test_identity_keys_are_hmacs_of_the_normalized_identity(spark) -> None:  # type: ignore[no-untyped-def]
    from kcure.stages.pseudonymize import identity_keys

    def h(m: str) -> str:
        return hmac.new(KEY._value, m.encode(), hashlib.sha256).hexdigest()

    df = spark.createDataFrame(
        [
            (" 800101-1234560 ", " 김 민준 ", None, None),  # birth and sex from the RRN
            ("8001011234568", "kim", dt.date(1981, 2, 3), "2"),  # bad check digit: no LK; own birth and sex
            ("", "kim", None, None),  # no RRN, so no birth or sex: neither key
            ("8001011234560", "   ", None, None),  # blank name: LK only
        ],
        "RRN string, NAME string, BRTH date, SEX string",
    )
    keys = T.key_relation(spark, {"link": KEY})
    got = T.drop_keys(identity_keys(T.with_keys(df, keys), has_birth_sex=True), keys)
    assert got.columns == ["RRN", "NAME", "BRTH", "SEX", "RRN_VALID", "LK", "SK"]
    want = [
        (True, h("8001011234560"), h("SK|김민준|19800101|1")),
        (False, None, h("SK|KIM|19810203|2")),
        (False, None, None),
        (True, h("8001011234560"), None),
    ]
    assert [(r["RRN_VALID"], r["LK"], r["SK"]) for r in got.collect()] == want
