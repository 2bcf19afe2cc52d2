"""A small build's pseudonymize stage works on two feeds at a time; what it writes must not depend on it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from kcure.core.secrets import Secret
from kcure.core.spark import concurrent_jobs, staged_mb
from kcure.stages import pseudonymize
from tests.build_fixture import Build
from tests.conftest import TEST_LIBRARY_SECRET, TEST_LINKAGE_SECRET, with_pipeline

pytestmark = [pytest.mark.spark, pytest.mark.integration, pytest.mark.slow]  # it compares with the `built` fixture


def _one_at_a_time(cfg: Any) -> Any:
    # every feed made here: with reuse on, the run could link an earlier build's files
    return with_pipeline(cfg, spark={"master": "local[2]", "concurrent_below_mb": 0}, builds={"reuse": False})


def _rows(folder: Path) -> list[tuple[Any, ...]]:
    """Every row of a feed's output with its ``_year`` partition (pyarrow skips folders named ``_...``)."""
    rows = []
    for part in folder.glob("_year=*/*.parquet"):
        t = pq.read_table(part)
        rows += [(part.parent.name, *r) for r in zip(*[t.column(c).to_pylist() for c in t.column_names], strict=True)]
    return sorted(rows, key=repr)


def test_feeds_pseudonymized_two_at_a_time_equal_those_made_one_at_a_time(  # type: ignore[no-untyped-def]
    spark, staged_local, built: Build, tmp_path: Path
) -> None:
    """The `built` fixture's build pseudonymized the staging zone two feeds at a time (the defaults: local[2],
    a staging zone far below concurrent_below_mb); here the same zone, with the same secrets, one at a time."""
    cfg, _ = staged_local
    secrets = {"linkage": Secret("linkage", TEST_LINKAGE_SECRET.encode()),
               "library": Secret("library", TEST_LIBRARY_SECRET.encode())}  # fmt: skip
    one = _one_at_a_time(cfg)
    assert concurrent_jobs(cfg.spark, staged_mb(cfg)) == 2 and concurrent_jobs(one.spark, staged_mb(one)) == 1
    made = json.loads((built.home / "reports" / "builds" / "t1" / "pseudonymize.json").read_text())
    a = pseudonymize.run(spark, one, secrets, tmp_path / "one")
    assert a.feeds == made["feeds"] and a.missing == made["missing"] == [] and len(a.feeds) == 10
    assert a.reused == made["reused"] == {}  # both made every feed: nothing compared with itself
    for feed in a.feeds:
        rows = _rows(tmp_path / "one" / feed)
        assert rows and rows == _rows(built.pseudo / feed), feed
