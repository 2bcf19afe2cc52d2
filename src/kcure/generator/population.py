"""People, cancers and providers of one chunk of the synthetic population (vectorized numpy)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from kcure.core import rrn as rrnlib
from kcure.generator import reference as ref

D = np.datetime64
WINDOW_START = D("2012-01-01")
WINDOW_END = D("2020-12-31")
OUTCOME_END = D("2022-12-31")
FAR_FUTURE = D("2100-01-01")

Str = npt.NDArray[np.str_]
Int = npt.NDArray[np.int64]
Days = npt.NDArray[np.datetime64]
Bool = npt.NDArray[np.bool_]


def weighted_choice(rng: np.random.Generator, items: Any, weights: Any, n: int) -> Int:
    w = np.asarray(weights, dtype=float)
    return rng.choice(len(items), size=n, p=w / w.sum())


def lpad(ints: Any, width: int) -> pa.Array:
    """Zero-padded decimal strings of an int array, built in Arrow."""
    return pc.utf8_lpad(pa.array(np.asarray(ints, dtype=np.int64)).cast(pa.string()), width, "0")


def uniform_dates(rng: np.random.Generator, lo: Days, hi: Days) -> Days:
    """One date uniformly in [lo, hi] per element (hi >= lo)."""
    span = (hi - lo).astype(np.int64) + 1
    return lo + (rng.random(len(lo)) * span).astype(np.int64).astype("timedelta64[D]")


def years_of(d: Days) -> Int:
    return d.astype("datetime64[Y]").astype(np.int64) + 1970


@dataclass
class Providers:
    ykiho: Str
    cl_cd: Str
    sido: Str

    def pick(self, rng: np.random.Generator, cl_cd: Str, sido: Str) -> Str:
        """A provider of the given type for each claim, in the patient's SIDO 80% of the time."""
        out = np.empty(len(cl_cd), dtype=self.ykiho.dtype)
        local = rng.random(len(cl_cd)) < 0.8
        for t in np.unique(cl_cd):
            pool_t = self.cl_cd == t
            for s in np.unique(sido[cl_cd == t]):
                sel = (cl_cd == t) & (sido == s)
                local_pool = self.ykiho[pool_t & (self.sido == s)]
                any_pool = self.ykiho[pool_t & (self.sido == "11")]  # big Seoul hospitals draw patients nationwide
                if len(local_pool) == 0:
                    local_pool = self.ykiho[pool_t]
                if len(any_pool) == 0:
                    any_pool = self.ykiho[pool_t]
                n = int(sel.sum())
                use_local = local[sel]
                draw = np.where(
                    use_local,
                    local_pool[rng.integers(0, len(local_pool), n)],
                    any_pool[rng.integers(0, len(any_pool), n)],
                )
                out[sel] = draw
        return out


# provider types: CL_CD, YKIHO type digit, count nationally (scaled down for clinics and pharmacies)
PROVIDER_TYPES = (
    ("01", "1", 45),
    ("11", "1", 320),
    ("21", "2", 1400),
    ("28", "2", 400),
    ("31", "3", 4000),
    ("81", "8", 3000),
)


def make_providers(rng: np.random.Generator) -> Providers:
    pops = np.array([s[2] for s in ref.SIDO])
    ykiho, cl, sido = [], [], []
    serial = 0
    for cl_cd, digit, count in PROVIDER_TYPES:
        per_sido = np.maximum(1, np.round(count * pops / pops.sum()).astype(int))
        for (code, _name, _pop, _sgg), n in zip(ref.SIDO, per_sido, strict=True):
            nums = rng.choice(100000, size=n, replace=False)
            for k in nums:
                ykiho.append(f"{code}{digit}{k:05d}")
                cl.append(cl_cd)
                sido.append(code)
                serial += 1
    return Providers(np.array(ykiho), np.array(cl), np.array(sido))


@dataclass
class People:
    """Columnar table of people. ``death`` is NaT for people alive at the end of 2022."""

    pid: Int
    cohort: Bool
    sex: Int
    birth: Days
    foreign: Bool
    rrn: Str
    name: Str
    phone: Str
    sido: Str
    sigungu: Str
    addr: Str
    move_year: Int  # 0: never moves; else the year of a mid-year move to addr2
    sido2: Str
    sigungu2: Str
    addr2: Str
    death: Days
    death_cause: Str
    sex_fault_feed: Str  # "" or the feed that records the other sex
    gaibja: Str
    vtile: Int
    dsb_grade: Str
    dsb_type: Str

    def __len__(self) -> int:
        return len(self.pid)

    def alive_on(self, d: Days) -> Bool:
        return np.isnat(self.death) | (self.death >= d)

    def death_or(self, default: np.datetime64) -> Days:
        return np.where(np.isnat(self.death), default, self.death)


@dataclass
class Cancers:
    """Registered primary cancers (one row each); ``idx`` points into the chunk's People."""

    idx: Int
    site: Int
    fdx: Days
    tcode: Str
    kcd: Str
    mcode: Str
    seer: Str
    method: Str
    later: Str
    grade: Str
    tx: Str
    hcode: Str
    ptno: Str
    age: Int


def make_names(rng: np.random.Generator, sex: Int, birth_year: Int, foreign: Bool) -> Str:
    n = len(sex)
    sur_names = np.array([s for s, _ in ref.SURNAMES])
    sur = sur_names[weighted_choice(rng, sur_names, [w for _, w in ref.SURNAMES], n)]
    given = np.empty(n, dtype="<U8")
    era_starts = np.array([start for _, start in ref.NAME_ERAS])
    era_idx = np.searchsorted(era_starts, birth_year, side="right") - 1
    for e, (era, _start) in enumerate(ref.NAME_ERAS):
        for s in (1, 2):
            sel = (era_idx == e) & (sex == s)
            pool = np.array(ref.GIVEN_NAMES[(era, s)])
            given[sel] = pool[rng.integers(0, len(pool), int(sel.sum()))]
    names = np.char.add(sur.astype("<U8"), given)
    foreign_pool = np.array(
        [
            "왕웨이",
            "장리나",
            "리우양",
            "응우옌티흐엉",
            "쩐반남",
            "팜티란",
            "마리아산토스",
            "NGUYEN VAN AN",
            "JOHN SMITH",
            "바트바야르",
            "김블라디미르",
            "CHEN JING",
            "사르다르칸",
            "라자쿠마르",
        ]
    )
    fsel = foreign & (rng.random(n) < 0.6)  # many foreign residents are ethnic Koreans with Korean names
    names[fsel] = foreign_pool[rng.integers(0, len(foreign_pool), int(fsel.sum()))]
    return names


def make_addresses(rng: np.random.Generator, n: int) -> tuple[Str, Str, Str]:
    pops = [s[2] for s in ref.SIDO]
    si = weighted_choice(rng, ref.SIDO, pops, n)
    sido = np.empty(n, dtype="<U2")
    sgg = np.empty(n, dtype="<U5")
    sido_name = np.empty(n, dtype="<U10")
    sgg_name = np.empty(n, dtype="<U12")
    for k, (code, sname, _pop, sgglist) in enumerate(ref.SIDO):
        sel = si == k
        m = int(sel.sum())
        pick = rng.integers(0, len(sgglist), m)
        sido[sel] = code
        sgg[sel] = np.array([c for c, _ in sgglist])[pick]
        sido_name[sel] = sname
        sgg_name[sel] = np.array([nm for _, nm in sgglist])[pick]
    road = np.array(ref.ROAD_NAMES)[rng.integers(0, len(ref.ROAD_NAMES), n)]
    bldg = rng.integers(1, 400, n)
    apt = rng.random(n) < ref.UNIT_SUFFIX_SHARE
    dong = rng.integers(101, 120, n)
    ho = rng.integers(1, 25, n) * 100 + rng.integers(1, 8, n)
    base = pc.binary_join_element_wise(
        pa.array(sido_name), pa.array(sgg_name), pa.array(road), pa.array(bldg).cast(pa.string()), " "
    )
    unit = pc.binary_join_element_wise(
        ", ", pa.array(dong).cast(pa.string()), "동 ", pa.array(ho).cast(pa.string()), "호", ""
    )
    addr = pc.if_else(pa.array(apt), pc.binary_join_element_wise(base, unit, ""), base)
    return sido, sgg, np.asarray(addr.to_numpy(zero_copy_only=False), dtype=str)


def make_phones(rng: np.random.Generator, n: int) -> Str:
    mid = lpad(rng.integers(2000, 10000, n), 4)
    end = lpad(rng.integers(0, 10000, n), 4)
    return np.asarray(pc.binary_join_element_wise("010", mid, end, "-").to_numpy(zero_copy_only=False), dtype=str)


def background_hazard(age: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """Yearly all-cause mortality by age (Gompertz, close to Korean life tables around 2016)."""
    return np.minimum(0.00003 * np.exp(0.093 * np.clip(age, 0, 110)), 0.6)


def _base_people(
    rng: np.random.Generator, pids: Int, cohort: bool, sex: Int, birth: Days, gen: dict[str, Any]
) -> dict[str, Any]:
    n = len(pids)
    pop = gen["population"]
    foreign = rng.random(n) < pop["foreign_resident_rate"]
    rrn = rrnlib.make_rrns(birth, sex, foreign, rng)
    name = make_names(rng, sex, years_of(birth), foreign)
    phone = make_phones(rng, n)
    sido, sgg, addr = make_addresses(rng, n)
    sido2, sgg2, addr2 = make_addresses(rng, n)
    move_year = np.where(rng.random(n) < 0.2, rng.integers(2013, 2021, n), 0)
    sex_fault = np.where(
        rng.random(n) < gen["faults"]["sex_disagreement"],
        np.array(["nhis_eligibility", "kostat_death", "kccr_registry"])[rng.integers(0, 3, n)],
        "",
    )
    gtype = np.array(["5", "6", "1", "2", "7", "8"])[weighted_choice(rng, range(6), [45, 25, 15, 12, 2, 1], n)]
    vtile = np.where(np.isin(gtype, ["7", "8"]), 0, rng.integers(1, 21, n))
    dsb = rng.random(n) < 0.05
    dsb_grade = np.where(dsb, rng.integers(1, 7, n).astype(str), "")
    dsb_type = np.where(dsb, rng.integers(1, 16, n).astype(str), "")
    return dict(
        pid=pids,
        cohort=np.full(n, cohort),
        sex=sex,
        birth=birth,
        foreign=foreign,
        rrn=rrn,
        name=name,
        phone=phone,
        sido=sido,
        sigungu=sgg,
        addr=addr,
        move_year=move_year,
        sido2=sido2,
        sigungu2=sgg2,
        addr2=addr2,
        sex_fault_feed=sex_fault,
        gaibja=gtype,
        vtile=vtile,
        dsb_grade=dsb_grade,
        dsb_type=dsb_type,
    )


def make_cohort(
    rng: np.random.Generator, pids: Int, providers: Providers, gen: dict[str, Any]
) -> tuple[People, Cancers]:
    """Cancer patients diagnosed 2012-2020: site mix, sex, age, stage and survival by site."""
    n = len(pids)
    sites = ref.SITES
    site = weighted_choice(rng, sites, [s.share for s in sites], n)
    male_p = np.array([s.male for s in sites])[site]
    sex = np.where(rng.random(n) < male_p, 1, 2).astype(np.int64)
    age_mean = np.array([s.age_mean for s in sites])[site]
    age_sd = np.array([s.age_sd for s in sites])[site]
    age = np.clip(rng.normal(age_mean, age_sd), 0.5, 99.5)
    # incidence grew from about 225,000 (2012) to 250,000 (2019) cases a year
    yweights = 1 + 0.012 * np.arange(9)
    dx_year = 2012 + weighted_choice(rng, range(9), yweights, n)
    fdx = uniform_dates(rng, np.array([D(f"{y}-01-01") for y in dx_year]), np.array([D(f"{y}-12-31") for y in dx_year]))
    birth = fdx - (age * 365.25).astype(np.int64).astype("timedelta64[D]")
    base = _base_people(rng, pids, True, sex, birth, gen)

    stage_p = np.array([s.stage for s in sites])[site]
    u = rng.random(n)[:, None]
    stage_idx = (u > np.cumsum(stage_p, axis=1)).sum(axis=1).clip(0, 3)
    seer = np.array(["2", "3", "4", "9"])[stage_idx]
    # hazard: site's five-year relative survival, scaled by stage, plus background mortality
    s5 = np.array([s.survival5 for s in sites])[site]
    lam = -np.log(np.clip(s5, 1e-3, 0.9999)) / 5.0
    lam = lam * np.array([0.35, 1.0, 3.0, 1.4])[stage_idx]
    t_cancer = rng.exponential(1.0 / np.maximum(lam, 1e-6))
    t_bg = rng.exponential(1.0 / background_hazard(age + 2))
    t = np.minimum(t_cancer, t_bg)
    death = fdx + np.maximum(1, (t * 365.25).astype(np.int64)).astype("timedelta64[D]")
    cause_cancer = t_cancer <= t_bg
    # death-certificate-only cases: registered from the death record, diagnosis date = death date
    dco = rng.random(n) < 0.004
    death = np.where(dco, fdx, death)
    cause_cancer |= dco
    alive = death > OUTCOME_END
    death = np.where(alive, np.datetime64("NaT"), death)
    kcd_site = np.empty(n, dtype="<U5")
    tcode = np.empty(n, dtype="<U4")
    mcode = np.empty(n, dtype="<U5")
    for k, s in enumerate(sites):
        sel = site == k
        m = int(sel.sum())
        j = rng.integers(0, len(s.tcodes), m)
        tcode[sel] = np.array(s.tcodes)[j]
        kcd_site[sel] = np.array(s.kcd)[j % len(s.kcd)]
        mcode[sel] = np.array([c for c, _ in s.morph])[weighted_choice(rng, s.morph, [w for _, w in s.morph], m)]
    bg_cause = np.array([c for c, _ in ref.DEATH_CAUSES])[
        weighted_choice(rng, ref.DEATH_CAUSES, [w for _, w in ref.DEATH_CAUSES], n)
    ]
    death_cause = np.where(alive, "", np.where(cause_cancer, kcd_site, bg_cause))
    people = People(death=death, death_cause=death_cause, **base)

    # second primaries, later than the first and inside the window
    second = (rng.random(n) < gen["population"]["second_primary_rate"]) & ~dco
    fdx2 = fdx + (rng.uniform(0.5, 5, n) * 365.25).astype(np.int64).astype("timedelta64[D]")
    second &= (fdx2 <= WINDOW_END) & (np.isnat(death) | (fdx2 < death))
    site2 = weighted_choice(rng, sites, [s.share for s in sites], n)
    idx = np.concatenate([np.arange(n), np.flatnonzero(second)])
    all_site = np.concatenate([site, site2[second]])
    all_fdx = np.concatenate([fdx, fdx2[second]])
    m = len(idx)
    t2 = np.empty(m - n, dtype="<U4")
    k2 = np.empty(m - n, dtype="<U5")
    m2 = np.empty(m - n, dtype="<U5")
    for k, s in enumerate(sites):
        sel = site2[second] == k
        c = int(sel.sum())
        j = rng.integers(0, len(s.tcodes), c)
        t2[sel] = np.array(s.tcodes)[j]
        k2[sel] = np.array(s.kcd)[j % len(s.kcd)]
        m2[sel] = s.morph[0][0]
    stage_all = np.concatenate([seer, np.array(["2", "3", "4", "9"])[rng.integers(0, 4, m - n)]])
    method = np.array(["7", "5", "2", "1"])[weighted_choice(rng, range(4), [86, 5, 7, 2], m)]
    method[:n][dco] = "0"
    stage_all[:n][dco] = "9"
    paired = np.array([s.paired for s in sites])[all_site]
    later = np.where(paired, np.where(rng.random(m) < 0.5, "1", "2"), "0")
    grade = np.array(["1", "2", "3", "4", "9"])[weighted_choice(rng, range(5), [15, 35, 20, 5, 25], m)]
    tx_surg = (np.isin(stage_all, ["1", "2", "3"]) & (rng.random(m) < 0.8)).astype(int)
    tx_chemo = ((stage_all == "3") & (rng.random(m) < 0.6) | (stage_all == "4") & (rng.random(m) < 0.75)).astype(int)
    tx_rt = (rng.random(m) < 0.2).astype(int)
    tx_imm = (rng.random(m) < 0.03).astype(int)
    tx_horm = (np.isin(all_site, [4, 5]) & (rng.random(m) < 0.6)).astype(int)
    tx_arr = pc.binary_join_element_wise(
        *[pa.array(x).cast(pa.string()) for x in (tx_surg, tx_chemo, tx_rt, tx_imm, tx_horm)], ""
    )
    tx = np.asarray(tx_arr.to_numpy(zero_copy_only=False), dtype=str)
    hosp_type = np.where(rng.random(m) < 0.55, "01", "11")
    hcode = providers.pick(rng, hosp_type, base["sido"][idx])
    # chart numbers: hospital-specific 8 digits, stable per person and hospital
    ptno_num = (pids[idx].astype(np.uint64) * np.uint64(2654435761) + hcode.astype(np.uint64)) % np.uint64(10**8)
    ptno = np.asarray(lpad(ptno_num.astype(np.int64), 8).to_numpy(zero_copy_only=False), dtype=str)
    age_dx = ((all_fdx - birth[idx]).astype(np.int64) / 365.25).astype(np.int64)
    cancers = Cancers(
        idx=idx,
        site=all_site,
        fdx=all_fdx,
        tcode=np.concatenate([tcode, t2]),
        kcd=np.concatenate([kcd_site, k2]),
        mcode=np.concatenate([mcode, m2]),
        seer=stage_all,
        method=method,
        later=later,
        grade=grade,
        tx=tx,
        hcode=hcode,
        ptno=ptno,
        age=age_dx,
    )
    return people, cancers


def make_general(rng: np.random.Generator, pids: Int, gen: dict[str, Any]) -> People:
    """Cancer-free people: Korea's age pyramid around 2016, background mortality, no registry record."""
    n = len(pids)
    # birth years 1920-2019, weighted like the 2016 pyramid (baby boom 1955-1974 heaviest)
    years = np.arange(1920, 2020)
    w = np.interp(years, [1920, 1940, 1955, 1965, 1975, 1990, 2000, 2019], [0.05, 0.35, 1.0, 1.05, 1.0, 0.85, 0.6, 0.4])
    by = years[weighted_choice(rng, years, w, n)]
    birth = uniform_dates(rng, np.array([D(f"{y}-01-01") for y in by]), np.array([D(f"{y}-12-31") for y in by]))
    sex = rng.integers(1, 3, n).astype(np.int64)
    base = _base_people(rng, pids, False, sex, birth, gen)
    start = np.maximum(birth, WINDOW_START)
    age_start = (start - birth).astype(np.int64) / 365.25
    t = rng.exponential(1.0 / background_hazard(age_start + 4))
    death = start + np.maximum(1, (t * 365.25).astype(np.int64)).astype("timedelta64[D]")
    death = np.where(death > OUTCOME_END, np.datetime64("NaT"), death)
    cause = np.array([c for c, _ in ref.DEATH_CAUSES])[
        weighted_choice(rng, ref.DEATH_CAUSES, [w for _, w in ref.DEATH_CAUSES], n)
    ]
    cause = np.where(np.isnat(death), "", cause)
    return People(death=death, death_cause=cause, **base)


def concat_people(parts: list[People]) -> People:
    fields = People.__dataclass_fields__
    return People(**{f: np.concatenate([getattr(p, f) for p in parts]) for f in fields})


def take_people(p: People, sel: Any) -> People:
    return People(**{f: getattr(p, f)[sel] for f in People.__dataclass_fields__})
