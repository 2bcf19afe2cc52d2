"""Incremental builds: a build links an earlier build's pseudonymized and linked feeds when nothing
they depend on changed, protect and check redo only the tables whose inputs changed, and the digests
that decide it see any changed row. A re-delivery end to end, with its release compared row for row
with a full build's, is proved over the benchmark's run (``tests/bench/test_bench_smoke.py``)."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pyarrow.dataset as ds
import pytest

from kcure.core.reuse import REUSE_KEY
from kcure.core.zones import LINKAGE_REPORT, link_or_copy_tree
from tests.build_fixture import Build, same_files
from tests.conftest import REPO, TEST_LIBRARY_SECRET, TEST_LINKAGE_SECRET, WHOLE_BUILDS_TIMEOUT

pytestmark = [pytest.mark.spark, pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(WHOLE_BUILDS_TIMEOUT)]

# a parent feed: the feeds that follow its rows (T300, T400, T530) are reused only through its persons' digest
FEED = "hira_t200"
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


def _flat_rows(folder: Path) -> list[str]:
    """A linked table's or lineage folder's rows (no partitions), in a stable order."""
    return sorted(map(repr, ds.dataset(str(folder), format="parquet").to_table().to_pylist()))


def test_a_build_over_unchanged_inputs_links_every_feed_of_the_last_and_writes_nothing(  # type: ignore[no-untyped-def]
    built: Build, tmp_path: Path
) -> None:
    """What a re-delivery changes is rebuilt, and the rest reused: that, with the release equal to a full
    build's, is proved over the benchmark's whole run (``tests/bench/test_bench_smoke.py``)."""
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
    assert set(VIA) <= set(same["link"]["reused"])
    assert same["link"]["report"] == json.loads((home / "linked" / "t1" / LINKAGE_REPORT).read_text())
    for feed in feeds:
        assert same_files(home / "pseudonymized" / "t1" / feed, home / "pseudonymized" / "t2" / feed), feed
        lineage = Path("_lineage") / feed
        assert same_files(home / "linked" / "t1" / lineage, home / "linked" / "t2" / lineage), feed
    for table in same["link"]["tables"]:
        assert same_files(home / "linked" / "t1" / table, home / "linked" / "t2" / table), table


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
        assert same_files(zone / "p1" / table, zone / "p2" / table), table
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
