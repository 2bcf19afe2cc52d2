"""Provisioning research projects from a real release with Spark: each extract holds only what its
application names, under its own pseudonyms, and passes (or is refused by) its own privacy gate.

The checks here do not reuse the stage's code: they rebuild the project's pseudonyms and date shifts
from its key with Python's hmac, and recompute every attacker model with pandas."""

from __future__ import annotations

import hashlib
import hmac
import os
import re
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from tests.logtext import event_logs, read_text
from tests.projects.conftest import ProjectHome, application, approve, read_extract, reviewer

pytestmark = [pytest.mark.spark, pytest.mark.integration, pytest.mark.slow]

A = "kc20261130101"
A_TABLES = {
    "RGST": {"columns": ["SN_KEY", "DBYEAR", "SEX", "AGE", "FDX", "TCODE"]},
    "BFC": {"columns": ["SN_KEY", "STD_YYYY", "SIDO"]},
    "T200": {"columns": ["SN_KEY", "MID", "YID", "FOM_TP_CD", "RECU_FR_DD"], "years": [2015, 2018]},
    "T300": {"columns": ["MID", "LN_NO", "DIV_CD"], "years": [2015, 2018]},
    "T530": {"columns": ["MID", "PRSCP_GRANT_NO", "LN_NO"], "years": [2015, 2018]},
}
KEY_COLUMNS = ("SN_KEY", "MID", "YID", "PRSCP_GRANT_NO")


class Keys:
    """The project's pseudonyms and shifts, recomputed from its key with the standard library."""

    def __init__(self, raw: bytes, weeks: int) -> None:
        def sub(label: str) -> bytes:
            return hmac.new(raw, label.encode(), hashlib.sha256).digest()

        self.person, self.substitute, self.shift_key, self.weeks = sub("person"), sub("substitute"), sub("shift"), weeks

    def pid(self, sn_key: str) -> str:
        return hmac.new(self.person, f"SN|{sn_key}".encode(), hashlib.sha256).hexdigest()[:64]

    def sub(self, label: str, value: str) -> str:
        return hmac.new(self.substitute, f"{label}|{value}".encode(), hashlib.sha256).hexdigest()[:20]

    def shift(self, pid: str) -> int:
        v = int(hmac.new(self.shift_key, f"SHIFT|{pid}".encode(), hashlib.sha256).hexdigest()[:8], 16) % (
            2 * self.weeks
        )
        return 7 * (v - self.weeks if v < self.weeks else v - self.weeks + 1)


def _cancers(home: ProjectHome, keys: Keys) -> pd.DataFrame:
    """The release's registered cancers whose shifted diagnosis month (from its 15th) is inside 2012-2020,
    pulled in by W where that meets the first or last diagnosis the release holds; with ``pid``, ``mid``."""
    w = timedelta(days=7 * keys.weeks)
    library = _release(home, "RGST")
    mid = pd.to_datetime(library.FDX + "15", format="%Y%m%d")
    lo, hi = max(pd.Timestamp(2012, 1, 1), mid.min() + w), min(pd.Timestamp(2020, 12, 31), mid.max() - w)
    library = library.assign(pid=library.SN_KEY.map(keys.pid), mid=mid)
    moved = library.mid + pd.to_timedelta(library.pid.map(keys.shift), "D")
    return library[(moved >= lo) & (moved <= hi)]


def _keys(home: ProjectHome, project: str) -> Keys:
    from kcure.projects.provisioning import key_store

    key = key_store(home.cfg).load(project)
    assert key is not None
    return Keys(key.raw(), home.cfg.privacy.extracts.shift_weeks)


def _release(home: ProjectHome, table: str, tag: str = "p1") -> pd.DataFrame:
    from kcure.core.catalog import open_catalog, resolve
    from kcure.projects.provisioning import release_files

    _, files = release_files(home.cfg, tag)
    import pyarrow.parquet as pq

    assert resolve(open_catalog(home.cfg), tag)
    return pd.concat([pq.read_table(f).to_pandas() for f in files[table]], ignore_index=True)


def _provision(home: ProjectHome, project: str, spark: Any, cfg: Any = None) -> dict[str, Any]:
    from kcure.projects.lifecycle import Caller
    from kcure.projects.provisioning import provision

    return provision(cfg or home.cfg, home.store(), project, Caller.this_process(), spark=spark)


def _extract(home: ProjectHome, project: str) -> dict[str, pd.DataFrame]:
    return read_extract(home.cfg.home / "projects" / project / "workspace" / "extract")


@pytest.fixture(scope="module")
def project_a(project_home: ProjectHome, spark) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    approve(project_home, application(A, A_TABLES, date_precision="day"))
    return _provision(project_home, A, spark, cfg=project_home.relaxed)  # T200.RECU_FR_DD: admission models


def test_an_extract_holds_only_the_tables_columns_people_and_years_its_application_names(
    project_home: ProjectHome, project_a: dict[str, Any]
) -> None:
    ext, keys = _extract(project_home, A), _keys(project_home, A)
    assert set(ext) == set(A_TABLES)
    for name, spec in A_TABLES.items():
        order = [c for c in project_home.cfg.library.table(name).column_names if c in spec["columns"]]
        assert list(ext[name].columns) == order, name
        assert project_a["tables"][name]["rows"] == len(ext[name])

    # people: exactly the release's cohort (every cancer diagnosed 2012-2020, as shifted), less the people
    # the gate dropped
    cohort = set(_cancers(project_home, keys).pid)
    people = set(ext["RGST"].SN_KEY)
    assert people <= cohort and len(cohort) - len(people) == project_a["privacy"]["people_dropped"]
    assert set(ext["BFC"].SN_KEY) <= people and set(ext["T200"].SN_KEY) <= people

    # T200: rows are chosen by their shifted day (choosing by the true one would cut each person's claims
    # at the true edges and give the shift away): every such statement of those people, and the claim
    # lines of those statements only
    assert pd.to_datetime(ext["T200"].RECU_FR_DD).dt.year.between(2015, 2018).all()  # as released: shifted
    t200 = _release(project_home, "T200").assign(pid=lambda d: d.SN_KEY.map(keys.pid))
    moved = pd.to_datetime(t200.RECU_FR_DD) + pd.to_timedelta(t200.pid.map(keys.shift), "D")
    t200 = t200[t200.pid.isin(people) & moved.dt.year.between(2015, 2018)]
    assert sorted(t200.MID.map(lambda m: keys.sub("MID", m))) == sorted(ext["T200"].MID)
    t300 = _release(project_home, "T300")
    assert sorted(t300[t300.MID.isin(set(t200.MID))].MID.map(lambda m: keys.sub("MID", m))) == sorted(ext["T300"].MID)
    assert set(ext["T530"].MID) <= set(ext["T200"].MID) and len(ext["T530"]) > 0

    # every date of a person moved by the same whole number of weeks, never 0, within W
    shifts = {keys.shift(p) for p in people}
    assert all(s % 7 == 0 and s != 0 and abs(s) <= 182 for s in shifts) and len(shifts) > 10
    assert project_a["key_fingerprint"] and "key" not in {k.lower() for k in project_a}


def test_two_projects_share_no_key_value_and_neither_shares_one_with_the_library(
    project_home: ProjectHome, project_a: dict[str, Any], spark
) -> None:  # type: ignore[no-untyped-def]
    b = "kc20261130102"
    tables = {"RGST": {"columns": ["SN_KEY", "SEX"]}, "T200": {"columns": ["SN_KEY", "MID", "YID"]},
              "T530": {"columns": ["MID", "PRSCP_GRANT_NO"]}}  # fmt: skip
    approve(project_home, application(b, tables, cohort={"sites": ["C15-C26", "C50"], "years": [2014, 2020]}))
    _provision(project_home, b, spark)
    ea, eb = _extract(project_home, A), _extract(project_home, b)
    ka, kb = _keys(project_home, A), _keys(project_home, b)
    rgst = _release(project_home, "RGST")
    both = [s for s in set(rgst.SN_KEY) if ka.pid(s) in set(ea["RGST"].SN_KEY) and kb.pid(s) in set(eb["RGST"].SN_KEY)]
    assert len(both) > 20  # the cohorts overlap...
    sources = (("RGST", "SN_KEY"), ("T200", "MID"), ("T200", "YID"), ("T530", "PRSCP_GRANT_NO"))
    library = {c: set(_release(project_home, t)[c]) for t, c in sources}
    for column in KEY_COLUMNS:  # ...and no key value is shared by any two of A, B and the library
        va = set().union(*(set(t[column].dropna()) for t in ea.values() if column in t))
        vb = set().union(*(set(t[column].dropna()) for t in eb.values() if column in t))
        assert va and vb, column
        assert not va & vb and not va & library[column] and not vb & library[column], column


def test_the_report_says_how_linkable_two_extracts_are_through_claim_amounts_and_gaps(
    project_home: ProjectHome, project_a: dict[str, Any], spark
) -> None:  # type: ignore[no-untyped-def]
    e, f = "kc20261130108", "kc20261130109"
    tables = {"RGST": {"columns": ["SN_KEY", "SEX"]},
              "T200": {"columns": ["SN_KEY", "RECU_FR_DD", "RVD_RPE_TAMT_AMT"], "years": [2016, 2018]}}  # fmt: skip
    approve(project_home, application(e, tables, date_precision="day"))
    _provision(project_home, e, spark, cfg=project_home.relaxed)
    cohort = {"sites": ["C15-C26"], "years": [2012, 2020]}
    approve(project_home, application(f, tables, cohort=cohort, date_precision="day"))
    m = _provision(project_home, f, spark, cfg=project_home.relaxed)
    found = {x["project"]: x for x in m["linkability"]}
    assert found[A]["features"] == ["RECU_FR_DD"]  # A's extract has dates but no amounts: gaps alone
    ee, ef = _extract(project_home, e), _extract(project_home, f)
    ke, kf = _keys(project_home, e), _keys(project_home, f)
    rgst = _release(project_home, "RGST")
    in_both = {
        s for s in set(rgst.SN_KEY) if ke.pid(s) in set(ee["T200"].SN_KEY) and kf.pid(s) in set(ef["T200"].SN_KEY)
    }
    x = found[e]
    assert x["features"] == ["RECU_FR_DD", "RVD_RPE_TAMT_AMT"] and x["shared"] == len(in_both) > 20
    # different keys, different shifts, day against month precision: still, most shared people link
    assert 0.5 < x["linked"] / x["shared"] <= 1 and x["linked"] <= x["matched"]
    report = (project_home.store().folder(f) / "provisions" / "1" / "report.html").read_text()
    assert "Linkability to other extracts" in report and e in report


def test_a_cohort_chosen_by_histology_is_recoded_again_and_passes_with_its_cost_recorded(
    project_home: ProjectHome, spark
) -> None:  # type: ignore[no-untyped-def]
    h = "kc20261130103"
    tables = {"RGST": {"columns": ["SN_KEY", "DBYEAR", "SEX", "AGE", "TCODE", "MCODE"]},
              "BFC": {"columns": ["SN_KEY", "STD_YYYY", "SIDO"]}}  # fmt: skip
    cohort = {"sites": ["C00-C97"], "years": [2012, 2020], "histology": ["8140-8389"]}
    approve(project_home, application(h, tables, cohort=cohort, date_shift=False))
    m = _provision(project_home, h, spark)
    p = m["privacy"]
    assert p["passed"] and p["person_level"]["smallest_candidates"] >= 5
    assert p["cohort"]["matched"] < len(set(_release(project_home, "RGST").SN_KEY))
    assert sum(c["people"] for c in p["costs"]) > 0  # the library's classes broke in this sub-cohort
    ext = _extract(project_home, h)
    assert ext["RGST"].MCODE.str[:4].between("8140", "8389").groupby(ext["RGST"].SN_KEY).any().all()
    sizes = _classes(ext["RGST"], ext["BFC"], None).value_counts()
    assert sizes.min() >= 5, sizes.sort_values().head()


def _writes(spark: Any, description: str) -> list[str]:
    """The physical plans of this session's file writes described as ``description``, oldest first
    (from Spark's own status store, which keeps them whether or not the UI runs)."""
    runs = spark._jsparkSession.sharedState().statusStore().executionsList()
    found = [(e.executionId(), e.physicalPlanDescription()) for e in (runs.apply(i) for i in range(runs.size()))
             if e.description() == description]  # fmt: skip
    return [plan for _, plan in sorted(found) if "InsertIntoHadoopFsRelationCommand" in plan]


def _joins_on(plan: str, key: str) -> list[str]:
    """The join operators of a formatted physical plan whose left keys are ``key`` (``MID``: claim lines
    meeting their statements), by name: ``SortMergeJoin``, ``BroadcastHashJoin``..."""
    out = []
    for node in plan.split("\n\n"):
        head, _, body = node.partition("\n")
        name = re.fullmatch(r"\(\d+\) (\w*Join)( \[codegen id : \d+\])?", head.strip())
        if name and re.search(rf"^Left keys \[\d+\]: \[{key}#", body, re.M):
            out.append(name.group(1))
    return out


def test_claim_lines_meet_a_small_cohorts_statements_in_broadcast_joins_and_a_large_ones_in_shuffles_alike(
    project_home: ProjectHome, spark, monkeypatch: pytest.MonkeyPatch
) -> None:  # type: ignore[no-untyped-def]
    """Provisioning chooses how T300 meets its statements (T200) by how many statements the cohort has:
    below ``BROADCAST_PARENT_ROWS``, broadcast joins that never shuffle the claim lines; above it,
    shuffle joins. Spark's own size-based choice is off here (as for a large release), so every
    broadcast comes from that choice, and both ways give the same extract."""
    from kcure.stages.provision import extract as X

    b = "kc20261130110"
    tables = {"RGST": {"columns": ["SN_KEY", "DBYEAR", "TCODE"]},
              "T200": {"columns": ["SN_KEY", "MID", "M_SICK_CD", "RECU_FR_DD"], "years": [2014, 2019]},
              "T300": {"columns": ["MID", "LN_NO", "DIV_CD"], "years": [2014, 2019]}}  # fmt: skip
    approve(project_home, application(b, tables, date_shift=False))
    auto = spark.conf.get("spark.sql.autoBroadcastJoinThreshold")
    spark.conf.set("spark.sql.autoBroadcastJoinThreshold", "-1")
    try:
        monkeypatch.setattr(X, "BROADCAST_PARENT_ROWS", 0)  # every cohort's statements count as many
        first = _provision(project_home, b, spark, cfg=project_home.relaxed)
        shuffled = _extract(project_home, b)
        monkeypatch.undo()
        second = _provision(project_home, b, spark, cfg=project_home.relaxed)
        broadcast = _extract(project_home, b)
    finally:
        spark.conf.set("spark.sql.autoBroadcastJoinThreshold", auto)
    assert first["privacy"]["passed"] and second["provision"] == 2
    assert first["tables"]["T300"]["rows"] > 0 and second["tables"] == first["tables"]
    for name in tables:
        one, two = (f.sort_values(list(f.columns)).reset_index(drop=True) for f in (shuffled[name], broadcast[name]))
        pd.testing.assert_frame_equal(one, two)
    plans = _writes(spark, f"provision {b}: T300")
    assert len(plans) == 2
    many, few = (_joins_on(plan, "MID") for plan in plans)
    assert many and set(many) == {"SortMergeJoin"}, many
    assert few and set(few) == {"BroadcastHashJoin"}, few


def _classes(rgst: pd.DataFrame, bfc: pd.DataFrame, true_year: dict[str, int] | None) -> pd.Series:
    """Per person of an extract: SEX|AGE|SIDO|DBYEAR|TCODE3 of the first registered cancer."""
    order = ["SN_KEY", "FDX" if "FDX" in rgst.columns else "DBYEAR", "TCODE"]
    first = rgst.sort_values(order, na_position="last").drop_duplicates("SN_KEY").set_index("SN_KEY")
    year = first.DBYEAR if true_year is None else first.index.map(true_year).to_series(index=first.index)
    at = bfc.merge(pd.DataFrame({"SN_KEY": year.index, "STD_YYYY": year.to_numpy()}), on=["SN_KEY", "STD_YYYY"])
    sido = at.groupby("SN_KEY").SIDO.max().combine_first(bfc.groupby("SN_KEY").SIDO.max()).reindex(first.index)
    parts = [first.SEX, first.AGE, sido, year, first.TCODE.str[:3]]
    return pd.concat([s.astype(str) for s in parts], axis=1).agg("|".join, axis=1)


def test_day_level_dates_without_a_shift_are_refused_unless_two_reviewers_record_an_exception(
    project_home: ProjectHome, spark
) -> None:  # type: ignore[no-untyped-def]
    from kcure.projects.lifecycle import ProjectRefused

    d = "kc20261130104"
    tables = {"RGST": {"columns": ["SN_KEY", "SEX", "AGE"]}, "T200": {"columns": ["SN_KEY", "FST_IPAT_DD"]},
              "DEATH": {"columns": "all"}}  # fmt: skip
    approve(project_home, application(d, tables, date_precision="day", date_shift=False))
    with pytest.raises(ProjectRefused) as refused:
        _provision(project_home, d, spark)
    text = str(refused.value)
    assert "fails its privacy gate" in text and "first_admission" in text and "death" in text
    assert "date_shift: true" in text and "date_precision: month" in text
    store = project_home.store()
    assert not (store.folder(d) / "workspace" / "extract").exists()
    assert store.state(d).events[-1]["action"] == "provision_refused"

    store.exception(d, reviewer(0), "a validation study of death dates, analysed on site only")
    with pytest.raises(ProjectRefused):  # one is not enough
        _provision(project_home, d, spark)
    store.exception(d, reviewer(1), "agreed")
    m = _provision(project_home, d, spark)
    assert not m["privacy"]["passed"] and m["privacy"]["exception"]
    assert [e["by"] for e in m["exception"]] == ["rev-a", "rev-b"]


def test_an_independent_recomputation_from_the_extract_finds_the_manifests_risk_figures(
    project_home: ProjectHome, spark
) -> None:  # type: ignore[no-untyped-def]
    r = "kc20261130105"
    tables = {"RGST": {"columns": ["SN_KEY", "DBYEAR", "SEX", "AGE", "FDX", "TCODE"]},
              "BFC": {"columns": ["SN_KEY", "STD_YYYY", "SIDO"]}, "T200": {"columns": ["SN_KEY", "FST_IPAT_DD"]},
              "DEATH": {"columns": "all"}}  # fmt: skip
    approve(project_home, application(r, tables, date_precision="day"))
    m = _provision(project_home, r, spark, cfg=project_home.relaxed)  # thresholds relaxed: the figures are kept
    ext, keys = _extract(project_home, r), _keys(project_home, r)
    w = timedelta(days=7 * keys.weeks)
    cancers = _cancers(project_home, keys)
    cancers = cancers[cancers.pid.isin(set(ext["RGST"].SN_KEY))]
    first_cancer = cancers.sort_values(["pid", "FDX", "TCODE"], na_position="last").drop_duplicates("pid")
    assert len(cancers) == len(ext["RGST"]) and set(first_cancer.pid) == set(ext["RGST"].SN_KEY)
    classes = _classes(ext["RGST"], ext["BFC"], dict(zip(first_cancer.pid, first_cancer.DBYEAR, strict=True)))
    sizes = classes.map(classes.value_counts())
    p = m["privacy"]
    assert p["person_level"]["smallest_candidates"] == sizes.min()
    assert p["person_level"]["highest_risk"] == pytest.approx(1 / sizes.min(), abs=1e-6)
    assert p["person_level"]["people"] == len(classes)

    def events(df: pd.DataFrame, column: str, fmt: str | None) -> pd.DataFrame:
        released = pd.to_datetime(df[column], format=fmt)
        true = released - pd.to_timedelta(df.SN_KEY.map(keys.shift), "D")
        return pd.DataFrame({"person": df.SN_KEY, "true": true, "lo": released, "hi": released}).dropna()

    adm = events(ext["T200"], "FST_IPAT_DD", None)
    first = adm.sort_values("true").drop_duplicates("person")
    death = events(ext["DEATH"], "DREGDATE", "%Y%m%d").sort_values("true").drop_duplicates("person")
    month = pd.to_datetime(ext["RGST"].drop_duplicates("SN_KEY").set_index("SN_KEY").FDX + "01", format="%Y%m%d")
    dx = pd.DataFrame({"person": first_cancer.pid, "true": first_cancer.mid.to_numpy()})
    dx = dx.assign(lo=dx.person.map(month), hi=dx.person.map(month + pd.offsets.MonthEnd(0)))
    models = (("diagnosis", dx, False), ("first_admission", first, True), ("admission", adm, True),
              ("death", death, True))  # fmt: skip
    assert set(p["one_event"]) == {name for name, _, _ in models}
    for name, ev, weekly in models:
        ev = ev.assign(cls=ev.person.map(classes))
        pairs = ev.merge(ev, on="cls", suffixes=("", "_c"))
        near = pairs[(pairs.lo_c <= pairs.true + w) & (pairs.hi_c >= pairs.true - w)]
        if weekly:  # whole-week shifts, never 0: same weekday, never the true day itself
            near = near[((near.lo_c - near.true).dt.days % 7 == 0) & (near.lo_c != near.true)]
        n = near.groupby(["person", "true"]).person_c.nunique().groupby("person").min()
        s = p["one_event"][name]
        assert s["people"] == len(n), name
        assert s["smallest_candidates"] == n.min(), name
        assert s["share_unique"] == pytest.approx((n == 1).mean(), abs=1e-6), name
        assert s["average_risk"] == pytest.approx((1 / n).mean(), abs=1e-6), name
        assert s["highest_risk"] == pytest.approx((1 / n).max(), abs=1e-6), name


def test_closing_deletes_the_extract_and_destroys_the_key_and_the_log_shows_every_transition(
    project_home: ProjectHome, spark
) -> None:  # type: ignore[no-untyped-def]
    from kcure.projects.lifecycle import Caller, ProjectRefused
    from kcure.projects.provisioning import close, key_store

    c = "kc20261130106"
    approve(project_home, application(c, {"RGST": {"columns": ["SN_KEY", "SEX"]}}))
    _provision(project_home, c, spark)
    store, keys = project_home.store(), key_store(project_home.cfg)
    key_file = keys.folder / f"{c}.key"
    assert key_file.exists() and oct(key_file.stat().st_mode & 0o777) == "0o600"
    close(project_home.cfg, store, c, Caller.this_process(), "finished")
    assert not key_file.exists() and keys.load(c) is None
    assert not (store.folder(c) / "workspace").exists()
    assert (store.folder(c) / "provisions" / "1" / "manifest.json").exists()
    actions = [e["action"] for e in store.events(c)]
    assert actions == ["submitted", "approved", "approved", "provisioned", "closed", "destroyed"]
    assert store.events(c)[-1]["key_destroyed"] is True
    with pytest.raises(ProjectRefused, match="closed"):
        _provision(project_home, c, spark)


def test_re_provisioning_on_a_newer_release_keeps_every_persons_pseudonym(
    project_home: ProjectHome, project_a: dict[str, Any], spark
) -> None:  # type: ignore[no-untyped-def]
    before = _extract(project_home, A)
    project_home.publish("p2")
    m = _provision(project_home, A, spark, cfg=project_home.relaxed)
    after = _extract(project_home, A)
    assert m["release"]["tag"] == "p2" and m["provision"] == 2
    assert m["key_fingerprint"] == project_a["key_fingerprint"] and not m["key_created"]
    for name in before:  # the same data in a newer release: the same rows, under the same pseudonyms
        pd.testing.assert_frame_equal(before[name], after[name], check_dtype=False)
    assert m["privacy"]["never_finer_than_before"]["had_previous"]
    assert date.fromisoformat(m["application"]["expires"]) > date.today()
    assert os.path.exists(project_home.store().folder(A) / "provisions" / "2" / "report.html")


def test_no_project_key_reaches_a_spark_plan_an_event_log_a_manifest_or_the_project_log(
    project_home: ProjectHome, project_a: dict[str, Any]
) -> None:
    from kcure.projects.provisioning import key_store

    keys = key_store(project_home.cfg)
    material = []
    for path in sorted(keys.folder.glob("*.key")):
        key = keys.load(path.stem)
        assert key is not None
        material.append(key.raw().hex())
        for sub in (key, key.derive("person"), key.derive("substitute"), key.derive("shift")):
            material += [pad.hex() for pad in sub.pads()]
    assert len(material) >= 4 * 9
    events = Path(os.environ["KCURE_HOME"]) / "spark-events"  # the test session's Spark event log
    files = [p for p in events.rglob("*") if p.is_file()]
    files += [p for p in (project_home.cfg.home / "projects").rglob("*") if p.is_file() and p.suffix != ".parquet"]
    texts = {f: read_text(f) for f in files}  # event logs decompressed: their bytes would hide anything
    logs = event_logs(files)
    assert logs and all("SparkListenerApplicationStart" in texts[f] for f in logs), "the event log is read"
    leaks = [str(f) for f, text in texts.items() for m in material if m in text]
    assert leaks == []
