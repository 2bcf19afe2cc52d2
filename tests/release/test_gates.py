"""Release gates fail on purpose-made bad input, and then nothing is published."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from kcure.core import catalog
from kcure.stages import check as gates
from tests.build_fixture import Build

pytestmark = [pytest.mark.spark, pytest.mark.integration, pytest.mark.slow]


def _copy_build(built: Build, name: str) -> Path:
    dst = built.home / "linked" / name
    shutil.rmtree(dst, ignore_errors=True)
    shutil.copytree(built.out, dst)
    return dst


def _rewrite(table_dir: Path, fn) -> None:  # type: ignore[no-untyped-def]
    f = sorted(table_dir.glob("*.parquet"))[0]
    pq.write_table(fn(pq.read_table(f)), f)
    (f.parent / f".{f.name}.crc").unlink(missing_ok=True)  # Hadoop's checksum of the file we replaced


def test_gates_pass_on_the_real_build_after_k_anonymity(spark, built: Build, cfg) -> None:  # type: ignore[no-untyped-def]
    import json

    home_cfg = dataclasses.replace(cfg, home=built.home)
    out = _copy_build(built, "good")
    report = gates.run(spark, home_cfg, "good")
    assert report.success, [c.message() for c in report.failures]
    assert len(report.checks) > 20
    assert (built.home / "reports" / "releases" / "good" / "data_docs" / "index.html").exists()
    privacy = json.loads((out / "_privacy.json").read_text())
    assert privacy["min_class_after"] >= 5 > privacy["min_class_before"]
    assert privacy["costs"][0]["step"] == "site_to_block:TCODE3"
    # the recoding reached the released table: every first-diagnosis class now has at least k people
    from kcure.stages.protect.recode import QIS, person_qis

    people = person_qis(spark.read.parquet(str(out / "RGST")), spark.read.parquet(str(out / "BFC"))).toPandas()
    assert people.fillna("*").astype(str).groupby(QIS).size().min() >= 5
    assert len(people) == privacy["people"] - privacy["people_dropped"]


def test_running_the_gates_again_starts_from_the_link_output(spark, built: Build, cfg) -> None:  # type: ignore[no-untyped-def]
    """An Airflow retry reruns the gates task on the same build: k-anonymity must not apply twice."""
    import json

    home_cfg = dataclasses.replace(cfg, home=built.home)
    out = _copy_build(built, "rerun")
    assert gates.run(spark, home_cfg, "rerun").success
    first = json.loads((out / "_privacy.json").read_text())
    rows = {t: pq.read_table(out / t).num_rows for t in cfg.library["tables"]}
    rgst = pq.read_table(out / "RGST").sort_by("SN_KEY").to_pylist()
    assert first["min_class_before"] < 5 and first["costs"], "the fixture must need recoding for this test to mean much"

    kept = out / "_pre_privacy"
    assert (kept / "RGST").is_dir() and kept.stat().st_mode & 0o077 == 0  # link's version, owner-only

    # a retry, and a retry after a crash that left the replaced RGST half-swapped (gone from its place)
    for crash in (False, True):
        if crash:
            shutil.rmtree(out / "RGST")
        assert gates.run(spark, home_cfg, "rerun").success
        again = json.loads((out / "_privacy.json").read_text())
        assert again == first  # the same classes before, the same recoding and drops
        assert {t: pq.read_table(out / t).num_rows for t in cfg.library["tables"]} == rows
        assert pq.read_table(out / "RGST").sort_by("SN_KEY").to_pylist() == rgst


def test_a_class_smaller_than_k_fails_when_dropping_is_not_allowed(spark, built: Build, cfg) -> None:  # type: ignore[no-untyped-def]
    raw = {**cfg.raw, "privacy.yaml": {**cfg.raw["privacy.yaml"], "drop_last_resort": False, "recoding": []}}
    strict = dataclasses.replace(cfg, home=built.home, raw=raw)
    _copy_build(built, "strict")
    before = [r.tag for r in catalog.list_releases(catalog.open_catalog(strict))]
    with pytest.raises(gates.GateFailed) as exc:
        gates.publish_if_clean(spark, strict, "strict", "strict")
    msg = str(exc.value)
    assert "*: k-anonymity (k=5) failed" in msg and "classes smaller than k=5" in msg
    assert [r.tag for r in catalog.list_releases(catalog.open_catalog(strict))] == before


@pytest.mark.parametrize(
    ("case", "table", "check"),
    [
        ("duplicated_key", "T200", "expect_column_values_to_be_unique(MID)"),
        ("orphan_mid", "T300", "every MID is in T200"),
        ("rrn_shaped", "RGST", "expect_column_values_to_not_match_regex(TX)"),
    ],
)
def test_each_gate_fails_on_bad_input_and_nothing_is_published(
    spark, built: Build, cfg, case: str, table: str, check: str
) -> None:  # type: ignore[no-untyped-def]
    home_cfg = dataclasses.replace(cfg, home=built.home)
    build = f"bad-{case}"
    out = _copy_build(built, build)
    if case == "duplicated_key":
        _rewrite(out / "T200", lambda t: pa.concat_tables([t, t.slice(0, 1)]))
    elif case == "orphan_mid":
        _rewrite(
            out / "T300",
            lambda t: t.set_column(0, "MID", pc.if_else(pc.equal(pa.array(range(t.num_rows)), 0), "0" * 20, t["MID"])),
        )
    else:
        _rewrite(
            out / "RGST",
            lambda t: t.set_column(
                t.schema.get_field_index("TX"),
                "TX",
                pc.if_else(pc.equal(pa.array(range(t.num_rows)), 0), "800101-1234560", t["TX"]),
            ),
        )
    before = [r.tag for r in catalog.list_releases(catalog.open_catalog(home_cfg))]
    with pytest.raises(gates.GateFailed) as exc:
        gates.publish_if_clean(spark, home_cfg, build, f"bad-{case}")
    msg = str(exc.value)
    assert "nothing was published" in msg
    assert f"{table}: {check} failed" in msg
    assert "800101-1234560" not in msg
    if case != "rrn_shaped":
        assert "for example" in msg  # failing rows shown by pseudonymous key
    assert [r.tag for r in catalog.list_releases(catalog.open_catalog(home_cfg))] == before
