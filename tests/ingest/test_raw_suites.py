"""The raw-data suites in expectations/raw/ cover what the contract demands, and GX loads every expectation."""

from __future__ import annotations

import json

import pytest

from kcure.core.deliveries import FEEDS
from kcure.core.suites import REPO_EXPECTATIONS

pytestmark = pytest.mark.unit


def _suite(feed: str) -> list[dict]:  # type: ignore[type-arg]
    return json.loads((REPO_EXPECTATIONS / "raw" / f"{feed}.json").read_text(encoding="utf-8"))["expectations"]


def _has(es: list[dict], kind: str, column: str, severity: str | None = None) -> bool:  # type: ignore[type-arg]
    return any(
        e["type"] == kind and e["kwargs"].get("column") == column and (severity is None or e["severity"] == severity)
        for e in es
    )


def test_feed_constant_matches_conf(cfg) -> None:  # type: ignore[no-untyped-def]
    assert list(FEEDS) == list(cfg.feeds)


def test_one_suite_per_feed_covering_columns_required_fields_code_sets_dates_and_rrn(cfg) -> None:  # type: ignore[no-untyped-def]
    assert sorted(p.stem for p in (REPO_EXPECTATIONS / "raw").glob("*.json")) == sorted(cfg.feeds)
    for feed in cfg.feeds.values():
        es = _suite(feed.name)
        for e in es:
            assert e["severity"] in ("critical", "warning"), (feed.name, e)
            assert e["meta"]["why"], (feed.name, e)
        (columns,) = [e for e in es if e["type"] == "expect_table_columns_to_match_set"]
        assert columns["kwargs"]["column_set"] == [c.name for c in feed.columns] and columns["severity"] == "critical"
        for c in feed.columns:
            if c.required:
                assert _has(es, "expect_column_values_to_not_be_null", c.name, "critical"), (feed.name, c.name)
            if c.values:
                e = next(
                    e
                    for e in es
                    if e["type"] == "expect_column_values_to_be_in_set" and e["kwargs"]["column"] == c.name
                )
                assert e["kwargs"]["value_set"] == list(c.values) and e["severity"] == "critical"
            if c.type == "rrn":
                assert _has(es, "expect_column_values_to_match_regex", c.name, "critical")
        if feed.year_column:
            e = next(
                e
                for e in es
                if e["type"] == "expect_column_values_to_be_between" and e["kwargs"]["column"] == feed.year_column
            )
            year_param = "year" if feed.column(feed.year_column).type == "int" else "year_start"
            assert e["kwargs"]["min_value"] == {"$PARAMETER": year_param} and e["severity"] == "critical"


def test_great_expectations_knows_every_expectation(cfg) -> None:  # type: ignore[no-untyped-def]
    from kcure.core.suites import GateRunner

    runner = GateRunner()
    for feed in cfg.feeds:
        assert len(runner.suite(f"raw/{feed}").expectations) == len(_suite(feed))


def test_a_critical_failure_stops_and_a_warning_does_not(cfg) -> None:  # type: ignore[no-untyped-def]
    import datetime as dt

    import pandas as pd

    from kcure.core.suites import GateRunner

    row = {
        "RRN": "8001011234560",
        "NAME": "김민준",
        "PHONE": "010-1234-5678",
        "VCNYMD": dt.date(2021, 6, 1),
        "VCNCD": "PF",
        "VCNTME": 1,
    }
    params = {
        "year_start": "2021-01-01",
        "year_end": "2021-12-31",
        "window_start": "2020-01-01",
        "window_end": "2022-12-31",
    }
    runner = GateRunner()
    ok = runner.validate("raw/kdca_vaccination", pd.DataFrame([row] * 200), batch="ok", params=params)
    assert ok.success and not ok.warnings
    warn = runner.validate(
        "raw/kdca_vaccination", pd.DataFrame([row] * 199 + [{**row, "RRN": "12345"}]), batch="w", params=params
    )
    assert warn.success and [o.label for o in warn.warnings] == ["expect_column_values_to_match_regex(RRN)"]
    bad = runner.validate(
        "raw/kdca_vaccination",
        pd.DataFrame([row] * 199 + [{**row, "VCNYMD": dt.date(2022, 1, 1)}]),
        batch="b",
        params=params,
    )
    assert not bad.success
    assert [o.label for o in bad.critical_failures] == ["expect_column_values_to_be_between(VCNYMD)"]
    assert bad.critical_failures[0].unexpected_count == 1


def test_a_second_gates_data_docs_render_from_the_templates_the_first_compiled(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """GX gives every page renderer its own Jinja environment; the shared cache means a feed-year's
    Data Docs no longer compile the templates again, and the pages are the same ones."""
    import datetime as dt
    import re

    import jinja2
    import pandas as pd

    from kcure.core.suites import GateRunner

    row = {"RRN": "8001011234560", "NAME": "김민준", "PHONE": "010-1234-5678", "VCNYMD": dt.date(2021, 6, 1),
           "VCNCD": "PF", "VCNTME": 1}  # fmt: skip
    params = {"year_start": "2021-01-01", "year_end": "2021-12-31", "window_start": "2020-01-01",
              "window_end": "2022-12-31"}  # fmt: skip

    def pages(folder):  # type: ignore[no-untyped-def]
        runner = GateRunner(folder)
        assert runner.validate("raw/kdca_vaccination", pd.DataFrame([row] * 20), batch="b", params=params).success
        runner.build_docs()
        # what differs between two renderings anyway: run times, ids and numbers (a float run time
        # such as 1764617000.12 has as many digits as its trailing zeros leave it, so mask whole runs)
        return {
            p.relative_to(folder).parent.parent.as_posix(): re.sub(r"[0-9a-f]{8,}|\d+", "#", p.read_text())
            for p in folder.rglob("*.html")
        }

    first = pages(tmp_path / "a")  # compiles what the cache does not hold yet
    compiled = []
    real = jinja2.Environment.compile
    monkeypatch.setattr(jinja2.Environment, "compile", lambda env, *a, **k: compiled.append(a) or real(env, *a, **k))
    second = pages(tmp_path / "b")
    assert compiled == []
    assert len(first) >= 2 and "kdca_vaccination" in "".join(first.values())
    assert sorted(first) == sorted(second)
    assert first == second
