"""Write the first draft of expectations/raw/<feed>.json from conf/feeds.yaml.

The suites are reviewed and edited by hand afterwards; tests/ingest/test_raw_suites.py checks that
they still cover what the contract requires (columns, required fields, code sets, dates, RRN shape).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from kcure.core.config import Feed, load_config

OUT = Path(__file__).resolve().parents[1] / "expectations" / "raw"
DATE_TOLERANCE_DAYS = 366  # dates other than the feed-year's own date may lie a year either side


def exp(kind: str, kwargs: dict, severity: str, why: str) -> dict:
    return {"type": kind, "kwargs": kwargs, "severity": severity, "meta": {"why": why}, "notes": why}


def render(feed: Feed) -> dict:
    es = []
    es.append(  # one expectation for all columns: Great Expectations' cost is per expectation
        exp(
            "expect_table_columns_to_match_set",
            {"column_set": [c.name for c in feed.columns], "exact_match": False},
            "critical",
            f"Every column of the {feed.name} contract (conf/feeds.yaml) is there.",
        )
    )
    for c in feed.columns:
        if c.required:
            es.append(
                exp(
                    "expect_column_values_to_not_be_null",
                    {"column": c.name},
                    "critical",
                    f"{c.name} is required by the contract; a row without it cannot be used.",
                )
            )
    for c in feed.columns:
        if c.values:
            es.append(
                exp(
                    "expect_column_values_to_be_in_set",
                    {"column": c.name, "value_set": list(c.values), "mostly": 0.999},
                    "critical",
                    f"{c.name} is a code with a fixed set; tolerance 0.1% for stray codes.",
                )
            )
    for c in feed.columns:
        if c.type != "date":
            continue
        if c.name == feed.year_column:
            es.append(
                exp(
                    "expect_column_values_to_be_between",
                    {
                        "column": c.name,
                        "min_value": {"$PARAMETER": "year_start"},
                        "max_value": {"$PARAMETER": "year_end"},
                    },
                    "critical",
                    f"{c.name} decides the feed-year; every row must fall inside it (tolerance 0 days).",
                )
            )
        elif c.name == "BRTH":
            es.append(
                exp(
                    "expect_column_values_to_be_between",
                    {
                        "column": c.name,
                        "min_value": "1880-01-01",
                        "max_value": {"$PARAMETER": "year_end"},
                        "mostly": 0.999,
                    },
                    "critical",
                    "A birth date after the feed-year or before 1880 is wrong.",
                )
            )
        else:
            es.append(
                exp(
                    "expect_column_values_to_be_between",
                    {
                        "column": c.name,
                        "min_value": {"$PARAMETER": "window_start"},
                        "max_value": {"$PARAMETER": "window_end"},
                    },
                    "warning",
                    f"{c.name} normally lies within {DATE_TOLERANCE_DAYS} days of the feed-year.",
                )
            )
    for c in feed.columns:
        if c.name == feed.year_column and c.type == "int":
            es.append(
                exp(
                    "expect_column_values_to_be_between",
                    {"column": c.name, "min_value": {"$PARAMETER": "year"}, "max_value": {"$PARAMETER": "year"}},
                    "critical",
                    f"{c.name} is the feed-year itself.",
                )
            )
    for c in feed.columns:
        if c.type == "rrn":
            es.append(
                exp(
                    "expect_column_values_to_match_regex",
                    {"column": c.name, "regex": r"^\d{13}$", "mostly": 0.99},
                    "critical",
                    "After removing the hyphen an RRN is 13 digits; more than 1% otherwise means a broken extract.",
                )
            )
            es.append(
                exp(
                    "expect_column_values_to_match_regex",
                    {"column": c.name, "regex": r"^\d{13}$"},
                    "warning",
                    "Every RRN should be 13 digits; the few that are not are linked by the secondary key.",
                )
            )
    es.append(
        exp(
            "expect_table_row_count_to_be_between",
            {"min_value": 1},
            "warning",
            "An empty feed-year is possible for a small population but worth a look.",
        )
    )
    return {
        "name": f"raw.{feed.name}",
        "meta": {
            "feed": feed.name,
            "stage": "landing -> staging",
            "parameters": "year: the feed-year; year_start, year_end: its first and last day; "
            "window_start, window_end: the feed-year widened by "
            f"{DATE_TOLERANCE_DAYS} days",
        },
        "expectations": es,
    }


def main() -> int:
    cfg = load_config()
    OUT.mkdir(parents=True, exist_ok=True)
    for feed in cfg.feeds.values():
        (OUT / f"{feed.name}.json").write_text(
            json.dumps(render(feed), indent=2, ensure_ascii=False) + "\n", encoding="utf-8"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
