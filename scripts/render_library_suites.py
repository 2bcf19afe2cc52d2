"""Write the first draft of expectations/library/<TABLE>.json from conf/library.yaml.

Reviewed and edited by hand afterwards; tests/release/test_library_suites.py checks they still promise
exactly the catalog's columns and screen every free string column for identifiers.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from kcure.core.config import load_config

OUT = Path(__file__).resolve().parents[1] / "expectations" / "library"
# grain keys: a row of the table is identified by these columns
KEYS = {
    "T200": ["MID"],
    "T300": ["MID", "LN_NO"],
    "T400": ["MID", "SICK_SNO"],
    "T530": ["MID", "PRSCP_GRANT_NO", "LN_NO"],
    "DEATH": ["SN_KEY"],
    "VCN": ["SN_KEY", "VCNTME", "VCNYMD"],
}
VALUE_SETS = {
    "SEX": ["1", "2"],
    "SEER_GRP": ["1", "2", "3", "4", "9"],
    "SIDO": ["Seoul", "Metropolitan", "Other", "*"],
    "CL_CD": ["01", "11", "21", "28", "31", "81"],
    "SICK_TY_CD": ["1", "2", "3"],
    "DIV_TY_CD": ["1", "3", "8"],
    "SOPR_YN": ["Y", "N"],
}
# a released diagnosis code: 3-4 characters, or an ICD-10 block where k-anonymity widened the site
KCD_RELEASED = r"^([A-Z][0-9A-Z]{2,3}|C[0-9]{2}-C[0-9]{2})$"
# what an identifier looks like, whatever column it hides in
PATTERNS = {
    "an RRN": r"[0-9]{6}-?[0-9]{7}",
    "a phone number": r"01[016789]-?[0-9]{3,4}-?[0-9]{4}",
    "a Korean street address": r"[가-힣]+(로|길) ?[0-9]+",
}
# all of them in one pattern: one expectation per column (Great Expectations' cost is per expectation)
IDENTIFIER = "|".join(f"(?:{regex})" for regex in PATTERNS.values())


def exp(kind: str, kwargs: dict, severity: str, why: str) -> dict:
    return {"type": kind, "kwargs": kwargs, "severity": severity, "meta": {"why": why}, "notes": why}


def render(name: str, spec: dict) -> dict:
    es = []
    cols = {c["name"]: c for c in spec["columns"]}
    es.append(
        exp(
            "expect_table_columns_to_match_set",
            {"column_set": [c["name"] for c in spec["columns"]], "exact_match": True},
            "critical",
            "The catalog promises these columns, and no others: an extra column could carry an identifier.",
        )
    )
    if "SN_KEY" in cols:
        es.append(
            exp(
                "expect_column_values_to_not_be_null",
                {"column": "SN_KEY"},
                "critical",
                "Every row belongs to a cohort person.",
            )
        )
        es.append(
            exp(
                "expect_column_value_lengths_to_equal",
                {"column": "SN_KEY", "value": 64},
                "critical",
                "SN_KEY is a hex HMAC-SHA256.",
            )
        )
    if "MID" in cols:
        es.append(
            exp(
                "expect_column_values_to_not_be_null",
                {"column": "MID"},
                "critical",
                "Claim lines join T200 through MID.",
            )
        )
    keys = KEYS.get(name)
    if keys and len(keys) == 1:
        es.append(
            exp(
                "expect_column_values_to_be_unique",
                {"column": keys[0]},
                "critical",
                f"{name} has one row per {keys[0]}.",
            )
        )
    elif keys:
        es.append(
            exp(
                "expect_compound_columns_to_be_unique",
                {"column_list": keys},
                "critical",
                f"{name} has one row per {', '.join(keys)}.",
            )
        )
    for col, values in VALUE_SETS.items():
        if col in cols:
            es.append(
                exp(
                    "expect_column_values_to_be_in_set",
                    {"column": col, "value_set": values},
                    "critical",
                    f"{col} is a code with a fixed set.",
                )
            )
    for col in ("DBYEAR",):
        if col in cols:
            es.append(
                exp(
                    "expect_column_values_to_be_between",
                    {
                        "column": col,
                        "min_value": {"$PARAMETER": "window_start_year"},
                        "max_value": {"$PARAMETER": "window_end_year"},
                    },
                    "critical",
                    "The cohort is diagnosed inside the window.",
                )
            )
    for col in ("RECU_FR_DD", "CONF_DATE", "VCNYMD"):
        if col in cols:
            es.append(
                exp(
                    "expect_column_values_to_be_between",
                    {"column": col, "min_value": "2012-01-01", "max_value": "2022-12-31"},
                    "critical",
                    "Claims and outcomes lie inside the feeds' years.",
                )
            )
    if "KCD" in cols or "SICK_CD" in cols or "M_SICK_CD" in cols:
        for col in ("KCD", "SICK_CD", "M_SICK_CD", "SUB_SICK_CD"):
            if col in cols:
                es.append(
                    exp(
                        "expect_column_values_to_match_regex",
                        {"column": col, "regex": KCD_RELEASED},
                        "critical",
                        "KCD is generalized to 4 characters (3 for F), or shows the ICD-10 block of a site "
                        "the protect stage widened (C15-C26).",
                    )
                )
    for c in spec["columns"]:
        if c["type"] != "string" or c["name"] in ("SN_KEY", "MID", "YID", "PRSCP_GRANT_NO"):
            continue
        es.append(
            exp(
                "expect_column_values_to_not_match_regex",
                {"column": c["name"], "regex": IDENTIFIER},
                "critical",
                f"No value may look like {', '.join(list(PATTERNS)[:-1])} or {list(PATTERNS)[-1]}.",
            )
        )
    return {"name": f"library.{name}", "meta": {"table": name, "stage": "linked -> release"}, "expectations": es}


def main() -> int:
    cfg = load_config()
    OUT.mkdir(parents=True, exist_ok=True)
    for name, spec in cfg.raw["library.yaml"]["tables"].items():  # the file as written, before typing
        (OUT / f"{name}.json").write_text(
            json.dumps(render(name, spec), indent=2, ensure_ascii=False) + "\n", encoding="utf-8"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
