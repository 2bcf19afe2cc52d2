"""Releases: Iceberg tables registered from the protect stage's files, immutable, all or nothing, queryable."""

from __future__ import annotations

import dataclasses

import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from kcure.access import query as access
from kcure.core import catalog
from kcure.stages import publish as publishing
from tests.build_fixture import Build, copy_build

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture(scope="module")
def published(built: Build, cfg, tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """Release 2024.1 from build t1, then build t2 (t1 without women's cancers) as 2024.2 via a crash, a re-run."""
    home_cfg = dataclasses.replace(cfg, home=built.home)
    first = publishing.publish(home_cfg, "t1", "2024.1", publishing.manifest_for(home_cfg, "t1"))
    copy_build(built.home, "t1", built.home, "t2", zones=("protected",))
    for f in (built.home / "protected" / "t2" / "RGST").glob("*.parquet"):
        t = pq.read_table(f)
        pq.write_table(t.filter(pc.not_equal(t["SEX"], "2")), f)
    with pytest.raises(catalog.ReleaseError, match="injected crash after 3"):
        publishing.publish(home_cfg, "t2", "2024.2", publishing.manifest_for(home_cfg, "t2"), _crash_after=3)
    cat = catalog.open_catalog(home_cfg)
    after_crash = catalog.resolve(cat, "latest")
    second = publishing.publish(home_cfg, "t2", "2024.2", publishing.manifest_for(home_cfg, "t2"))
    return home_cfg, first, after_crash, second


def test_release_reads_back_through_pyiceberg_with_the_manifest_counts(published, built: Build) -> None:  # type: ignore[no-untyped-def]
    home_cfg, first, _, _ = published
    cat = catalog.open_catalog(home_cfg)
    for name, n in first.manifest["row_counts"].items():
        t = access.read_table(cat, first, name)
        assert t.num_rows == n == pq.read_table(built.protected / name).num_rows, name
    assert [f.name for f in access.read_table(cat, first, "RGST").schema][:3] == ["SN_KEY", "DBYEAR", "SEX"]


def test_query_uses_catalog_names_and_matches_the_manifest(published) -> None:  # type: ignore[no-untyped-def]
    home_cfg, first, _, _ = published
    got = access.query(home_cfg, "select count(*) from T300 join T200 using (MID)", "2024.1").fetchall()[0]
    assert got[0] == first.manifest["row_counts"]["T300"]
    n = access.query(home_cfg, "select count(*) from RGST", "2024.1").fetchall()[0][0]
    assert n == first.manifest["row_counts"]["RGST"]


def test_a_crash_between_tables_leaves_the_previous_release_current(published) -> None:  # type: ignore[no-untyped-def]
    _, first, after_crash, _ = published
    assert after_crash.tag == "2024.1" and after_crash.snapshots == first.snapshots


def test_two_releases_stay_independently_queryable(published) -> None:  # type: ignore[no-untyped-def]
    home_cfg, first, _, second = published
    q = "select count(*) from RGST where SEX = '2'"
    assert access.query(home_cfg, q, "2024.1").fetchall()[0][0] > 0
    assert access.query(home_cfg, q, "2024.2").fetchall()[0][0] == 0
    assert access.query(home_cfg, q).fetchall()[0][0] == 0  # latest
    assert second.manifest["row_counts"]["RGST"] < first.manifest["row_counts"]["RGST"]
    assert second.manifest["row_counts"]["T200"] == first.manifest["row_counts"]["T200"]
    cat = catalog.open_catalog(home_cfg)
    assert [r.tag for r in catalog.list_releases(cat)] == ["2024.1", "2024.2"]


def test_publishing_again_changes_nothing(published) -> None:  # type: ignore[no-untyped-def]
    home_cfg, _, _, second = published
    cat = catalog.open_catalog(home_cfg)
    before = {n: cat.load_table(f"library.{n}").metadata_location for n in second.snapshots}
    again = publishing.publish(home_cfg, "t2", "2024.2", publishing.manifest_for(home_cfg, "t2"))
    assert again.snapshots == second.snapshots
    assert {n: cat.load_table(f"library.{n}").metadata_location for n in second.snapshots} == before
    assert len(catalog.list_releases(cat)) == 2
    with pytest.raises(catalog.ReleaseError, match="releases never change"):
        publishing.publish(home_cfg, "t1", "2024.2", {})


def test_manifest_records_code_config_inputs_and_linkage(published) -> None:  # type: ignore[no-untyped-def]
    _, first, _, _ = published
    m = first.manifest
    assert len(m["code_version"]) in (40, 7) or m["code_version"] == "unknown"
    assert len(m["config_digest"]) == 64
    assert m["inputs"] and all(len(f["sha256"]) == 64 for i in m["inputs"] for f in i["files"])
    assert m["linkage_report"] and m["linkage_quality"]["precision"] >= 0.9999
    assert {d["table"] for d in m["data_dictionary"]} == set(m["row_counts"])
