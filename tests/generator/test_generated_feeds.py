"""The generated landing zone honours the data contract (docs/contract.md §2-3) and its own truth."""

from __future__ import annotations

import hashlib
import re
from collections import Counter
from datetime import datetime
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from kcure.core import rrn
from tests.generator import delivered as dv

pytestmark = pytest.mark.slow

CODE_RE = re.compile(r"^[A-Z][0-9][0-9A-Z]{1,4}$")
BROKEN = {"wrong_field_count", "undecodable_bytes"}


def _norm_code(v: str) -> str:
    return v.strip().upper().replace(".", "")


def _value_ok(col, value: str, rrn_format: str | None) -> bool:  # type: ignore[no-untyped-def]
    if value == "":
        return not col.required
    if col.values is not None and value not in col.values:
        return False
    if col.type == "date":
        try:
            datetime.strptime(value, col.format)
        except ValueError:
            return False
        return True
    if col.type == "int":
        return re.fullmatch(r"-?\d+", value) is not None
    if col.type == "float":
        return re.fullmatch(r"-?\d+(\.\d+)?", value) is not None
    if col.type == "code":
        return CODE_RE.match(value) is not None
    if col.type == "rrn":
        pattern = r"\d{6}-\d{7}" if rrn_format == "hyphen" else r"\d{13}"
        return re.fullmatch(pattern, value) is not None
    return True


def test_every_feed_year_has_a_complete_delivery_whose_manifest_matches_conf(small_landing: Path, cfg) -> None:  # type: ignore[no-untyped-def]
    for feed in cfg.feeds.values():
        years = sorted(int(p.name) for p in (small_landing / feed.name).iterdir())
        assert years == list(feed.year_range), feed.name
        for year in years:
            m = dv.manifest(small_landing, feed.name, year)
            assert (m.feed, m.year, m.delivery) == (feed.name, year, 1)
            assert (m.format, m.encoding, m.delimiter, m.header) == (
                feed.format,
                feed.encoding,
                feed.delimiter,
                feed.header,
            )
            assert m.institution == feed.institution
            on_disk = {p.name for p in (small_landing / feed.name / str(year) / "d001").iterdir()}
            assert on_disk == {f.name for f in m.files} | {"_MANIFEST.json"}
            assert all(f.name.endswith(feed.file_suffix) for f in m.files)


def test_manifest_counts_and_checksums_match_files_except_the_one_corrupted_on_request(
    small_landing: Path, cfg
) -> None:  # type: ignore[no-untyped-def]
    mismatched = []
    for feed in cfg.feeds.values():
        for year in feed.year_range:
            for d in (1, 2):
                if not (small_landing / feed.name / str(year) / f"d{d:03d}").exists():
                    continue
                m = dv.manifest(small_landing, feed.name, year, d)
                for f in m.files:
                    path = small_landing / feed.name / str(year) / f"d{d:03d}" / f.name
                    if hashlib.sha256(path.read_bytes()).hexdigest() != f.sha256:
                        mismatched.append((feed.name, year, d, "sha256"))
                    data = dv.raw_bytes(path)
                    rows = data.count(b"\n") - (1 if feed.header else 0)
                    if rows != f.rows:
                        mismatched.append((feed.name, year, d, "rows"))
    assert mismatched == [("hira_t400", 2014, 1, "sha256")]


def test_large_feed_years_are_split_into_parts_and_line_numbers_restart(small_landing: Path, cfg) -> None:  # type: ignore[no-untyped-def]
    from tests.conftest import SMALL_PART_ROWS

    m = dv.manifest(small_landing, "hira_t300", 2016)
    assert len(m.files) >= 2
    assert all(f.rows <= SMALL_PART_ROWS for f in m.files)
    first_lines = {ln.file: ln.line for ln in dv.lines(small_landing, cfg.feed("hira_t300"), 2016) if ln.line == 2}
    assert set(first_lines) == {f.name for f in m.files}


def test_columns_and_types_match_conf_outside_injected_faults(small_landing: Path, cfg) -> None:  # type: ignore[no-untyped-def]
    for feed in cfg.feeds.values():
        for year in feed.year_range:
            for ln in dv.lines(small_landing, feed, year):
                if ln.faults & BROKEN:
                    continue
                assert ln.values is not None, (feed.name, ln.file, ln.line)
                for col in feed.columns:
                    value = ln.values[col.name]
                    if col.type == "code":
                        value = _norm_code(value)
                    tagged = any(t.endswith(f":{col.name}") for t in ln.faults) or (
                        col.type == "rrn" and ln.faults & {"rrn_blank", "rrn_check_digit"}
                    )
                    if not tagged:
                        assert _value_ok(col, value, feed.rrn_format), (feed.name, ln.file, ln.line, col.name, value)


def test_rrns_are_valid_except_injected_typos_at_their_rate(small_landing: Path, cfg) -> None:  # type: ignore[no-untyped-def]
    rate = cfg.generator["faults"]["rrn_check_digit"]
    with_rrn = typos = 0
    for feed in cfg.feeds.values():
        if "RRN" not in feed.column_names:
            continue
        for year in feed.year_range:
            for ln in dv.lines(small_landing, feed, year):
                if ln.values is None or ln.values["RRN"] == "":
                    continue
                with_rrn += 1
                valid = rrn.is_valid(ln.values["RRN"])
                assert valid != ("rrn_check_digit" in ln.faults), (feed.name, ln.file, ln.line)
                typos += not valid
    expected = rate * with_rrn
    assert abs(typos - expected) < 5 * (expected**0.5) + 1, (typos, expected, with_rrn)


def test_fixed_width_byte_offsets_hold_for_korean_names(small_landing: Path, cfg) -> None:  # type: ignore[no-untyped-def]
    persons = {r["person_id"]: r for r in pq.read_table(small_landing / "_truth" / "persons.parquet").to_pylist()}
    feed = cfg.feed("kostat_death")
    korean = 0
    for year in feed.year_range:
        for ln in dv.lines(small_landing, feed, year):
            if ln.faults & BROKEN:
                continue
            assert ln.values is not None
            truth = persons[ln.person_id]
            assert ln.values["NAME"] == truth["name"]
            assert ln.values["ADDR"] in (truth["addr"], truth["addr2"])
            assert ln.values["BRTH"] == truth["birth"].strftime("%Y%m%d")
            if re.search("[가-힣]", truth["name"]):
                korean += 1
                assert len(truth["name"].encode("cp949")) == 2 * len(truth["name"])
    assert korean > 50


def test_cp949_and_bom_feeds_decode_except_injected_bad_bytes(small_landing: Path, cfg) -> None:  # type: ignore[no-untyped-def]
    for name in ("hira_t200", "nhis_eligibility", "kdca_covid_case", "kccr_registry"):
        feed = cfg.feed(name)
        bad = 0
        for year in feed.year_range:
            for ln in dv.lines(small_landing, feed, year):
                enc = "utf-8" if feed.encoding == "utf-8-sig" else feed.encoding
                try:
                    ln.raw.decode(enc)
                    assert "undecodable_bytes" not in ln.faults
                except UnicodeDecodeError:
                    assert "undecodable_bytes" in ln.faults
                    bad += 1
        if name == "hira_t200":
            assert bad > 0


def test_truth_names_the_person_of_every_row(small_landing: Path, cfg) -> None:  # type: ignore[no-untyped-def]
    persons = {r["person_id"]: r for r in pq.read_table(small_landing / "_truth" / "persons.parquet").to_pylist()}
    mid_person: dict[str, int] = {}
    for feed in cfg.feeds.values():
        if feed.person_via:
            continue
        for year in feed.year_range:
            for ln in dv.lines(small_landing, feed, year):
                assert ln.person_id in persons
                if feed.name == "hira_t200":  # MID is the first field, intact even on broken lines
                    mid_person[ln.raw.split(b",")[0].decode("ascii")] = ln.person_id
                if ln.values is None:
                    continue
                p = persons[ln.person_id]
                if "NAME" in ln.values:
                    assert ln.values["NAME"] == p["name"], (feed.name, ln.line)
                if "RRN" in ln.values and not ln.faults & {"rrn_blank", "rrn_check_digit"}:
                    assert ln.values["RRN"].replace("-", "") == p["rrn"]
    for name in ("hira_t300", "hira_t400", "hira_t530"):
        for year in cfg.feed(name).year_range:
            for ln in dv.lines(small_landing, cfg.feed(name), year):
                if ln.values is not None and not ln.faults & BROKEN:
                    assert mid_person[ln.values["MID"]] == ln.person_id, (name, ln.file, ln.line)


def test_non_cohort_people_reach_population_feeds_and_some_claims(small_landing: Path, cfg) -> None:  # type: ignore[no-untyped-def]
    cohort = {
        r["person_id"]: r["cohort"] for r in pq.read_table(small_landing / "_truth" / "persons.parquet").to_pylist()
    }

    def share_non_cohort(name: str) -> float:
        feed = cfg.feed(name)
        pids = [ln.person_id for y in feed.year_range for ln in dv.lines(small_landing, feed, y)]
        return sum(not cohort[p] for p in pids) / len(pids)

    assert share_non_cohort("kccr_registry") == 0
    assert share_non_cohort("kostat_death") > 0.2
    assert share_non_cohort("kdca_vaccination") > 0.5
    assert 0 < share_non_cohort("hira_t200") < 0.5
    assert 0 < share_non_cohort("nhis_eligibility") < 0.6


def test_every_fault_class_of_the_contract_is_injected(small_landing: Path) -> None:
    injected = dv.summary(small_landing)["injected_faults"]
    for fault in (
        "rrn_check_digit",
        "rrn_blank",
        "duplicate",
        "wrong_field_count",
        "undecodable_bytes",
        "date_wrong_format",
        "date_impossible",
        "code_formatting",
        "superseded_in_d002",
    ):
        assert injected.get(fault, 0) > 0, fault  # type: ignore[union-attr]


def test_duplicates_are_exact_copies_of_the_line_before(small_landing: Path, cfg) -> None:  # type: ignore[no-untyped-def]
    seen = 0
    for year in cfg.feed("hira_t200").year_range:
        prev = None
        for ln in dv.lines(small_landing, cfg.feed("hira_t200"), year):
            if "duplicate" in ln.faults:
                assert prev is not None and ln.raw == prev.raw and ln.person_id == prev.person_id
                seen += 1
            prev = ln
    assert seen > 0


def test_redelivery_d002_corrects_exactly_the_superseded_rows(small_landing: Path, cfg) -> None:  # type: ignore[no-untyped-def]
    feed = cfg.feed("hira_t200")
    old = list(dv.lines(small_landing, feed, 2016, 1))
    new = list(dv.lines(small_landing, feed, 2016, 2))
    assert (
        dv.manifest(small_landing, "hira_t200", 2016, 2).delivered_at
        > dv.manifest(small_landing, "hira_t200", 2016, 1).delivered_at
    )
    assert len(old) == len(new)
    changed = 0
    for a, b in zip(old, new, strict=True):
        superseded = any(t.startswith("superseded_in_d002") for t in a.faults)
        assert superseded == any(t.startswith("corrected") for t in b.faults)
        if a.raw != b.raw:
            assert superseded
            assert a.values and b.values
            diff = {k for k in a.values if a.values[k] != b.values[k]}
            assert diff == {"RVD_RPE_TAMT_AMT"}
            changed += 1
    assert changed > 0


def test_claims_are_densest_in_the_year_after_diagnosis(small_landing: Path, cfg) -> None:  # type: ignore[no-untyped-def]
    cancers = pq.read_table(small_landing / "_truth" / "cancers.parquet").to_pylist()
    fdx = {}
    for c in cancers:
        fdx.setdefault(c["person_id"], c["fdx"])
    after = before = 0
    feed = cfg.feed("hira_t200")
    for year in feed.year_range:
        for ln in dv.lines(small_landing, feed, year):
            if ln.person_id not in fdx or ln.values is None or ln.faults:
                continue
            d = datetime.strptime(ln.values["RECU_FR_DD"], "%Y%m%d").date()
            delta = (d - fdx[ln.person_id]).days
            after += 0 <= delta < 365
            before += -730 <= delta < -365
    assert after > 2.5 * before


def test_same_seed_gives_same_bytes_and_another_seed_differs(tmp_path: Path, cfg) -> None:  # type: ignore[no-untyped-def]
    from kcure.generator.run import generate

    def digest(root: Path) -> dict[str, str]:
        return {
            str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*"))
            if p.is_file()
        }

    for name, seed in (("a", 11), ("b", 11), ("c", 12)):
        generate(cfg, tmp_path / name, 40, seed, part_rows=3_000)
    a, b, c = digest(tmp_path / "a"), digest(tmp_path / "b"), digest(tmp_path / "c")
    assert a == b
    assert len(a) > 100
    assert set(a) == set(c)
    differing = [k for k in a if a[k] != c[k]]
    assert len(differing) > len(a) // 2


def test_refuses_to_overwrite_a_non_empty_folder(tmp_path: Path, cfg) -> None:  # type: ignore[no-untyped-def]
    from kcure.generator.run import GenerateError, generate

    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "keep.txt").write_text("mine")
    with pytest.raises(GenerateError, match="not empty"):
        generate(cfg, tmp_path / "x", 5, 1)
    assert (tmp_path / "x" / "keep.txt").read_text() == "mine"


def test_cli_lists_what_it_wrote(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from kcure.cli import main

    assert main(["generate", "--patients", "20", "--seed", "3", "--out", str(tmp_path / "l")]) == 0
    out = capsys.readouterr().out
    for name in ("kccr_registry", "hira_t530", "kostat_death", "kdca_vaccination", "ground truth"):
        assert name in out
    rows = Counter()
    for line in out.splitlines():
        parts = line.split()
        if parts and parts[0] == "kccr_registry":
            rows["kccr"] = int(parts[-2].replace(",", ""))
    assert rows["kccr"] >= 20
