from __future__ import annotations

import pandas as pd
import pytest

from kcure.core import kanon as P
from kcure.core.rules import RecodingStep

pytestmark = pytest.mark.unit
QIS = ["SEX", "AGE", "SIDO", "DBYEAR", "TCODE3"]
STEPS = [
    RecodingStep("TCODE3", "site_to_block"),
    RecodingStep("AGE", "age_to_band", width=10),
    RecodingStep("SIDO", "suppress"),
]


def _people(rows: list[tuple]) -> pd.DataFrame:  # type: ignore[type-arg]
    return pd.DataFrame(rows, columns=QIS)


def test_widening_helpers() -> None:
    assert P.icd10_block("C16") == "C15-C26" and P.icd10_block("C73") == "C73-C75" and P.icd10_block("C50") == "C50"
    assert P.widen_age("60-64", 10) == "60-69" and P.widen_age("85+", 10) == "85+"


def test_classes_already_k_anonymous_are_left_alone() -> None:
    df = _people([("1", "60-64", "Seoul", 2015, "C16")] * 5)
    res = P.enforce_k(df, QIS, 5, STEPS)
    assert res.costs == [] and res.dropped == [] and res.min_class == 5
    pd.testing.assert_frame_equal(res.table, df.astype("object"))


def test_small_classes_are_recoded_locally_before_anyone_is_dropped() -> None:
    big = [("1", "60-64", "Seoul", 2015, "C16")] * 6
    # stomach (C16) and colon (C18) in a small class: widening the site to C15-C26 merges them
    small = [("2", "70-74", "Other", 2016, "C16")] * 3 + [("2", "70-74", "Other", 2016, "C18")] * 2
    lonely = [("2", "30-34", "Seoul", 2012, "C71")]
    res = P.enforce_k(_people(big + small + lonely), QIS, 5, STEPS)
    assert res.table.loc[:5, "TCODE3"].tolist() == ["C16"] * 6  # people in big classes keep their values
    assert set(res.table.loc[6:10, "TCODE3"]) == {"C15-C26"}
    assert res.dropped == [11]  # nothing could hide the single brain cancer
    assert [(c.step, c.people) for c in res.costs] == [
        ("site_to_block:TCODE3", 6),
        ("age_to_band:AGE", 1),
        ("suppress:SIDO", 1),
        ("drop", 1),
    ]
    assert res.min_class >= 5


def test_l_diversity_counts_distinct_sensitive_values_per_class() -> None:
    df = _people([("1", "60-64", "Seoul", 2015, "C16")] * 3 + [("2", "60-64", "Seoul", 2015, "C16")] * 2)
    df["SAIN1"] = ["C169", "I219", None, "C169", "C169"]
    assert P.l_diversity(df, QIS, "SAIN1") == 1
