"""The protect and check stages, and the publish refusal, run through the stage model on copies of
build t1: a failed gate stops the real publish, and nothing becomes visible."""

from __future__ import annotations

import dataclasses
import json

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from kcure import pipeline
from kcure.core import catalog
from kcure.core.recoding import person_qis
from kcure.core.zones import PRIVACY, read_json
from tests.build_fixture import Build, copy_build

pytestmark = [pytest.mark.spark, pytest.mark.integration, pytest.mark.slow]
QIS = ("SEX", "AGE", "SIDO", "DBYEAR", "TCODE3")


def _rewrite(table_dir, fn) -> None:  # type: ignore[no-untyped-def]
    f = sorted(table_dir.glob("*.parquet"))[0]
    t = fn(pq.read_table(f))
    f.unlink()  # protected files may be hard links to link's: replace the name, never write through it
    pq.write_table(t, f)
    (f.parent / f".{f.name}.crc").unlink(missing_ok=True)  # Hadoop's checksum of the file we replaced


def _min_class(spark, rgst, bfc, qis) -> int:  # type: ignore[no-untyped-def]
    people = person_qis(spark.read.parquet(str(rgst)), spark.read.parquet(str(bfc)), "SIDO" in qis).toPandas()
    return int(people.fillna("*").astype(str).groupby(list(qis)).size().min())


def _visible(c, tag: str) -> tuple[list[str], list[str]]:  # type: ignore[no-untyped-def]
    """The published tags, and the library tables holding a snapshot tagged ``tag``."""
    cat = catalog.open_catalog(c)
    tagged = [
        t
        for t in c.library.tables
        if cat.table_exists(f"library.{t}") and cat.load_table(f"library.{t}").snapshot_by_name(tag) is not None
    ]
    return [r.tag for r in catalog.list_releases(cat)], tagged


def test_the_checked_build_passes_every_gate_after_k_anonymity(spark, built: Build) -> None:  # type: ignore[no-untyped-def]
    check = read_json(built.home / "reports" / "builds" / "t1" / "check.json")
    assert check["success"], check["failures"]
    assert len(check["checks"]) > 20
    assert (built.home / "reports" / "releases" / "t1" / "data_docs" / "index.html").exists()
    privacy = read_json(built.protected / PRIVACY)
    assert privacy["min_class_after"] >= 5 > privacy["min_class_before"]
    assert privacy["costs"][0]["step"] == "site_to_block:TCODE3"
    assert privacy["quasi_identifiers"] == list(QIS)
    # the recoding reached the protected tables: every first-diagnosis class now has at least k people
    assert _min_class(spark, built.protected / "RGST", built.protected / "BFC", QIS) >= 5
    # and only there: link's tables keep link's values (protect writes its own zone, never link's)
    assert _min_class(spark, built.out / "RGST", built.out / "BFC", QIS) == privacy["min_class_before"]
    modes = {p.stat().st_mode & 0o077 for p in [built.protected, *built.protected.rglob("*")]}
    assert modes == {0}, "protected/<build> must be owner-only"


@pytest.mark.parametrize(
    ("case", "table", "check"),
    [
        ("duplicated_key", "T200", "expect_column_values_to_be_unique(MID)"),
        ("orphan_mid", "T300", "every MID is in T200"),
        ("rrn_shaped", "RGST", "expect_column_values_to_not_match_regex(TX)"),
        ("extra_column", "DEATH", "expect_table_columns_to_match_set"),  # a column the catalog never promised
    ],
)
def test_a_failed_gate_stops_the_real_publish_and_nothing_becomes_visible(
    spark, built: Build, cfg, case: str, table: str, check: str
) -> None:  # type: ignore[no-untyped-def]
    c = dataclasses.replace(cfg, home=built.home)
    build = f"bad-{case}"
    copy_build(built.home, "t1", built.home, build)
    out = built.home / "protected" / build
    if case == "duplicated_key":
        _rewrite(out / "T200", lambda t: pa.concat_tables([t, t.slice(0, 1)]))
    elif case == "orphan_mid":
        _rewrite(
            out / "T300",
            lambda t: t.set_column(0, "MID", pc.if_else(pc.equal(pa.array(range(t.num_rows)), 0), "0" * 20, t["MID"])),
        )
    elif case == "extra_column":  # in a second file: one footer would not show it
        first = sorted((out / "DEATH").glob("*.parquet"))[0]
        rows = pq.read_table(first)
        _rewrite(out / "DEATH", lambda t: t.slice(1))
        pq.write_table(
            rows.slice(0, 1).append_column("PHONE", pa.array(["010-1234-5678"])), first.parent / "part-99999.parquet"
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
    before = _visible(c, build)
    plan = pipeline.plan(c, build, build, start="check")
    summary = pipeline.run_stage(c, plan, "check", spark=spark)  # the real check stage
    assert summary["success"] is False
    assert any(f.startswith(f"{table}: {check} failed") for f in summary["failures"]), summary["failures"]
    with pytest.raises(pipeline.StageFailed) as exc:
        pipeline.run_stage(c, plan, "publish")  # the real publish: the one place a release is refused
    msg = str(exc.value)
    assert f"release {build} was NOT published" in msg and f"{table}: {check} failed" in msg
    assert "800101-1234560" not in msg and "010-1234-5678" not in msg
    if case in ("duplicated_key", "orphan_mid"):
        assert "for example" in msg  # failing rows shown by pseudonymous key
    assert _visible(c, build) == before and before[1] == []
    assert not (built.home / "reports" / "builds" / build / "publish.json").exists()


def test_a_class_smaller_than_k_fails_when_dropping_is_not_allowed(spark, built: Build, cfg) -> None:  # type: ignore[no-untyped-def]
    raw = {**cfg.raw, "privacy.yaml": {**cfg.raw["privacy.yaml"], "drop_last_resort": False, "recoding": []}}
    strict = dataclasses.replace(cfg, home=built.home, raw=raw)
    copy_build(built.home, "t1", built.home, "strict", zones=("linked",))
    plan = pipeline.plan(strict, "strict", "strict", start="protect")
    assert pipeline.run_stage(strict, plan, "protect", spark=spark)["success"] is False
    assert not (built.home / "protected" / "strict" / "RGST").exists()  # no table is written: nothing to publish
    summary = pipeline.run_stage(strict, plan, "check", spark=spark)
    assert next(c["check"] for c in summary["checks"] if not c["success"]) == "k-anonymity (k=5)"
    with pytest.raises(pipeline.StageFailed) as exc:
        pipeline.run_stage(strict, plan, "publish")
    msg = str(exc.value)
    assert "*: k-anonymity (k=5) failed" in msg and "classes smaller than k=5" in msg
    assert _visible(strict, "strict")[1] == []


def test_the_quasi_identifier_list_in_conf_drives_the_enforced_classes(spark, built: Build, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Residence left out of k_anonymity.quasi_identifiers: it is neither measured nor recoded."""
    import shutil

    import yaml

    from kcure.core.config import load_config
    from tests.conftest import REPO

    conf = tmp_path / "conf"
    shutil.copytree(REPO / "conf", conf)
    privacy = yaml.safe_load((conf / "privacy.yaml").read_text(encoding="utf-8"))
    privacy["k_anonymity"]["quasi_identifiers"] = ["SEX", "AGE", "DBYEAR", "TCODE3"]
    privacy["recoding"] = [s for s in privacy["recoding"] if s["column"] != "SIDO"]
    del privacy["k_anonymity"]["reveals"]["SIDO"]
    (conf / "privacy.yaml").write_text(yaml.safe_dump(privacy), encoding="utf-8")
    four = dataclasses.replace(load_config(conf), home=built.home)
    copy_build(built.home, "t1", built.home, "qi4", zones=("linked",))
    summary = pipeline.run_stage(
        four, pipeline.plan(four, "qi4", start="protect", stop="protect"), "protect", spark=spark
    )
    got, five = summary["privacy"], read_json(built.protected / PRIVACY)
    assert got["success"] and got["quasi_identifiers"] == ["SEX", "AGE", "DBYEAR", "TCODE3"]
    assert got["class_size_distribution"] != five["class_size_distribution"]
    assert "suppress:SIDO" in [c["step"] for c in five["costs"]]  # with residence a QI, t1 needed it
    assert "suppress:SIDO" not in [c["step"] for c in got["costs"]]
    qi4 = built.home / "protected" / "qi4"
    assert _min_class(spark, qi4 / "RGST", qi4 / "BFC", ("SEX", "AGE", "DBYEAR", "TCODE3")) >= 5
    sido = set(pq.read_table(qi4 / "BFC").column("SIDO").to_pylist())
    assert "*" not in sido and "*" in set(pq.read_table(built.protected / "BFC").column("SIDO").to_pylist())
    assert json.loads(json.dumps(got)) == read_json(qi4 / PRIVACY)
