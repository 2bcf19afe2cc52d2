"""The synthetic population looks like Korea's cancer patients (shapes, not statistics to cite)."""

from __future__ import annotations

import re

import numpy as np
import pytest
import yaml

from kcure.core import rrn
from kcure.generator import feeds as fb
from kcure.generator import population as pop
from kcure.generator import reference as ref
from tests.conftest import REPO

pytestmark = pytest.mark.unit
N = 20_000


@pytest.fixture(scope="module")
def gen() -> dict:  # type: ignore[type-arg]
    return yaml.safe_load((REPO / "conf" / "generator.yaml").read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def cohort(gen):  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(2024)
    providers = pop.make_providers(rng)
    people, cancers = pop.make_cohort(rng, np.arange(1, N + 1), providers, gen)
    return people, cancers


def _first(cancers: pop.Cancers) -> np.ndarray:
    return np.arange(N)  # the first N cancer rows are each person's first primary


def test_site_mix_is_led_by_the_seven_leading_korean_cancers(cohort) -> None:  # type: ignore[no-untyped-def]
    _, cancers = cohort
    site = cancers.site[_first(cancers)]
    shares = np.bincount(site, minlength=len(ref.SITES)) / N
    names = [s.name for s in ref.SITES]
    leading = {"thyroid", "lung", "colorectum", "stomach", "breast", "prostate", "liver"}
    top7 = {names[i] for i in np.argsort(shares)[::-1][:7]}
    assert top7 == leading
    for s, share in zip(ref.SITES, shares, strict=True):
        assert abs(share - s.share / sum(x.share for x in ref.SITES)) < 0.01, s.name


def test_sex_ratios_follow_the_site(cohort) -> None:  # type: ignore[no-untyped-def]
    people, cancers = cohort
    site = cancers.site[_first(cancers)]
    names = [s.name for s in ref.SITES]

    def male_share(name: str) -> float:
        return float((people.sex[site == names.index(name)] == 1).mean())

    assert male_share("thyroid") < 0.3
    assert male_share("breast") < 0.02
    assert male_share("prostate") == 1.0
    assert male_share("cervix") == 0.0
    for name in ("lung", "stomach", "liver"):
        assert male_share(name) > 0.6, name


def test_ages_at_diagnosis_peak_younger_for_thyroid_and_breast(cohort) -> None:  # type: ignore[no-untyped-def]
    _, cancers = cohort
    first = _first(cancers)
    age, site = cancers.age[first], cancers.site[first]
    names = [s.name for s in ref.SITES]
    assert 58 <= np.median(age) <= 70
    for name in ("thyroid", "breast"):
        assert 40 <= np.median(age[site == names.index(name)]) < 56, name
    assert np.median(age[site == names.index("lung")]) >= 65


def test_stage_depends_on_site_and_deaths_follow_survival(cohort) -> None:  # type: ignore[no-untyped-def]
    people, cancers = cohort
    first = _first(cancers)
    site, seer, fdx = cancers.site[first], cancers.seer[first], cancers.fdx[first]
    names = [s.name for s in ref.SITES]

    def distant(name: str) -> float:
        return float((seer[site == names.index(name)] == "4").mean())

    def dead_within_3y(name: str) -> float:
        sel = (site == names.index(name)) & (fdx <= np.datetime64("2017-12-31"))
        d = people.death[sel]
        return float((~np.isnat(d) & (d <= fdx[sel] + np.timedelta64(3 * 365, "D"))).mean())

    assert distant("pancreas") > distant("stomach") > distant("thyroid")
    assert distant("lung") > 0.3
    for deadly in ("lung", "liver", "pancreas"):
        for mild in ("thyroid", "breast", "prostate"):
            assert dead_within_3y(deadly) > 2 * dead_within_3y(mild), (deadly, mild)


def test_people_have_valid_rrns_korean_names_and_consistent_addresses(cohort) -> None:  # type: ignore[no-untyped-def]
    people, _ = cohort
    assert all(rrn.is_valid(r) for r in people.rrn)
    birth = people.birth.astype(str)
    assert all(r[:6] == b[2:4] + b[5:7] + b[8:10] for r, b in zip(people.rrn, birth, strict=True))
    g = np.array([int(r[6]) for r in people.rrn])
    assert np.array_equal(np.isin(g, [5, 6, 7, 8]), people.foreign)
    assert np.array_equal(np.isin(g, [1, 3, 5, 7, 9]), people.sex == 1)
    assert 0.02 < people.foreign.mean() < 0.04
    korean = people.name[~people.foreign]
    assert all(re.fullmatch("[가-힣]{2,4}", n) for n in korean)
    sido_name = {code: name for code, name, _, _ in ref.SIDO}
    sgg = {code: name for *_x, lst in ref.SIDO for code, name in lst}
    for s, g5, addr in zip(people.sido[:2000], people.sigungu[:2000], people.addr[:2000], strict=True):
        assert g5.startswith(s)
        assert addr.startswith(f"{sido_name[s]} {sgg[g5]} ")


def test_death_records_can_predate_the_diagnosis_when_injected(cohort) -> None:  # type: ignore[no-untyped-def]
    people, cancers = cohort
    rng = np.random.default_rng(1)
    first_fdx = cancers.fdx[_first(cancers)]
    covid_death = np.zeros(N, dtype=bool)
    rows = fb.death(rng, people, covid_death, first_fdx, fault_rate=0.5)
    idx = {p: i for i, p in enumerate(people.pid)}
    tagged = np.array(["death_before_diagnosis" in t.split(",") for t in rows.tag])
    assert tagged.sum() > 100
    for pid, d, t in zip(rows.pid, rows.columns["DTH_DATE"], tagged, strict=True):
        assert (d < first_fdx[idx[pid]]) == t


def test_sex_disagreement_flips_one_feed_only(gen) -> None:  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(9)
    g = dict(gen, faults=dict(gen["faults"], sex_disagreement=1.0))
    people, cancers = pop.make_cohort(rng, np.arange(1, 501), pop.make_providers(rng), g)
    reg = fb.registry(rng, people, cancers)
    elig = fb.eligibility(rng, people)
    idx = {p: i for i, p in enumerate(people.pid)}
    for rows, feed in ((reg, "kccr_registry"), (elig, "nhis_eligibility")):
        for pid, sex in zip(rows.pid, rows.columns["SEX"], strict=True):
            i = idx[pid]
            flipped = people.sex_fault_feed[i] == feed
            assert (sex != people.sex[i]) == flipped
