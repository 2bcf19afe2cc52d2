"""`kcure query` as an attacker uses it: every way out of the release is refused with one line naming the
rule, never a traceback and never a value; what is allowed still works."""

from __future__ import annotations

import pytest

from tests.conftest import TEST_LIBRARY_SECRET, TEST_LINKAGE_SECRET
from tests.security.attacks import ATTACKS
from tests.security.conftest import Secured

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _refused(s: Secured, sql: str, *extra: str) -> str:
    proc = s.kcure("query", sql, *extra, check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0, f"{sql!r} ran: {out[:500]}"
    assert "Traceback" not in out and len(proc.stderr.strip().splitlines()) == 1, out[:2000]
    return proc.stderr.strip()


@pytest.mark.parametrize(("attack", "rule"), ATTACKS)
def test_every_way_out_of_the_release_is_refused(secured: Secured, attack: str, rule: str) -> None:
    sql = attack.format(home=secured.home, secrets=secured.secrets)
    message = _refused(secured, sql)
    assert rule in message, message
    assert not (secured.home / "out.csv").exists() and not (secured.home / "x.db").exists()
    assert not (secured.home / "dump").exists()


def test_a_failing_query_never_prints_a_value(secured: Secured) -> None:
    keys = secured.kcure("query", "select SN_KEY from RGST limit 3").stdout
    message = _refused(secured, "select cast(SN_KEY as integer) from RGST")
    assert "ConversionException" in message and "not shown" in message
    assert not any(k in message for k in keys.split() if len(k) == 64)


def test_no_secret_is_left_in_the_environment_of_a_query(secured: Secured) -> None:
    env = {**secured.env, "KCURE_LINKAGE_SECRET": TEST_LINKAGE_SECRET}
    proc = secured.kcure("query", "select * from duckdb_settings() where value like '%secret%'", env=env, check=False)
    out = proc.stdout + proc.stderr
    assert TEST_LINKAGE_SECRET not in out and TEST_LIBRARY_SECRET not in out
    import os

    from kcure.access.sandbox import scrub_environment

    os.environ["KCURE_TEST_SECRET"] = "x" * 40
    os.environ["AWS_SECRET_ACCESS_KEY"] = "y" * 40
    scrub_environment()
    assert "KCURE_TEST_SECRET" not in os.environ and "AWS_SECRET_ACCESS_KEY" not in os.environ


def test_bad_arguments_get_one_clean_line(secured: Secured) -> None:
    for args, words in [
        (["select 1", "--max-rows", "-1"], "is not a whole number of at least 1"),
        (["select 1", "--max-rows", "many"], "is not a whole number of at least 1"),
        (["select 1", "--out", "/nonexistent/x.csv"], "cannot write /nonexistent/x.csv"),
        (["select 1", "--out", f"{secured.base}/x.json"], "must name a .csv or .parquet file"),
        (["select 1", "--release", "no-such-release"], "no release 'no-such-release'"),
        (["select 1", "--release", "x" * 100_000], "must be 1-64 letters"),
    ]:
        proc = secured.kcure("query", *args, check=False)
        assert proc.returncode != 0 and words in proc.stderr, (args[:2], proc.stderr[:300])
        assert "Traceback" not in proc.stderr and len(proc.stderr) < 1000


def test_what_is_allowed_still_works_and_is_capped(secured: Secured) -> None:
    ok = secured.kcure("query", "with p as (select SN_KEY from RGST) select count(*) n from p join BFC using (SN_KEY)")
    assert ok.returncode == 0 and "│" in ok.stdout
    out = secured.base / "t200.parquet"
    cut = secured.kcure("query", "select MID, SN_KEY from T200", "--out", str(out))
    assert "wrote 50 rows" in cut.stdout and "cut at 50 rows" in cut.stdout  # query.max_result_rows: 50 here
    import pyarrow.parquet as pq

    assert pq.read_table(out).num_rows == 50
    # a view has the table's own columns, not the release=<tag> folder its files sit in
    from kcure.core.config import load_config

    whole = secured.base / "rgst.parquet"
    secured.kcure("query", "select * from RGST", "--out", str(whole))
    assert pq.read_schema(whole).names == load_config(secured.conf).library.table("RGST").column_names
