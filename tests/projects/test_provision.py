"""Provisioning research projects from a real release with Spark: each extract holds only what its
application names, under its own pseudonyms, and passes (or is refused by) its own privacy gate.

The checks here do not reuse the stage's code: they rebuild the project's pseudonyms and date shifts
from its key with Python's hmac, and recompute every attacker model with pandas."""

from __future__ import annotations

import hashlib
import hmac
import os
from datetime import date, timedelta
from typing import Any

import pandas as pd
import pytest

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
    return _provision(project_home, A, spark)


def test_an_extract_holds_only_the_tables_columns_people_and_years_its_application_names(
    project_home: ProjectHome, project_a: dict[str, Any]
) -> None:
    ext, keys = _extract(project_home, A), _keys(project_home, A)
    assert set(ext) == set(A_TABLES)
    for name, spec in A_TABLES.items():
        order = [c for c in project_home.cfg.library.table(name).column_names if c in spec["columns"]]
        assert list(ext[name].columns) == order, name
        assert project_a["tables"][name]["rows"] == len(ext[name])

    # people: exactly the release's cohort (every cancer, 2012-2020), less the people the gate dropped
    rgst = _release(project_home, "RGST")
    cohort = {keys.pid(s) for s in rgst.loc[rgst.DBYEAR.between(2012, 2020), "SN_KEY"]}
    people = set(ext["RGST"].SN_KEY)
    assert people <= cohort and len(cohort) - len(people) == project_a["privacy"]["people_dropped"]
    assert set(ext["BFC"].SN_KEY) <= people and set(ext["T200"].SN_KEY) <= people

    # T200: its true years (the released date less the person's shift) are 2015-2018, and every such
    # statement of those people is there; claim lines only of those statements
    true_day = pd.to_datetime(ext["T200"].RECU_FR_DD) - pd.to_timedelta(ext["T200"].SN_KEY.map(keys.shift), "D")
    assert true_day.dt.year.between(2015, 2018).all()
    t200 = _release(project_home, "T200")
    t200 = t200[t200.SN_KEY.map(keys.pid).isin(people) & pd.to_datetime(t200.RECU_FR_DD).dt.year.between(2015, 2018)]
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


def test_a_cohort_chosen_by_histology_is_recoded_again_and_passes_with_its_cost_recorded(
    project_home: ProjectHome, spark
) -> None:  # type: ignore[no-untyped-def]
    h = "kc20261130103"
    tables = {"RGST": {"columns": ["SN_KEY", "DBYEAR", "SEX", "AGE", "FDX", "TCODE", "MCODE"]},
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


def _classes(rgst: pd.DataFrame, bfc: pd.DataFrame, true_year: dict[str, int] | None) -> pd.Series:
    """Per person of an extract: SEX|AGE|SIDO|DBYEAR|TCODE3 of the first registered cancer."""
    first = (
        rgst.sort_values(["SN_KEY", "FDX", "TCODE"], na_position="last").drop_duplicates("SN_KEY").set_index("SN_KEY")
    )
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
    rgst = _release(project_home, "RGST").sort_values(["SN_KEY", "FDX", "TCODE"], na_position="last")
    true_year = {
        keys.pid(s): y for s, y in rgst.drop_duplicates("SN_KEY")[["SN_KEY", "DBYEAR"]].itertuples(index=False)
    }
    classes = _classes(ext["RGST"], ext["BFC"], true_year)
    sizes = classes.map(classes.value_counts())
    p = m["privacy"]
    assert p["person_level"]["smallest_candidates"] == sizes.min()
    assert p["person_level"]["highest_risk"] == pytest.approx(1 / sizes.min(), abs=1e-6)
    assert p["person_level"]["people"] == len(classes)

    window = 7 * project_home.cfg.privacy.extracts.shift_weeks

    def events(df: pd.DataFrame, column: str, fmt: str | None) -> pd.DataFrame:
        released = pd.to_datetime(df[column], format=fmt)
        true = released - pd.to_timedelta(df.SN_KEY.map(keys.shift), "D")
        return pd.DataFrame({"person": df.SN_KEY, "true": true, "released": released}).dropna()

    adm = events(ext["T200"], "FST_IPAT_DD", None)
    first = adm.sort_values("true").drop_duplicates("person")
    death = events(ext["DEATH"], "DREGDATE", "%Y%m%d").sort_values("true").drop_duplicates("person")
    for name, ev in (("first_admission", first), ("admission", adm), ("death", death)):
        ev = ev.assign(cls=ev.person.map(classes))
        pairs = ev.merge(ev, on="cls", suffixes=("", "_c"))
        near = pairs[(pairs.released_c - pairs.true).abs() <= timedelta(days=window)]
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
    m = _provision(project_home, A, spark)
    after = _extract(project_home, A)
    assert m["release"]["tag"] == "p2" and m["provision"] == 2
    assert m["key_fingerprint"] == project_a["key_fingerprint"] and not m["key_created"]
    for name in before:  # the same data in a newer release: the same rows, under the same pseudonyms
        pd.testing.assert_frame_equal(before[name], after[name], check_dtype=False)
    assert m["privacy"]["never_finer_than_before"]["had_previous"]
    assert date.fromisoformat(m["application"]["expires"]) > date.today()
    assert os.path.exists(project_home.store().folder(A) / "provisions" / "2" / "report.html")
