"""Release gates fail on purpose-made bad input, and then nothing is published."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from kcure import release as rel
from kcure.jobs import gates
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


def test_gates_pass_on_the_real_build(spark, built: Build, cfg) -> None:  # type: ignore[no-untyped-def]
    home_cfg = dataclasses.replace(cfg, home=built.home)
    report = gates.run(spark, home_cfg, "t1")
    assert report.success, [c.message() for c in report.failures]
    assert len(report.checks) > 20
    assert (built.home / "reports" / "releases" / "t1" / "data_docs" / "index.html").exists()


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
    before = [r.tag for r in rel.list_releases(rel.catalog(home_cfg))]
    with pytest.raises(gates.GateFailed) as exc:
        gates.publish_if_clean(spark, home_cfg, build, f"bad-{case}")
    msg = str(exc.value)
    assert "nothing was published" in msg
    assert f"{table}: {check} failed" in msg
    assert "800101-1234560" not in msg
    if case != "rrn_shaped":
        assert "for example" in msg  # failing rows shown by pseudonymous key
    assert [r.tag for r in rel.list_releases(rel.catalog(home_cfg))] == before
