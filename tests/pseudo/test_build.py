"""`kcure build` (pseudonymize, link, protect, check) end to end on the small synthetic population."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from tests.build_fixture import Build
from tests.conftest import REPO, TEST_LIBRARY_SECRET, TEST_LINKAGE_SECRET
from tests.logtext import event_log_words, event_logs, read_text, tokens

pytestmark = [pytest.mark.spark, pytest.mark.integration, pytest.mark.slow]
ARROW_TYPES = {"string": "string", "int": "int32", "long": "int64", "double": "double", "date": "date32[day]"}


def _table(build: Build, name: str):  # type: ignore[no-untyped-def]
    return pq.read_table(build.out / name)


def test_linkage_meets_precision_and_recall_targets(built: Build) -> None:
    q = json.loads((built.out / "_linkage_quality.json").read_text())
    assert q["no_truth"] == 0
    assert q["precision"] >= 0.9999, q["precision"]
    assert q["recall"] >= 0.995, q["recall"]
    assert "precision" in built.stdout and "recall" in built.stdout


def test_library_tables_have_exactly_the_contract_names_and_types(built: Build, cfg) -> None:  # type: ignore[no-untyped-def]
    for table, spec in cfg.library.tables.items():
        for zone in (built.out, built.protected):
            schema = pq.read_schema(next((zone / table).glob("*.parquet")))
            assert [f.name for f in schema] == [c.name for c in spec.columns], table
            assert [str(f.type) for f in schema] == [ARROW_TYPES[c.type] for c in spec.columns], table
    dictionary = json.loads((built.out / "_dictionary.json").read_text(encoding="utf-8"))
    assert len(dictionary) == sum(len(s.columns) for s in cfg.library.tables.values())
    assert all(d["meaning"] for d in dictionary)


def test_every_staged_row_is_in_the_library_or_counted(built: Build, staged_local) -> None:  # type: ignore[no-untyped-def]
    _, results = staged_local
    staged = {(r.feed, r.year): r.staged_rows for r in results if r.ok}
    report = json.loads((built.out / "_linkage_report.json").read_text())
    assert {(r["_feed"], r["_year"]) for r in report} == set(staged)
    statuses = ("linked_rrn", "linked_secondary", "linked_via_mid", "out_of_cohort", "unlinked")
    for r in report:
        assert r["staged"] == staged[(r["_feed"], r["_year"])]
        assert r["staged"] == sum(r[s] for s in statuses) + r["duplicates_dropped"] + r["conflicts_dropped"], r
        assert r["in_library"] == r["linked_rrn"] + r["linked_secondary"] + r["linked_via_mid"]
    from kcure.core.config import load_config

    for feed, table in load_config(REPO / "conf").library.by_feed.items():
        assert _table(built, table).num_rows == sum(r["in_library"] for r in report if r["_feed"] == feed), table


def test_duplicates_dropped_are_exactly_the_re_sent_lines(built: Build, staged_local, small_landing: Path, cfg) -> None:  # type: ignore[no-untyped-def]
    from tests.generator import delivered as dv

    _, results = staged_local
    report = {(r["_feed"], r["_year"]): r for r in json.loads((built.out / "_linkage_report.json").read_text())}
    total = 0
    for r in results:
        if not r.ok:
            continue
        lines = list(dv.lines(small_landing, cfg.feed(r.feed), r.year, r.delivery))
        bad = {"wrong_field_count", "undecodable_bytes"}
        resent = sum(
            1
            for ln in lines
            if "duplicate" in ln.faults and not ln.faults & bad and not any(f.startswith("date_") for f in ln.faults)
        )
        assert report[(r.feed, r.year)]["duplicates_dropped"] == resent, (r.feed, r.year)
        total += resent
    assert total > 100


def test_lineage_is_owner_only(built: Build) -> None:
    import stat

    for p in [built.out / "_lineage", *(built.out / "_lineage").rglob("*")]:
        assert stat.S_IMODE(p.stat().st_mode) & 0o077 == 0, p


def test_keys_join_inside_the_library(built: Build) -> None:
    persons = set(_table(built, "RGST").column("SN_KEY").to_pylist())
    assert None not in persons
    for t in ("BFC", "G1E", "T200", "DEATH", "COVID", "VCN"):
        assert set(_table(built, t).column("SN_KEY").to_pylist()) <= persons, t
    mids = set(_table(built, "T200").column("MID").to_pylist())
    for t in ("T300", "T400", "T530"):
        assert set(_table(built, t).column("MID").to_pylist()) <= mids, t
    assert all(len(m) == 20 for m in list(mids)[:100])


def test_no_one_outside_the_cohort_reaches_the_library(built: Build, small_landing: Path) -> None:
    persons = pq.read_table(small_landing / "_truth" / "persons.parquet").to_pandas().set_index("person_id")["cohort"]
    lineage = pq.read_table(built.out / "_lineage").to_pandas()
    lineage = lineage[lineage["SN_KEY"].notna() & ~lineage["_dup"] & ~lineage["_conflict_drop"]]
    truth = []
    for (feed, year, delivery), grp in lineage.groupby(["_feed", "_year", "_delivery"]):
        for part, g in grp.groupby("_file"):
            t = pq.read_table(
                small_landing / "_truth/rows" / feed / str(year) / f"d{delivery:03d}" / f"{part.split('.')[0]}.parquet"
            ).to_pandas()
            truth.append(t.set_index("line").loc[g["_line"], "person_id"])
    import pandas as pd

    pids = pd.concat(truth)
    assert len(pids) > 100_000
    assert persons.loc[pids.values].all()


def test_generalizations_are_applied(built: Build) -> None:
    rgst = _table(built, "RGST").to_pandas()
    assert rgst["FDX"].str.fullmatch(r"\d{6}").all()
    assert rgst["AGE"].str.fullmatch(r"\d\d-\d\d|85\+").all()
    assert (rgst["KCD"].str.len() <= 4).all()
    bfc = _table(built, "BFC").to_pandas()
    assert set(bfc["SIDO"]) <= {"Seoul", "Metropolitan", "Other"}
    t300 = _table(built, "T300").to_pandas()
    assert t300.loc[t300["DIV_TY_CD"] == "3", "DIV_CD"].isna().all()
    assert (t300.loc[t300["DIV_TY_CD"] == "8", "DIV_CD"].str.len() == 5).all()
    assert (t300["GNL_CD"].dropna().str.len() == 4).all()
    t200 = _table(built, "T200").to_pandas()
    f_codes = t200["M_SICK_CD"].dropna()
    assert (f_codes[f_codes.str.startswith("F")].str.len() == 3).all()
    assert (f_codes[~f_codes.str.startswith("F")].str.len() <= 4).all()
    assert _table(built, "T530").column("DIV_CD").null_count == _table(built, "T530").num_rows


def _sensitive(small_landing: Path) -> tuple[set[str], set[str], list[str]]:
    """Exact tokens (RRNs, phones, MIDs, provider ids, chart numbers), Korean text (names, addresses), secrets."""
    import gzip

    from kcure.core.secrets import Secret

    persons = pq.read_table(small_landing / "_truth" / "persons.parquet").to_pylist()
    cancers = pq.read_table(small_landing / "_truth" / "cancers.parquet").to_pylist()
    ids: set[str] = set()
    korean: set[str] = set()
    for p in persons:
        ids |= {p["rrn"], f"{p['rrn'][:6]}-{p['rrn'][6:]}", p["phone"]}
        korean |= {p["name"], p["addr"], p["addr2"]}
    for c in cancers:
        ids |= {c["ptno"], c["hcode"]}
    for f in (small_landing / "hira_t200").rglob("*.csv.gz"):
        for line in gzip.decompress(f.read_bytes()).split(b"\n")[1:]:
            if line:
                fields = line.split(b",")
                ids |= {fields[0].decode("ascii", "replace"), fields[3].decode("ascii", "replace")}
    secrets = [TEST_LINKAGE_SECRET, TEST_LIBRARY_SECRET]
    for value in (TEST_LINKAGE_SECRET, TEST_LIBRARY_SECRET):
        ipad, opad = Secret("x", value.encode()).pads()
        secrets += [ipad.hex(), opad.hex()]
    return ids - {""}, korean, secrets


def test_leak_scan_finds_no_identifier_or_secret_in_outputs_or_logs(built: Build, small_landing: Path) -> None:
    import re

    ids, korean, secrets = _sensitive(small_landing)
    assert len(ids) > 10_000
    roots = (built.out, built.pseudo, built.protected, built.home / "reports")
    files = [p for root in roots for p in root.rglob("*") if p.is_file()]
    files += [p for p in built.logs if p.is_file()]
    # event logs decompressed (their bytes would hide anything) and parsed, less Spark's own counters
    words = {f: event_log_words(f) for f in event_logs(files)}
    assert words and all("SparkListenerApplicationStart" in w for w in words.values())
    hangul_re = re.compile(r"[가-힣][가-힣0-9 ,동호-]*")

    def hits_in(f: Path) -> set[str]:
        if f.suffix == ".parquet":
            t = pq.read_table(f)
            found: set[str] = set()
            for col in t.columns:
                if str(col.type) == "string":
                    found |= set(col.drop_null().to_pylist())
            text = "\n".join(found)
        else:
            text = words[f] if f in words else read_text(f)
            found = tokens(text)
        runs = set(hangul_re.findall(text))
        return (found & ids) | {k for k in korean if any(k in r for r in runs)} | {s for s in secrets if s in text}

    leaks = [(str(f), sorted(h)[:3]) for f in files if (h := hits_in(f))]
    assert leaks == []
    # the scanner does see identifiers where they are: in the restricted staging zone
    staged = next((built.home / "staging" / "hira_t200" / "2015").glob("v-*/*.parquet"))
    assert len(hits_in(staged)) > 1000


def test_a_small_build_starts_its_jvm_with_c1_only(built: Build) -> None:
    """conf/pipeline.yaml's quick_start_below_mb: the build's staged input is far below it, so the
    application the build ran (its event log says with which settings) compiled with C1 alone."""
    import json

    (log,) = event_logs(built.logs)  # the build's one application
    env = next(json.loads(x) for x in read_text(log).splitlines() if '"SparkListenerEnvironmentUpdate"' in x)
    assert "-XX:TieredStopAtLevel=1" in env["Spark Properties"]["spark.driver.extraJavaOptions"].split()


def test_build_refuses_to_run_without_secrets(staged_local) -> None:  # type: ignore[no-untyped-def]
    local_cfg, _ = staged_local
    env = {k: v for k, v in os.environ.items() if not k.startswith("KCURE_") or k == "KCURE_CONF"}
    env["KCURE_HOME"] = str(local_cfg.home)
    env["KCURE_LIBRARY_SECRET"] = TEST_LIBRARY_SECRET
    env["KCURE_LINKAGE_SECRET"] = "too-short"
    proc = subprocess.run(
        [sys.executable, "-m", "kcure.cli", "build", "--build", "nope"],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert "at least 32 bytes" in proc.stderr and "too-short" not in proc.stderr
    assert not (local_cfg.home / "pseudonymized" / "nope").exists()
    assert TEST_LINKAGE_SECRET not in proc.stderr


def test_footer_schemas_equal_what_spark_infers_in_every_zone(built: Build, staged_local, spark) -> None:  # type: ignore[no-untyped-def]
    """The stages read Parquet with a schema taken from one footer (no inference job): it must be the
    schema Spark itself would infer, or the outputs would change."""
    from kcure.core.spark import parquet_schema

    local_cfg, _ = staged_local
    roots = [p.parent for p in sorted((local_cfg.home / "staging").glob("*/*/v-*/*.parquet"))[:5]]
    roots += [p for p in sorted(built.pseudo.iterdir()) if p.is_dir()]
    roots += [p for p in sorted(built.out.iterdir()) if p.is_dir() and not p.name.startswith("_")]
    roots += [p for p in sorted((built.out / "_lineage").iterdir())]
    roots += [p for p in sorted(built.protected.iterdir()) if p.is_dir()]
    assert len(roots) > 30
    partitioned = 0
    for root in roots:
        mine = parquet_schema(root)
        assert mine == spark.read.parquet(str(root)).schema, root
        partitioned += "_year" in mine.fieldNames() and root.parent == built.pseudo
    assert partitioned >= 8  # the pseudonymized feeds' _year folders were seen as a partition column
