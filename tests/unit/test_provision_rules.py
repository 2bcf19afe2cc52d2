"""The provision stage's pure parts: attacker-model risk on hand-made data, the stratified sample,
never finer than before, and the project key store."""

from __future__ import annotations

import os
import stat
from datetime import date, timedelta
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest

from kcure.core.rules import RecodingStep
from kcure.projects.keys import KeyStore, ProjectKeyError
from kcure.stages.provision import risk as R
from kcure.stages.provision.extract import _classes, _coarsen, _gate, _refusal, never_finer, sample

pytestmark = pytest.mark.unit

T = R.Thresholds(k=5, max_average_risk=0.05, max_unique_share=0.01)
D0 = date(2018, 3, 1)


def _events(rows: list[tuple[str, int, int, int]], weekly: bool = False) -> pd.DataFrame:
    """(person, true day, first released day, last released day) as offsets from D0, model 'death'."""
    return pd.DataFrame(
        {
            "person": [r[0] for r in rows],
            "model": "death",
            "true_date": [D0 + timedelta(days=r[1]) for r in rows],
            "lo": [D0 + timedelta(days=r[2]) for r in rows],
            "hi": [D0 + timedelta(days=r[3]) for r in rows],
            "weekly": weekly,
        }
    )


def test_one_event_candidates_are_class_members_released_within_w_of_the_true_date() -> None:
    classes = pd.Series({"a": "X", "b": "X", "c": "X", "d": "Y", "e": "X"})
    # a dies on day 0, released +14; b on day 100, released -21; c on day 400; d alone in its class;
    # e has no death at all (not attackable by this model)
    ev = _events([("a", 0, 14, 14), ("b", 100, 79, 79), ("c", 400, 393, 393), ("d", 0, 7, 7)])
    summary, risk = R.one_event(classes, ev, 182, T)["death"]
    # a: a (14), b (79) within 182 of day 0 -> 2; b: a, b -> 2 (c's 393 is 293 away); c: c only; d: d only
    assert risk.to_dict() == {"a": 0.5, "b": 0.5, "c": 1.0, "d": 1.0}
    assert summary["people"] == 4 and summary["smallest_candidates"] == 1
    assert summary["share_unique"] == 0.5 and summary["average_risk"] == 0.75 and summary["highest_risk"] == 1.0
    assert summary["share_above_1_over_k"] == 1.0 and summary["passed"] is False
    # with no shift (W = 0) only exact released days count: everyone is alone
    _, exact = R.one_event(classes, _events([("a", 0, 0, 0), ("b", 0, 0, 0), ("c", 9, 9, 9)]), 0, T)["death"]
    assert exact.to_dict() == {"a": 0.5, "b": 0.5, "c": 1.0}


def test_a_whole_week_shift_keeps_the_weekday_so_only_days_a_multiple_of_7_away_are_candidates() -> None:
    classes = pd.Series({p: "X" for p in "abcdefg"})
    # seven people admitted on seven consecutive days, each shifted by a different whole number of weeks
    rows = [(p, i, i + 7 * (i + 1), i + 7 * (i + 1)) for i, p in enumerate("abcdefg")]
    _, plain = R.one_event(classes, _events(rows), 182, T)["death"]
    summary, weekly = R.one_event(classes, _events(rows, weekly=True), 182, T)["death"]
    assert set(plain) == {1 / 7}  # ignoring the weekday, every one of them is a candidate
    assert set(weekly) == {1.0} and summary["share_unique"] == 1.0  # the weekday gives each away
    # a released day equal to the true date cannot be the target's (a shift is never 0)
    _, same = R.one_event(classes, _events([("a", 0, 7, 7), ("b", 14, 0, 0)], weekly=True), 182, T)["death"]
    assert same["a"] == 1.0 and same["b"] == 0.5  # b's released day 0 is a's true day: not b's to a


def test_a_released_month_is_a_candidate_when_any_of_its_days_is_within_w() -> None:
    classes = pd.Series({"a": "X", "b": "X"})
    # a dies on day 0; b's death is released as a month whose last day is 10 days before a's true date
    ev = _events([("a", 0, 0, 30), ("b", -200, -40, -10)])
    _, w0 = R.one_event(classes, ev, 0, T)["death"]
    _, w14 = R.one_event(classes, ev, 14, T)["death"]
    assert w0["a"] == 1.0 and w14["a"] == 0.5


def test_person_level_risk_is_one_over_the_class_size() -> None:
    summary, risk = R.person_level(pd.Series(["X"] * 5 + ["Y"] * 2, index=list("abcdefg")), 5)
    assert risk["a"] == 0.2 and risk["f"] == 0.5
    assert summary["smallest_candidates"] == 2 and summary["passed"] is False
    assert summary["share_above_1_over_k"] == pytest.approx(2 / 7)


def test_class_labels_join_the_quasi_identifiers_and_stay_a_series_when_nobody_is_left() -> None:
    work = pd.DataFrame({"SEX": ["1", "2"], "AGE": ["60-64", None], "DBYEAR": [2015, 2016]}, index=["a", "b"])
    assert _classes(work, ["SEX", "AGE", "DBYEAR"]).to_dict() == {"a": "1|60-64|2015", "b": "2|None|2016"}
    empty = _classes(work.iloc[:0], ["SEX", "AGE", "DBYEAR"])
    assert isinstance(empty, pd.Series) and empty.empty


def test_a_gate_whose_recoding_leaves_nobody_refuses_and_says_so() -> None:
    # two people, each alone in their class whatever the ladder does, with k = 5: both are dropped, while
    # the events collected before the gate still name them (found by a 50-patient benchmark, where this
    # crashed in the risk model instead)
    people = pd.DataFrame({"SEX": ["1", "2"], "AGE": ["60-64", "30-34"]}, index=["a", "b"])
    ev = _events([("a", 0, 14, 14), ("b", 100, 79, 79)])
    rules = SimpleNamespace(recoding=[RecodingStep("AGE", "age_to_band", width=10)])
    result, privacy = _gate(people, ["SEX", "AGE"], ev, 182, T, rules)
    assert result.table.empty and sorted(result.dropped) == ["a", "b"]
    assert privacy["nobody_left"] is True and privacy["passed"] is False and privacy["people_dropped"] == 2
    app = SimpleNamespace(project="kc20260000001", date_precision="month", date_shift=True)
    assert "k-anonymity left nobody: all 2 people are in classes smaller than 5" in _refusal(privacy, app, T)
    # a gate that keeps people is not refused for this reason
    kept, ok = _gate(pd.DataFrame({"SEX": ["1"] * 5, "AGE": ["60-64"] * 5}, index=list("abcde")),
                     ["SEX", "AGE"], _events([]), 182, T, rules)  # fmt: skip
    assert len(kept.table) == 5 and ok["nobody_left"] is False and ok["passed"] is True


def test_the_stratified_sample_takes_the_fraction_of_every_stratum_and_depends_only_on_the_seed() -> None:
    people = pd.DataFrame({"SEX": ["1"] * 60 + ["2"] * 40}, index=[f"p{i:03d}" for i in range(100)])
    s1 = sample(people, 0.2, ("SEX",), seed=7)
    assert (people.loc[s1, "SEX"].value_counts().to_dict()) == {"1": 12, "2": 8}
    assert list(s1) == list(sample(people, 0.2, ("SEX",), seed=7))
    assert set(s1) != set(sample(people, 0.2, ("SEX",), seed=8))


def test_a_re_provisioning_never_gives_finer_values_than_before() -> None:
    from kcure.core.kanon import widen_age

    assert widen_age("40-59", 10) == "40-59"  # a 20-year band is never narrowed by the 10-year step
    assert _coarsen("AGE", "60-64", "60-69") == "60-69"
    assert _coarsen("AGE", "60-69", "60-64") == "60-69"  # already coarser: kept
    assert _coarsen("TCODE3", "C16", "C15-C26") == "C15-C26"
    assert _coarsen("SIDO", "Seoul", "*") == "*"
    work = pd.DataFrame({"AGE": ["60-64", "40-44"], "SIDO": ["Seoul", "Other"], "TCODE3": ["C16", "C50"]},
                        index=["p1", "p2"])  # fmt: skip
    prior = pd.DataFrame({"AGE": ["60-79"], "SIDO": ["*"], "TCODE3": ["C16"]}, index=["p1"])
    out, changed = never_finer(work, prior)
    assert out.loc["p1"].tolist() == ["60-79", "*", "C16"] and out.loc["p2"].tolist() == ["40-44", "Other", "C50"]
    assert changed == 2


def test_a_project_key_is_owner_only_stable_and_destroyed(tmp_path: Path) -> None:
    store = KeyStore(tmp_path / "keys")
    key, made = store.load_or_create("kc20261130001")
    again, made_again = store.load_or_create("kc20261130001")
    assert made and not made_again and key.raw() == again.raw() and len(key.raw()) == 32
    assert "redacted" in repr(key) and key.raw().hex() not in repr(key)
    path = tmp_path / "keys" / "kc20261130001.key"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    other, _ = store.load_or_create("kc20261130002")
    assert other.raw() != key.raw() and other.fingerprint() != key.fingerprint()
    os.chmod(path, 0o640)
    with pytest.raises(ProjectKeyError, match="owner-only"):
        store.load("kc20261130001")
    os.chmod(path, 0o600)
    assert store.destroy("kc20261130001") and not path.exists() and store.load("kc20261130001") is None
    assert not store.destroy("kc20261130001")


def test_one_event_reports_its_models_in_the_order_of_the_events_whatever_order_the_query_returns() -> None:
    """The manifest lists the models in the configuration's order (the order their events come in):
    a parallel aggregate returns its groups in any order, which made two provisionings of the same
    extract list them differently."""
    models = ["first_admission", "admission", "death", "diagnosis", "covid_confirmation", "vaccination"]
    people = [f"p{i}" for i in range(3000)]
    classes = pd.Series({p: f"C{i % 40}" for i, p in enumerate(people)})
    days = [(p, i % 90, i % 90, i % 90) for i, p in enumerate(people)]
    ev = pd.concat([_events(days).assign(model=m) for m in models])
    for _ in range(5):
        assert list(R.one_event(classes, ev, 14, T)) == models
