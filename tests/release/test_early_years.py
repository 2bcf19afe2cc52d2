"""A library over 2012-2016 only (K-CURE's first release had no COVID-19 data) builds and publishes:
a feed with nothing staged gives an empty table with its schema, and the release says why."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from tests.conftest import REPO, TEST_LIBRARY_SECRET, TEST_LINKAGE_SECRET

pytestmark = [pytest.mark.spark, pytest.mark.integration, pytest.mark.slow]
YEARS = range(2012, 2017)


def test_a_library_of_2012_to_2016_is_built_and_published_with_empty_outcome_tables(  # type: ignore[no-untyped-def]
    spark, staged_local, cfg, tmp_path: Path, monkeypatch, capsys
) -> None:
    import dataclasses

    from kcure import cli, pipeline
    from kcure.access.query import query
    from kcure.core.catalog import open_catalog, resolve

    local_cfg, _ = staged_local
    home = tmp_path / "home"
    for year_dir in sorted(local_cfg.local_path("staging").glob("*/*")):
        if year_dir.name.isdigit() and int(year_dir.name) in YEARS:
            shutil.copytree(year_dir, home / "staging" / year_dir.parent.name / year_dir.name)
    assert not list((home / "staging").glob("kdca_*"))
    monkeypatch.setenv("KCURE_LINKAGE_SECRET", TEST_LINKAGE_SECRET)
    monkeypatch.setenv("KCURE_LIBRARY_SECRET", TEST_LIBRARY_SECRET)
    c = dataclasses.replace(cfg, home=home)
    plan = pipeline.plan(c, release="first")  # no build id: the build picks its own
    assert re.fullmatch(r"\d{8}-\d{6}", plan.build) and plan.stages[-2:] == ("publish", "report")
    pipeline.run_plan(c, plan, spark=spark)

    release = resolve(open_catalog(c), "first")
    assert release.build == plan.build
    counts = release.manifest["row_counts"]
    assert set(counts) == set(cfg.library.tables)
    assert counts["COVID"] == counts["VCN"] == 0
    assert all(n > 0 for t, n in counts.items() if t not in ("COVID", "VCN")), counts
    assert release.manifest["empty_tables"] == {
        "COVID": "no rows: nothing of kdca_covid_case is staged",
        "VCN": "no rows: nothing of kdca_vaccination is staged",
    }
    assert {r["_feed"] for r in release.manifest["linkage_report"]}.isdisjoint({"kdca_covid_case", "kdca_vaccination"})
    assert {int(r["_year"]) for r in release.manifest["linkage_report"]} <= set(YEARS)
    assert release.manifest["gates"]["success"]
    # an empty table keeps its schema, and analysts can query it
    covid = query(c, "select * from COVID", "first")
    assert covid.columns == [col.name for col in cfg.library.tables["COVID"].columns]
    assert covid.fetchall() == []
    monkeypatch.setenv("KCURE_HOME", str(home))
    monkeypatch.setenv("KCURE_CONF", str(REPO / "conf"))
    assert cli.main(["releases", "show", "first"]) == 0
    shown = capsys.readouterr().out
    assert "COVID             0 rows" in shown and "nothing of kdca_covid_case is staged" in shown
    page = (home / "reports" / "releases" / "first" / "index.html").read_text(encoding="utf-8")
    assert "nothing of kdca_vaccination is staged" in page


def test_kcure_build_needs_no_build_id() -> None:
    from kcure import cli

    args = cli.build_parser().parse_args(["build", "--release", "r1"])
    assert args.build is None and args.release == "r1" and args.start is None
