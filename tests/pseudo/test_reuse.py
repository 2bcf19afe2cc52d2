"""Incremental builds: a build links an earlier build's pseudonymized feed when nothing it depends on
changed, pseudonymizes again the feed whose staged version did change, and the result is the same as
pseudonymizing everything again."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pytest
import yaml

from kcure.stages.pseudonymize import REUSE_KEY
from tests.build_fixture import Build
from tests.conftest import REPO, TEST_LIBRARY_SECRET, TEST_LINKAGE_SECRET

pytestmark = [pytest.mark.spark, pytest.mark.integration, pytest.mark.slow]

FEED, YEAR = "kdca_covid_case", 2021


def _pseudonymize(home: Path, conf: Path, build: str) -> dict:  # type: ignore[type-arg]
    env = {
        **os.environ,
        "KCURE_HOME": str(home),
        "KCURE_CONF": str(conf),
        "KCURE_LINKAGE_SECRET": TEST_LINKAGE_SECRET,
        "KCURE_LIBRARY_SECRET": TEST_LIBRARY_SECRET,
    }
    cmd = [sys.executable, "-m", "kcure.cli", "build", "--build", build, "--to", "pseudonymize"]
    proc = subprocess.run(cmd, env=env, cwd=REPO, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads((home / "reports" / "builds" / build / "pseudonymize.json").read_text())


def _table(feed_dir: Path) -> pa.Table:
    """A pseudonymized feed with its ``_year`` partitions (pyarrow skips ``_``-prefixed folders unless told)."""
    files = sorted(str(f) for f in feed_dir.glob("_year=*/*.parquet"))
    table = ds.dataset(files, format="parquet", partitioning="hive", partition_base_dir=str(feed_dir)).to_table()
    assert table.num_rows > 0 and "_year" in table.column_names, feed_dir
    return table


def _rows(feed_dir: Path) -> list[str]:
    return sorted(map(repr, _table(feed_dir).to_pylist()))


def test_a_re_delivery_re_pseudonymizes_its_feed_only_and_equals_a_full_rebuild(  # type: ignore[no-untyped-def]
    built: Build, staged_local, small_landing: Path, tmp_path: Path
) -> None:
    from kcure.stages.ingest.ingestor import ingest

    local_cfg, _ = staged_local
    home = tmp_path / "home"
    shutil.copytree(built.home / "staging", home / "staging")
    shutil.copytree(built.pseudo, home / "pseudonymized" / "t1")  # the earlier build, with its reuse keys
    assert (home / "pseudonymized" / "t1" / FEED / REUSE_KEY).is_file()

    # nothing changed: every feed is linked from t1, no byte written again
    same = _pseudonymize(home, REPO / "conf", "t2")
    assert same["reused"] == dict.fromkeys(same["feeds"], "t1") and len(same["feeds"]) >= 8
    t1_file = next((home / "pseudonymized" / "t1" / "hira_t300").rglob("*.parquet"))
    assert os.path.samefile(t1_file, home / "pseudonymized" / "t2" / t1_file.relative_to(home / "pseudonymized" / "t1"))

    # a re-delivery of one feed-year (its latest files again, as delivery 9: a new staged version) is staged
    landing = tmp_path / "landing"
    src = small_landing / FEED / str(YEAR)
    latest = max(p for p in src.iterdir() if (p / "_MANIFEST.json").exists())
    shutil.copytree(latest, landing / FEED / str(YEAR) / "d009")
    manifest = landing / FEED / str(YEAR) / "d009" / "_MANIFEST.json"
    manifest.write_text(json.dumps({**json.loads(manifest.read_text()), "delivery": 9}), encoding="utf-8")
    ingested = ingest(dataclasses.replace(local_cfg, home=home), str(landing), run_id="redelivery", data_docs=False)
    assert [(r.feed, r.year, r.status) for r in ingested] == [(FEED, YEAR, "staged")]

    again = _pseudonymize(home, REPO / "conf", "t3")
    assert FEED in again["feeds"] and FEED not in again["reused"]
    assert again["reused"] == {f: "t2" for f in again["feeds"] if f != FEED}  # the newest equal build
    assert (home / "pseudonymized" / "t3" / FEED / REUSE_KEY).read_text() != (
        home / "pseudonymized" / "t1" / FEED / REUSE_KEY
    ).read_text()

    # the same staging pseudonymized from scratch (reuse off) gives the same rows in every feed
    conf = tmp_path / "conf"
    shutil.copytree(REPO / "conf", conf)
    pipeline = yaml.safe_load((conf / "pipeline.yaml").read_text(encoding="utf-8"))
    pipeline["defaults"]["builds"]["reuse"] = False
    (conf / "pipeline.yaml").write_text(yaml.safe_dump(pipeline), encoding="utf-8")
    full = _pseudonymize(home, conf, "t4")
    assert full["reused"] == {} and full["feeds"] == again["feeds"]
    for feed in full["feeds"]:
        assert _rows(home / "pseudonymized" / "t3" / feed) == _rows(home / "pseudonymized" / "t4" / feed), feed
    redelivered = _table(home / "pseudonymized" / "t3" / FEED).filter(pc.field("_year") == YEAR)
    assert redelivered.num_rows > 0 and set(redelivered.column("_delivery").to_pylist()) == {9}
