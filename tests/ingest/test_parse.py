"""Parsing single files: every delivered line is staged or quarantined with file, line, column and reason."""

from __future__ import annotations

import pytest

from kcure.stages.ingest.parse import FormatError, parse

pytestmark = pytest.mark.unit

T400_HEADER = "MID,SICK_SNO,SICK_CD,SICK_TY_CD,DGSBJT_CD\n"


def test_wrong_field_count_and_empty_lines_are_quarantined_with_their_line_numbers(cfg) -> None:  # type: ignore[no-untyped-def]
    text = T400_HEADER + "M1,1,C16.9,1,01\nM1,2,I10,2\n\nM2,1, c169 ,1,01,XX\nM3,1,J00,1,01\n"
    p = parse(text.encode("cp949"), cfg.feed("hira_t400"), 1, "part-00000.csv.gz")
    assert p.delivered_rows == 5
    assert p.table.column("_line").to_pylist() == [2, 6]
    assert p.table.column("SICK_CD").to_pylist() == ["C169", "J00"]
    assert sorted(p.quarantine) == [
        (3, "(line)", "wrong field count: 4 of 5"),
        (4, "(line)", "empty line"),
        (5, "(line)", "wrong field count: 6 of 5"),
    ]


def test_codes_are_trimmed_upper_cased_and_undotted(cfg) -> None:  # type: ignore[no-untyped-def]
    text = T400_HEADER + "M1,1,C16.9,1,01\nM1,2, c169 ,2,01\nM1,3,f32.9,3,01\n"
    p = parse(text.encode("cp949"), cfg.feed("hira_t400"), 1, "f")
    assert p.table.column("SICK_CD").to_pylist() == ["C169", "C169", "F329"]
    assert p.table.column("SICK_SNO").to_pylist() == [1, 2, 3]


def test_undecodable_cp949_byte_quarantines_its_line_and_names_the_column(cfg) -> None:  # type: ignore[no-untyped-def]
    feed = cfg.feed("hira_t200")
    good = "M1,8001011234560,김민준,11100001,01,021,C169,,01,20150302,20150303,20150302,2,2,10000,N,V193,1\n"
    head = ",".join(feed.column_names) + "\n"
    data = (
        head.encode("cp949")
        + good.encode("cp949")
        + b"M2,\xff8001011234560"
        + good[16:].encode("cp949")
        + good.encode("cp949")
    )
    p = parse(data, feed, 2, "part-00001.csv.gz")
    assert p.table.column("_line").to_pylist() == [2, 4]
    assert p.table.column("NAME").to_pylist() == ["김민준", "김민준"]
    assert p.quarantine == [(3, "RRN", "undecodable byte in cp949")]
    assert set(p.table.column("_delivery").to_pylist()) == {2}


def test_dates_become_date_and_bad_dates_are_quarantined_by_kind(cfg) -> None:  # type: ignore[no-untyped-def]
    feed = cfg.feed("hira_t200")
    head = ",".join(feed.column_names) + "\n"
    row = "M{i},8001011234560,김민준,11100001,01,031,J00,,01,{d},{d},,1,1,10000,N,,1\n"
    body = "".join(row.format(i=i, d=d) for i, d in enumerate(["20150302", "2015-03-02", "20150230", "2015030"]))
    p = parse((head + body).encode("cp949"), feed, 1, "f")
    assert [d.isoformat() for d in p.table.column("RECU_FR_DD").to_pylist()] == ["2015-03-02"]
    got = {(ln, col, reason) for ln, col, reason in p.quarantine}
    assert (3, "RECU_FR_DD", "not a date in format %Y%m%d") in got
    assert (4, "RECU_FR_DD", "impossible date") in got
    assert (5, "RECU_FR_DD", "not a date in format %Y%m%d") in got
    assert {ln for ln, _, _ in p.quarantine} == {3, 4, 5}
    assert p.table.column("FST_IPAT_DD").to_pylist() == [None]  # blank is NULL, not an error


def test_unknown_header_is_rejected_loudly(cfg) -> None:  # type: ignore[no-untyped-def]
    text = "MID,SICK_SNO,SICK_CD,SICK_TY_CD,NEW_COL\nM1,1,C169,1,01\n"
    with pytest.raises(FormatError, match=r"line 1: .*1 field\(s\) not in the contract.*missing: \['DGSBJT_CD'\]"):
        parse(text.encode("cp949"), cfg.feed("hira_t400"), 1, "part-00000.csv.gz")


def test_a_file_without_its_header_is_rejected_without_echoing_its_first_row(cfg) -> None:  # type: ignore[no-untyped-def]
    feed = cfg.feed("hira_t200")
    row = "M1,8001011234560,김민준,11100001,01,031,J00,,01,20150302,20150302,,1,1,10000,N,,1\n"
    with pytest.raises(FormatError) as exc:
        parse(row.encode("cp949"), feed, 1, "part-00000.csv.gz")
    message = str(exc.value)
    assert "header does not match" in message and "part-00000.csv.gz: line 1" in message
    for value in ("8001011234560", "김민준", "11100001", "M1"):
        assert value not in message


def test_fixed_width_cp949_rows_with_korean_names_parse_by_byte_offsets(cfg) -> None:  # type: ignore[no-untyped-def]
    feed = cfg.feed("kostat_death")

    def field(v: str, w: int) -> bytes:
        b = v.encode("cp949")
        return b + b" " * (w - len(b))

    values = [
        "8001011234560",
        "김민준",
        "1",
        "19800101",
        "20190301",
        "2",
        "서울특별시 종로구 중앙로 1, 101동 203호",
        "2",
        "5",
        "01",
        "C169",
        "",
        "20190305",
    ]
    line = b"".join(field(v, int(c.width)) for v, c in zip(values, feed.columns, strict=True))
    short = line[:-3]
    data = line + b"\n" + short + b"\n" + line.replace("김".encode("cp949"), b"\xff\xfe", 1) + b"\n"
    p = parse(data, feed, 1, "part-00000.txt")
    rows = p.table.to_pylist()
    assert len(rows) == 1
    assert rows[0]["NAME"] == "김민준"
    assert rows[0]["ADDR"] == "서울특별시 종로구 중앙로 1, 101동 203호"
    assert rows[0]["DTH_DATE"].isoformat() == "2019-03-01"
    assert rows[0]["SAIN2"] is None
    width = sum(int(c.width) for c in feed.columns)
    assert p.quarantine == [
        (2, "(line)", f"wrong line length: {width - 3} bytes, layout has {width}"),
        (3, "NAME", "undecodable byte in cp949"),
    ]


def test_bom_is_not_part_of_the_first_column(cfg) -> None:  # type: ignore[no-untyped-def]
    feed = cfg.feed("kdca_vaccination")
    text = "\ufeffRRN,NAME,PHONE,VCNYMD,VCNCD,VCNTME\n800101-1234560,김민준,010-1234-5678,2021-06-01,PF,1\n"
    p = parse(text.encode("utf-8"), feed, 1, "part-00000.csv")
    assert p.table.column("RRN").to_pylist() == ["8001011234560"]
    assert p.table.column("VCNTME").to_pylist() == [1]
