"""The library suites (expectations/library/<TABLE>.json) against conf/library.yaml: each promises
exactly the catalog's columns, and screens every free string column for identifier-shaped values."""

from __future__ import annotations

import json
import re

import pytest

from tests.conftest import REPO

pytestmark = pytest.mark.unit

KEYS = {"SN_KEY", "MID", "YID", "PRSCP_GRANT_NO"}  # pseudonymous keys and claim numbers: not free text
IDENTIFIERS = ["900101-1234567", "9001011234567", "010-1234-5678", "01012345678", "세종대로 110", "x 테헤란로12 y"]
ORDINARY = ["C16", "C15-C26", "01", "Seoul", "2016-03-01", "Y", "8032/3", "60-64", "*"]


def _suite(table: str) -> list[dict]:  # type: ignore[type-arg]
    data = json.loads((REPO / "expectations" / "library" / f"{table}.json").read_text(encoding="utf-8"))
    return list(data["expectations"])


def test_every_library_suite_promises_exactly_the_catalogs_columns(cfg) -> None:  # type: ignore[no-untyped-def]
    for name, table in cfg.library.tables.items():
        (match,) = [e for e in _suite(name) if e["type"] == "expect_table_columns_to_match_set"]
        assert match["kwargs"]["column_set"] == [c.name for c in table.columns], name
        assert match["kwargs"]["exact_match"] is True and match["severity"] == "critical", name


def test_every_free_string_column_is_screened_for_identifiers(cfg) -> None:  # type: ignore[no-untyped-def]
    for name, table in cfg.library.tables.items():
        screens = {
            e["kwargs"]["column"]: e for e in _suite(name) if e["type"] == "expect_column_values_to_not_match_regex"
        }
        strings = {c.name for c in table.columns if c.type == "string"} - KEYS
        assert strings and set(screens) == strings, name
        for column, e in screens.items():
            pattern = re.compile(e["kwargs"]["regex"])  # Spark's rlike: a match anywhere in the value
            assert e["severity"] == "critical"
            assert all(pattern.search(v) for v in IDENTIFIERS), (name, column)
            assert not any(pattern.search(v) for v in ORDINARY), (name, column)
