"""A small build's pseudonymize stage works on two feeds at a time; what it writes must not depend on it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from kcure.core.secrets import Secret
from kcure.core.spark import concurrent_jobs, staged_mb
from kcure.stages import pseudonymize
from tests.conftest import TEST_LIBRARY_SECRET, TEST_LINKAGE_SECRET, with_pipeline

pytestmark = [pytest.mark.spark, pytest.mark.integration]


def _with_concurrency(cfg: Any, below_mb: float) -> Any:
    # every feed made here: with reuse on, the second run would link the first run's files (a sibling folder)
    return with_pipeline(cfg, spark={"master": "local[2]", "concurrent_below_mb": below_mb}, builds={"reuse": False})


def _rows(folder: Path) -> list[tuple[Any, ...]]:
    """Every row of a feed's output with its ``_year`` partition (pyarrow skips folders named ``_...``)."""
    rows = []
    for part in folder.glob("_year=*/*.parquet"):
        t = pq.read_table(part)
        rows += [(part.parent.name, *r) for r in zip(*[t.column(c).to_pylist() for c in t.column_names], strict=True)]
    return sorted(rows, key=repr)


def test_feeds_pseudonymized_two_at_a_time_equal_those_made_one_at_a_time(spark, staged_local, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    cfg, _ = staged_local
    secrets = {"linkage": Secret("linkage", TEST_LINKAGE_SECRET.encode()),
               "library": Secret("library", TEST_LIBRARY_SECRET.encode())}  # fmt: skip
    one, two = _with_concurrency(cfg, 0), _with_concurrency(cfg, 10**6)
    assert concurrent_jobs(one.spark, staged_mb(one)) == 1 and concurrent_jobs(two.spark, staged_mb(two)) == 2
    a = pseudonymize.run(spark, one, secrets, tmp_path / "one")
    b = pseudonymize.run(spark, two, secrets, tmp_path / "two")
    assert a.feeds == b.feeds and a.missing == b.missing == [] and len(a.feeds) == 10
    assert a.reused == b.reused == {}  # both made every feed: nothing compared with itself
    for feed in a.feeds:
        rows = _rows(tmp_path / "one" / feed)
        assert rows and rows == _rows(tmp_path / "two" / feed), feed
