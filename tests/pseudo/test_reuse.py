"""Incremental builds: a build links an earlier build's pseudonymized and linked feeds when nothing
they depend on changed, makes again only what a re-delivery changed, and the result is the same as
building everything again."""

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

from kcure.core.reuse import REUSE_KEY
from kcure.core.zones import LINKAGE_REPORT, link_or_copy_tree
from tests.build_fixture import Build
from tests.conftest import REPO, TEST_LIBRARY_SECRET, TEST_LINKAGE_SECRET, WHOLE_BUILDS_TIMEOUT

pytestmark = [pytest.mark.spark, pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(WHOLE_BUILDS_TIMEOUT)]

# a parent feed: the feeds that follow its rows (T300, T400, T530) are reused only through its persons' digest
FEED, YEAR = "hira_t200", 2016
VIA = ("hira_t300", "hira_t400", "hira_t530")


def _build(home: Path, conf: Path, build: str) -> dict:  # type: ignore[type-arg]
    """``kcure build --to link``: the pseudonymize and link stages' summaries."""
    env = {
        **os.environ,
        "KCURE_HOME": str(home),
        "KCURE_CONF": str(conf),
        "KCURE_LINKAGE_SECRET": TEST_LINKAGE_SECRET,
        "KCURE_LIBRARY_SECRET": TEST_LIBRARY_SECRET,
    }
    cmd = [sys.executable, "-m", "kcure.cli", "build", "--build", build, "--to", "link"]
    proc = subprocess.run(cmd, env=env, cwd=REPO, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summaries = home / "reports" / "builds" / build
    return {stage: json.loads((summaries / f"{stage}.json").read_text()) for stage in ("pseudonymize", "link")}


def _table(feed_dir: Path) -> pa.Table:
    """A pseudonymized feed with its ``_year`` partitions (pyarrow skips ``_``-prefixed folders unless told)."""
    files = sorted(str(f) for f in feed_dir.glob("_year=*/*.parquet"))
    table = ds.dataset(files, format="parquet", partitioning="hive", partition_base_dir=str(feed_dir)).to_table()
    assert table.num_rows > 0 and "_year" in table.column_names, feed_dir
    return table


def _rows(feed_dir: Path) -> list[str]:
    return sorted(map(repr, _table(feed_dir).to_pylist()))


def _flat_rows(folder: Path) -> list[str]:
    """A linked table's or lineage folder's rows (no partitions), in a stable order."""
    return sorted(map(repr, ds.dataset(str(folder), format="parquet").to_table().to_pylist()))


def test_a_re_delivery_rebuilds_only_what_it_changed_and_equals_a_full_rebuild(  # type: ignore[no-untyped-def]
    built: Build, staged_local, small_landing: Path, tmp_path: Path
) -> None:
    from kcure.stages.ingest.ingestor import ingest

    local_cfg, _ = staged_local
    home = tmp_path / "home"
    shutil.copytree(built.home / "staging", home / "staging")
    shutil.copytree(built.pseudo, home / "pseudonymized" / "t1")  # the earlier build, with its reuse keys
    shutil.copytree(built.out, home / "linked" / "t1", symlinks=True)
    assert (home / "pseudonymized" / "t1" / FEED / REUSE_KEY).is_file()
    assert (home / "linked" / "t1" / "_lineage" / FEED / REUSE_KEY).is_file()

    # nothing changed: every feed is linked from t1, in both stages, no byte written again
    same = _build(home, REPO / "conf", "t2")
    feeds = same["pseudonymize"]["feeds"]
    assert len(feeds) >= 8 and same["pseudonymize"]["reused"] == dict.fromkeys(feeds, "t1")
    assert same["link"]["reused"] == dict.fromkeys(feeds, "t1")
    assert same["link"]["report"] == json.loads((home / "linked" / "t1" / LINKAGE_REPORT).read_text())
    for zone, rel in (("pseudonymized", "hira_t300"), ("linked", "T300")):
        t1_file = next((home / zone / "t1" / rel).rglob("*.parquet"))
        assert os.path.samefile(t1_file, home / zone / "t2" / t1_file.relative_to(home / zone / "t1"))

    # a re-delivery of one feed-year (its latest files again, as delivery 9: a new staged version) is staged
    landing = tmp_path / "landing"
    src = small_landing / FEED / str(YEAR)
    latest = max(p for p in src.iterdir() if (p / "_MANIFEST.json").exists())
    shutil.copytree(latest, landing / FEED / str(YEAR) / "d009")
    manifest = landing / FEED / str(YEAR) / "d009" / "_MANIFEST.json"
    manifest.write_text(json.dumps({**json.loads(manifest.read_text()), "delivery": 9}), encoding="utf-8")
    ingested = ingest(dataclasses.replace(local_cfg, home=home), str(landing), run_id="redelivery", data_docs=False)
    assert [(r.feed, r.year, r.status) for r in ingested] == [(FEED, YEAR, "staged")]

    # only the re-delivered feed is made again; the feeds that follow its rows are reused, as their
    # parents' persons are the same (the same records, delivered again)
    again = _build(home, REPO / "conf", "t3")
    assert FEED in again["pseudonymize"]["feeds"] and FEED not in again["pseudonymize"]["reused"]
    assert again["pseudonymize"]["reused"] == {f: "t2" for f in feeds if f != FEED}  # the newest equal build
    assert again["link"]["reused"] == {f: "t2" for f in feeds if f != FEED}
    assert set(VIA) <= set(again["link"]["reused"])
    assert (home / "pseudonymized" / "t3" / FEED / REUSE_KEY).read_text() != (
        home / "pseudonymized" / "t1" / FEED / REUSE_KEY
    ).read_text()

    # the same staging built from scratch (reuse off) gives the same rows in every feed, table,
    # lineage folder and report row
    conf = tmp_path / "conf"
    shutil.copytree(REPO / "conf", conf)
    pipeline = yaml.safe_load((conf / "pipeline.yaml").read_text(encoding="utf-8"))
    pipeline["defaults"]["builds"]["reuse"] = False
    (conf / "pipeline.yaml").write_text(yaml.safe_dump(pipeline), encoding="utf-8")
    full = _build(home, conf, "t4")
    assert full["pseudonymize"]["reused"] == {} and full["link"]["reused"] == {}
    assert full["pseudonymize"]["feeds"] == feeds
    for feed in feeds:
        assert _rows(home / "pseudonymized" / "t3" / feed) == _rows(home / "pseudonymized" / "t4" / feed), feed
        lineage = Path("_lineage") / feed
        assert _flat_rows(home / "linked" / "t3" / lineage) == _flat_rows(home / "linked" / "t4" / lineage), feed
    for table in full["link"]["tables"]:
        assert _flat_rows(home / "linked" / "t3" / table) == _flat_rows(home / "linked" / "t4" / table), table
    assert again["link"]["report"] == full["link"]["report"]
    assert again["link"]["tables"] == full["link"]["tables"]
    redelivered = _table(home / "pseudonymized" / "t3" / FEED).filter(pc.field("_year") == YEAR)
    assert redelivered.num_rows > 0 and set(redelivered.column("_delivery").to_pylist()) == {9}


def test_relation_digest_ignores_row_order_and_sees_any_changed_row(spark) -> None:  # type: ignore[no-untyped-def]
    from kcure.core.reuse import relation_digest

    rows = [("sk1", "lk1"), ("sk2", "lk1"), ("sk3", None), ("sk4", "lk2")]

    def digest(data: list[tuple[str | None, str | None]]) -> str:
        return relation_digest(spark.createDataFrame(data, "SK string, LK string"))  # type: ignore[attr-defined]

    base = digest(rows)
    assert digest(list(reversed(rows))) == base
    assert digest([*rows[:3], ("sk4", "lk3")]) != base  # one value changed
    assert digest([*rows, rows[0]]) != base  # a row twice
    assert digest(rows[:3]) != base  # a row gone
    assert digest([("lk1", "sk1"), *rows[1:]]) != base  # values swapped between columns
    assert digest([("sk3", "lk1"), ("sk2", "lk1"), ("sk1", None), ("sk4", "lk2")]) != base  # a pairing changed


def test_protect_rewrites_only_the_tables_whose_rows_or_decisions_changed(  # type: ignore[no-untyped-def]
    built: Build, spark, cfg, tmp_path: Path
) -> None:
    from kcure.core.zones import PRIVACY
    from kcure.stages.protect import recode

    c = dataclasses.replace(cfg, home=tmp_path)
    zone = tmp_path / "protected"
    first = recode.run(spark, c, built.out, zone / "p1")
    written = sorted(first["rows_dropped"])  # the tables protect rewrites (the others are link's files)
    assert first["reused"] == {} and {"RGST", "T200", "T300"} <= set(written)
    for table in written:
        assert (zone / "p1" / table / REUSE_KEY).is_file(), table

    # nothing changed: every rewritten table is linked from p1, no byte written again, the same privacy result
    second = recode.run(spark, c, built.out, zone / "p2")
    assert second["reused"] == dict.fromkeys(written, "p1")
    for table in written:
        one = next((zone / "p1" / table).glob("*.parquet"))
        assert os.path.samefile(one, zone / "p2" / table / one.name), table
    assert (zone / "p2" / PRIVACY).read_text() == (zone / "p1" / PRIVACY).read_text()

    # link made T300 from other input (its lineage key differs): only T300 is written again, with equal rows
    src = tmp_path / "linked" / "t9"
    link_or_copy_tree(built.out, src)  # link's files, the same inodes
    key_file = src / "_lineage" / "hira_t300" / REUSE_KEY
    doc = json.loads(key_file.read_text())
    key_file.unlink()  # a hard link: never write through it into the fixture's build
    key_file.write_text(json.dumps({**doc, "key": "0" * 64}), encoding="utf-8")
    third = recode.run(spark, c, src, zone / "p3")
    assert third["reused"] == {t: "p2" for t in written if t != "T300"}  # the newest equal build
    assert _flat_rows(zone / "p3" / "T300") == _flat_rows(zone / "p1" / "T300")
    t300 = [next((zone / p / "T300").glob("*.parquet")) for p in ("p1", "p3")]
    assert not os.path.samefile(*t300)


def test_check_runs_again_only_the_suites_of_tables_whose_files_changed(  # type: ignore[no-untyped-def]
    built: Build, spark, cfg, tmp_path: Path
) -> None:
    from kcure.stages import check

    for zone in ("staging", "quarantine"):  # accounting compares with what the fixture staged
        (tmp_path / zone).symlink_to(built.home / zone)
    c = dataclasses.replace(cfg, home=tmp_path)
    summaries = tmp_path / "reports" / "builds"
    first = check.run(spark, c, built.out, built.protected, tmp_path / "docs1", summaries / "b1")
    assert first.success, [x.message() for x in first.failures]
    assert first.suites and not any("passed_in" in s for s in first.suites.values())
    (summaries / "b1").mkdir(parents=True)
    (summaries / "b1" / "check.json").write_text(json.dumps(first.to_dict()), encoding="utf-8")

    # b2: every table the same files as b1's, except T300 (rewritten with the same rows)
    protected = tmp_path / "protected" / "b2"
    link_or_copy_tree(built.protected, protected)
    for f in (protected / "T300").glob("*.parquet"):
        data = f.read_bytes()
        f.unlink()
        f.write_bytes(data)
    second = check.run(spark, c, built.out, protected, tmp_path / "docs2", summaries / "b2")
    reused = {t for t, s in second.suites.items() if s.get("passed_in") == "b1"}
    assert reused == set(first.suites) - {"T300"} and "passed_in" not in second.suites["T300"]
    assert [x.__dict__ for x in second.checks] == [x.__dict__ for x in first.checks]  # the same gate result

    # a failed suite is never taken from an earlier build
    doc = first.to_dict()
    doc["suites"] = {t: {**s, "success": False} for t, s in doc["suites"].items()}
    (summaries / "b1" / "check.json").write_text(json.dumps(doc), encoding="utf-8")
    assert check.SuiteReuse.load(c, summaries / "b3", {}).passed == {}
