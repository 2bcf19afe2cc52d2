"""Ingesting the generated landing zone from a local folder, checked against the generator's truth."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from kcure.core.staging import Staging
from tests.generator import delivered as dv

pytestmark = [pytest.mark.integration, pytest.mark.slow]

#: where each injected fault class must end up
QUARANTINED = {"wrong_field_count", "undecodable_bytes", "date_wrong_format", "date_impossible"}
REASONS = {
    "wrong_field_count": ("wrong field count", "wrong line length"),
    "undecodable_bytes": ("undecodable byte",),
    "date_wrong_format": ("not a date in format",),
    "date_impossible": ("impossible date",),
}


def _staging(local_cfg) -> Staging:  # type: ignore[no-untyped-def]
    return Staging(local_cfg.local_path("staging"), local_cfg.local_path("quarantine"))


def _quarantine(local_cfg, feed: str, year: int) -> list[dict]:  # type: ignore[no-untyped-def,type-arg]
    st = _staging(local_cfg)
    cur = st.current(feed, year)
    assert cur is not None
    return pq.read_table(local_cfg.local_path("quarantine") / feed / str(year) / f"{cur.version}.parquet").to_pylist()


def test_every_feed_year_is_staged_except_the_one_with_a_wrong_checksum(staged_local, cfg) -> None:  # type: ignore[no-untyped-def]
    _, results = staged_local
    expected = {(f.name, y) for f in cfg.feeds.values() for y in f.year_range}
    assert {(r.feed, r.year) for r in results} == expected
    failed = [r for r in results if not r.ok]
    assert [(r.feed, r.year, r.status) for r in failed] == [("hira_t400", 2014, "failed")]
    msg = failed[0].message  # names the file, the expected and the actual value
    assert "hira_t400/2014/d001/part-00000.csv.gz: sha256 mismatch: manifest says " in msg
    assert ", file has " in msg
    assert all(r.status == "staged" for r in results if r.ok)


def test_failed_feed_year_stages_nothing(staged_local) -> None:  # type: ignore[no-untyped-def]
    local_cfg, _ = staged_local
    part = local_cfg.local_path("staging") / "hira_t400" / "2014"
    assert not (part / "CURRENT").exists()
    assert not any(part.glob("v-*")) and not any(part.glob(".tmp-*"))


def test_rows_are_accounted_for_in_every_feed_year(staged_local, small_landing: Path) -> None:  # type: ignore[no-untyped-def]
    local_cfg, results = staged_local
    st = _staging(local_cfg)
    for r in results:
        if not r.ok:
            continue
        manifest_rows = dv.manifest(small_landing, r.feed, r.year, r.delivery).rows
        table = st.read(r.feed, r.year)
        quarantined = {(q["file"], q["line"]) for q in _quarantine(local_cfg, r.feed, r.year)}
        assert r.delivered_rows == manifest_rows
        assert table is not None and table.num_rows == r.staged_rows
        assert r.delivered_rows == r.staged_rows + r.quarantined_rows == table.num_rows + len(quarantined)
        staged_lines = set(zip(table.column("_file").to_pylist(), table.column("_line").to_pylist(), strict=True))
        assert not staged_lines & quarantined
    log = [
        json.loads(x)
        for x in (local_cfg.local_path("reports") / "ingest" / "ingest_log.jsonl").read_text().splitlines()
    ]
    assert {(x["feed"], x["year"]) for x in log} == {(r.feed, r.year) for r in results}
    assert all(x["files"] and all(len(f["sha256"]) == 64 for f in x["files"]) for x in log)


def test_each_fault_class_ends_in_the_right_place_with_the_right_reason(staged_local, small_landing: Path, cfg) -> None:  # type: ignore[no-untyped-def]
    local_cfg, results = staged_local
    st = _staging(local_cfg)
    seen: set[str] = set()
    for r in results:
        if not r.ok:
            continue
        feed = cfg.feed(r.feed)
        table = st.read(r.feed, r.year)
        assert table is not None
        staged = {
            (f, ln): i
            for i, (f, ln) in enumerate(
                zip(table.column("_file").to_pylist(), table.column("_line").to_pylist(), strict=True)
            )
        }
        quarantine = {(q["file"], q["line"]): q for q in _quarantine(local_cfg, r.feed, r.year)}
        rows = table.to_pylist()
        for ln in dv.lines(small_landing, feed, r.year, r.delivery):
            key = (ln.file, ln.line)
            kinds = {f.split(":")[0] for f in ln.faults}
            seen |= kinds
            bad = kinds & QUARANTINED
            if bad:
                assert key in quarantine, (r.label, key, kinds)
                reason = quarantine[key]["reason"]
                assert any(reason.startswith(p) for k in bad for p in REASONS[k]), (r.label, key, kinds, reason)
                continue
            assert key in staged, (r.label, key, kinds)
            row = rows[staged[key]]
            if "rrn_blank" in kinds:
                assert row["RRN"] is None
            if "code_formatting" in kinds:
                for c in feed.columns:
                    if c.type == "code" and row[c.name] is not None:
                        assert row[c.name] == row[c.name].strip().upper().replace(".", "")
        for q in quarantine.values():  # nothing is quarantined without an injected reason
            assert q["column"] and q["reason"]
    assert {"duplicate", "rrn_check_digit", "code_formatting"} <= seen
    assert seen >= QUARANTINED


def test_fixed_width_death_records_keep_korean_names(staged_local, small_landing: Path) -> None:  # type: ignore[no-untyped-def]
    local_cfg, _ = staged_local
    persons = {r["person_id"]: r for r in pq.read_table(small_landing / "_truth" / "persons.parquet").to_pylist()}
    st = _staging(local_cfg)
    checked = 0
    for year in range(2012, 2023):
        table = st.read("kostat_death", year)
        assert table is not None
        truth = {
            (t["line"]): t
            for t in pq.read_table(
                small_landing / "_truth/rows/kostat_death" / str(year) / "d001/part-00000.parquet"
            ).to_pylist()
        }
        for row in table.to_pylist():
            person = persons[truth[row["_line"]]["person_id"]]
            assert row["NAME"] == person["name"]
            assert row["BRTH"] == person["birth"]
            checked += 1
    assert checked > 50


def test_redelivery_d002_is_the_staged_version(staged_local, small_landing: Path) -> None:  # type: ignore[no-untyped-def]
    local_cfg, results = staged_local
    r = next(r for r in results if (r.feed, r.year) == ("hira_t200", 2016))
    assert r.delivery == 2
    table = _staging(local_cfg).read("hira_t200", 2016)
    assert table is not None and set(table.column("_delivery").to_pylist()) == {2}


def test_staging_is_owner_only(staged_local) -> None:  # type: ignore[no-untyped-def]
    local_cfg, _ = staged_local
    for root in (local_cfg.local_path("staging"), local_cfg.local_path("quarantine")):
        assert stat.S_IMODE(root.stat().st_mode) == 0o700
        for p in root.rglob("*"):
            if p.is_file():
                assert stat.S_IMODE(p.stat().st_mode) & 0o077 == 0, p


def test_rerun_over_unchanged_deliveries_does_no_work(staged_local, small_landing: Path) -> None:  # type: ignore[no-untyped-def]
    from kcure.stages.ingest.ingestor import ingest

    local_cfg, first = staged_local
    failed_part = local_cfg.local_path("staging") / "hira_t400" / "2014"  # re-attempted, so touched

    def snapshot() -> dict[Path, int]:
        return {p: p.stat().st_mtime_ns for p in local_cfg.local_path("staging").rglob("*") if p != failed_part}

    before = snapshot()
    again = ingest(local_cfg, str(small_landing), feeds=["hira_t200", "kostat_death", "hira_t400"], data_docs=False)
    by_key = {(r.feed, r.year): r for r in first}
    for r in again:
        if (r.feed, r.year) == ("hira_t400", 2014):
            assert r.status == "failed"
            continue
        assert r.status == "unchanged", r.label
        assert r.staged_rows == by_key[(r.feed, r.year)].staged_rows
        assert r.seconds < 0.5
    assert snapshot() == before


def test_validation_results_and_data_docs_are_written(staged_local) -> None:  # type: ignore[no-untyped-def]
    local_cfg, results = staged_local
    r = next(r for r in results if r.feed == "hira_t200" and r.status == "staged")
    docs = Path(r.gate["data_docs"])
    assert docs.exists() and docs.is_relative_to(local_cfg.local_path("reports"))
    html = "".join(p.read_text(encoding="utf-8", errors="replace") for p in docs.parent.rglob("*.html"))
    assert "expect_column_values_to_be_in_set" in html or "values must belong to this set" in html
    assert r.gate["success"] and not r.gate["critical_failures"]
    outcomes = r.gate["outcomes"]
    assert any(o["expectation"] == "expect_column_values_to_match_regex" and o["column"] == "RRN" for o in outcomes)
