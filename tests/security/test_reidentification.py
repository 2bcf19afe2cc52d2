"""k-anonymity recomputed the way an attacker would, from the released tables alone: each quasi-identifier
is inferred from every released column that says anything about it (RGST, BFC, T200, T300, T400, DEATH),
and the classes of people who look alike still hold at least k. Written apart from the protect stage, so
it checks what the release says, not what the stage meant."""

from __future__ import annotations

import re
from collections import Counter, defaultdict

import pytest

from kcure.access.query import read_table
from kcure.core import catalog
from tests.build_fixture import Published

pytestmark = [pytest.mark.spark, pytest.mark.integration, pytest.mark.slow]
BAND = re.compile(r"^(\d+)(?:-(\d+)|\+)$")
EXACT_CANCER = re.compile(r"^C\d{2}[0-9A-Z]$")  # a 4-character C-code: it names the 3-character site


def _birth_years(year: int, band: str | None) -> tuple[float, float]:
    """The birth years an age band in a given year allows (everything, when it says nothing)."""
    m = BAND.match(band or "")
    if not m:
        return (float("-inf"), float("inf"))
    lo, hi = int(m.group(1)), m.group(2)
    return (float("-inf") if hi is None else year - int(hi) - 1, year - lo)


def _rows(cat, release, name: str) -> list[dict]:  # type: ignore[no-untyped-def,type-arg]
    return read_table(cat, release, name).to_pylist()


def infer(cat, release) -> dict[str, tuple]:  # type: ignore[no-untyped-def,type-arg]
    """Per person: (sex, birth-year interval, residence, diagnosis year, site) as the release reveals them."""
    rgst = _rows(cat, release, "RGST")
    bfc = _rows(cat, release, "BFC")
    born: dict[str, tuple[float, float]] = defaultdict(lambda: (float("-inf"), float("inf")))
    first: dict[str, dict] = {}  # type: ignore[type-arg]
    for r in sorted(rgst, key=lambda r: (r["FDX"] or "999999", r["TCODE"] or "")):
        first.setdefault(r["SN_KEY"], r)
    for table, year in ((rgst, "DBYEAR"), (bfc, "STD_YYYY")):
        for r in table:
            if r[year] is not None:
                lo, hi = _birth_years(int(r[year]), r["AGE"])
                a, b = born[r["SN_KEY"]]
                born[r["SN_KEY"]] = (max(a, lo), min(b, hi))
    residence = {}
    for r in sorted(bfc, key=lambda r: (r["SN_KEY"], r["STD_YYYY"])):
        if r["STD_YYYY"] == first[r["SN_KEY"]]["DBYEAR"] or r["SN_KEY"] not in residence:
            residence[r["SN_KEY"]] = r["SIDO"]
    # every exact cancer site a person's claims, diagnoses and death record show
    owner = {r["MID"]: r["SN_KEY"] for r in _rows(cat, release, "T200")}
    sites: dict[str, Counter[str]] = defaultdict(Counter)
    for r in _rows(cat, release, "T200"):
        for col in ("M_SICK_CD", "SUB_SICK_CD"):
            if EXACT_CANCER.match(r[col] or ""):
                sites[r["SN_KEY"]][r[col][:3]] += 1
    for r in _rows(cat, release, "T400"):
        if EXACT_CANCER.match(r["SICK_CD"] or "") and r["MID"] in owner:
            sites[owner[r["MID"]]][r["SICK_CD"][:3]] += 1
    for r in _rows(cat, release, "DEATH"):
        for col in ("SAIN1", "SAIN2"):
            if EXACT_CANCER.match(r[col] or ""):
                sites[r["SN_KEY"]][r[col][:3]] += 1
    out = {}
    for key, r in first.items():
        shown = r["TCODE"]
        site = shown[:3] if shown and "-" not in shown else shown  # a block, or None where suppressed
        if site is None or "-" in site:  # the attacker's best guess: the site the claims name most
            inside = [
                s for s, _ in sites[key].most_common() if site is None or site.split("-")[0] <= s <= site.split("-")[1]
            ]
            site = inside[0] if inside else site
        out[key] = (r["SEX"], born[key], residence.get(key), r["DBYEAR"], site)
    return out


def test_the_release_alone_gives_no_class_smaller_than_k(local_release: Published) -> None:  # type: ignore[no-untyped-def]
    c = local_release.cfg
    cat = catalog.open_catalog(c)  # type: ignore[attr-defined]
    release = catalog.resolve(cat, "local")
    people = infer(cat, release)
    classes = Counter(people.values())
    k = release.manifest["privacy"]["k"]
    assert len(people) == release.manifest["privacy"]["people"] - release.manifest["privacy"]["people_dropped"]
    smallest = min(classes.values())
    assert smallest >= k, sorted(classes.items(), key=lambda kv: kv[1])[:3]
    # and the inference has teeth: people recoded in the release, and claims that name exact sites elsewhere
    assert sum(1 for v in people.values() if v[4] is None or "-" in (v[4] or "")) > 10
    widths = Counter(int(b - a) for _, (a, b), *_ in people.values() if a > float("-inf"))
    assert widths and min(widths) >= 5, widths  # no birth year is pinned to fewer than five years


def test_the_release_says_what_k_holds_against(local_release: Published) -> None:
    cat = catalog.open_catalog(local_release.cfg)  # type: ignore[attr-defined]
    privacy = catalog.resolve(cat, "local").manifest["privacy"]
    threat = privacy["threat_model"]
    assert "sex, age band at diagnosis" in threat["holds_against"][0]
    assert any("day level" in x for x in threat["does_not_hold_against"])
    assert set(privacy["reveals"]["TCODE3"]) >= {"RGST.TCODE", "T200.M_SICK_CD", "T400.SICK_CD", "DEATH.SAIN1"}
