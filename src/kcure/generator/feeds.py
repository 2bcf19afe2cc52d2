"""Row builders: one function per source feed, from a chunk's People and Cancers to columns.

Each builder returns a :class:`FeedRows`: column arrays in the contract's order (numpy arrays,
dates as ``datetime64[D]`` with NaT for blank), the true person id of every row, the feed-year the
row is delivered in, and a tag naming any person-level fault the row carries. Text-level faults
(typos, formats, broken lines) are added later by :mod:`kcure.generator.faults`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from kcure.generator import reference as ref
from kcure.generator.population import (
    OUTCOME_END,
    WINDOW_END,
    WINDOW_START,
    Cancers,
    Int,
    People,
    Providers,
    Str,
    lpad,
    uniform_dates,
    weighted_choice,
    years_of,
)

D = np.datetime64
NAT = np.datetime64("NaT")


@dataclass
class FeedRows:
    columns: dict[str, Any]
    pid: Int
    year: Int
    tag: Str = field(default_factory=lambda: np.array([], dtype="<U1"))

    def __post_init__(self) -> None:
        if len(self.tag) != len(self.pid):
            self.tag = np.full(len(self.pid), "", dtype="<U32")

    def __len__(self) -> int:
        return len(self.pid)


def _s(a: pa.Array | pa.ChunkedArray) -> Str:
    return np.asarray(a.to_numpy(zero_copy_only=False), dtype=str)


def _pick(rng: np.random.Generator, items: Any, n: int, weights: Any = None) -> Str:
    arr = np.array([i[0] if isinstance(i, tuple) else i for i in items])
    if weights is None and items and isinstance(items[0], tuple):
        weights = [i[1] for i in items]
    if weights is None:
        return arr[rng.integers(0, len(arr), n)]
    return arr[weighted_choice(rng, arr, weights, n)]


def _sex_for(people: People, idx: Int, feed: str) -> Int:
    sex = people.sex[idx]
    flip = people.sex_fault_feed[idx] == feed
    return np.where(flip, 3 - sex, sex)


def _sex_tag(people: People, idx: Int, feed: str) -> Str:
    return np.where(people.sex_fault_feed[idx] == feed, "sex_disagreement", "")


def _days(n: Any) -> Any:
    return np.asarray(n, dtype=np.int64).astype("timedelta64[D]")


def registry(rng: np.random.Generator, people: People, cancers: Cancers) -> FeedRows:
    i = cancers.idx
    moved = (people.move_year[i] > 0) & (years_of(cancers.fdx) >= people.move_year[i])
    cols = {
        "HCODE": cancers.hcode,
        "PTNO": cancers.ptno,
        "RRN": people.rrn[i],
        "NAME": people.name[i],
        "SEX": _sex_for(people, i, "kccr_registry"),
        "BRTH": people.birth[i],
        "ADDR": np.where(moved, people.addr2[i], people.addr[i]),
        "SIGUNGU_CD": np.where(moved, people.sigungu2[i], people.sigungu[i]),
        "FDX": cancers.fdx,
        "TCODE": cancers.tcode,
        "MCODE": cancers.mcode,
        "KCD": cancers.kcd,
        "LATERCODE": cancers.later,
        "GRADE": cancers.grade,
        "METHOD": cancers.method,
        "SEER_GRP": cancers.seer,
        "TX": cancers.tx,
    }
    return FeedRows(cols, people.pid[i], years_of(cancers.fdx), _sex_tag(people, i, "kccr_registry"))


def eligibility(rng: np.random.Generator, people: People) -> FeedRows:
    n = len(people)
    years = np.arange(2012, 2021)
    py = np.repeat(np.arange(n), len(years))
    yy = np.tile(years, n)
    by = years_of(people.birth)[py]
    jan1 = np.array([D(f"{y}-01-01") for y in years])[np.tile(np.arange(len(years)), n)]
    keep = (yy >= by) & (np.isnat(people.death[py]) | (people.death[py] >= jan1))
    py, yy = py[keep], yy[keep]
    mv = people.move_year[py]
    # a mid-year move gives that year two rows: the old address, then the new one
    extra = mv == yy
    py = np.concatenate([py, py[extra]])
    yy = np.concatenate([yy, yy[extra]])
    second = np.concatenate([np.zeros(len(extra), bool), np.ones(int(extra.sum()), bool)])
    order = np.lexsort((second, py, yy))
    py, yy, second = py[order], yy[order], second[order]
    mv = people.move_year[py]
    new_addr = (mv > 0) & ((yy > mv) | ((yy == mv) & second))
    vt = people.vtile[py]
    vt = np.where(vt > 0, np.clip(vt + rng.integers(-1, 2, len(py)), 1, 20), 0)
    cols = {
        "RRN": people.rrn[py],
        "NAME": people.name[py],
        "STD_YYYY": yy,
        "SEX": _sex_for(people, py, "nhis_eligibility"),
        "BRTH": people.birth[py],
        "SIDO_CD": np.where(new_addr, people.sido2[py], people.sido[py]),
        "SIGUNGU_CD": np.where(new_addr, people.sigungu2[py], people.sigungu[py]),
        "ADDR": np.where(new_addr, people.addr2[py], people.addr[py]),
        "GAIBJA_TYPE": people.gaibja[py],
        "CTRB_VTILE": vt,
        "DSB_GRADE": people.dsb_grade[py],
        "DSB_TYPE": people.dsb_type[py],
    }
    return FeedRows(cols, people.pid[py], yy, _sex_tag(people, py, "nhis_eligibility"))


def screening(rng: np.random.Generator, people: People) -> FeedRows:
    n = len(people)
    years = np.arange(2012, 2021)
    py = np.repeat(np.arange(n), len(years))
    yy = np.tile(years, n)
    age = yy - years_of(people.birth)[py]
    p = np.where(age >= 40, 0.42, np.where(age >= 20, 0.25, 0.0))
    keep = rng.random(len(py)) < p
    py, yy, age = py[keep], yy[keep], age[keep]
    lo = np.array([D(f"{y}-01-01") for y in yy], dtype="datetime64[D]")
    hi = np.array([D(f"{y}-12-31") for y in yy], dtype="datetime64[D]")
    hi = np.minimum(hi, people.death_or(D("2100-01-01"))[py] - _days(1))
    ok = hi >= lo
    py, yy, age, lo, hi = py[ok], yy[ok], age[ok], lo[ok], hi[ok]
    m = len(py)
    date = uniform_dates(rng, lo, hi)
    male = people.sex[py] == 1
    height = np.where(male, rng.normal(171 - 0.1 * (age - 40), 6), rng.normal(158 - 0.1 * (age - 40), 5.5))
    bmi = rng.normal(np.where(male, 24.3, 23.2), 3.2)
    weight = bmi * (height / 100) ** 2
    waist = np.round(np.where(male, 60 + 0.9 * bmi + rng.normal(0, 4, m), 52 + 1.0 * bmi + rng.normal(0, 4, m)), 1)
    sbp = rng.normal(112 + 0.4 * age, 13)
    dbp = sbp * 0.62 + rng.normal(0, 7, m)
    glucose = rng.lognormal(np.log(95 + 0.2 * age), 0.18)
    tchol = rng.normal(195, 37, m)
    hdl = rng.normal(np.where(male, 50, 59), 12)
    tg = rng.lognormal(np.log(np.where(male, 130, 100)), 0.5)
    ldl = tchol - hdl - tg / 5
    ldl = np.where(tg >= 400, np.nan, ldl)  # Friedewald LDL is not reported when TG >= 400
    hmg = np.round(rng.normal(np.where(male, 15.0, 13.0), 1.2), 1)
    prote = _pick(rng, [("1", 93), ("2", 3), ("3", 2), ("4", 1), ("5", 0.7), ("6", 0.3)], m)
    creat = np.round(rng.lognormal(np.log(np.where(male, 0.95, 0.72)), 0.2), 1)
    ast = rng.lognormal(np.log(24), 0.35, m)
    alt = rng.lognormal(np.log(np.where(male, 25, 18)), 0.55)
    ggt = rng.lognormal(np.log(np.where(male, 35, 18)), 0.7)
    smk = np.where(
        male, _pick(rng, [("1", 45), ("2", 30), ("3", 25)], m), _pick(rng, [("1", 93), ("2", 3), ("3", 4)], m)
    )
    drink = _pick(rng, [("1", 45), ("2", 25), ("3", 15), ("4", 10), ("5", 5)], m)
    cols = {
        "RRN": people.rrn[py],
        "NAME": people.name[py],
        "HME_DT": date,
        "HEIGHT": np.round(height / 5) * 5,  # NHIS releases height and weight in 5-unit steps
        "WEIGHT": np.round(weight / 5) * 5,
        "WAIST": waist,
        "BP_HIGH": np.round(sbp),
        "BP_LWST": np.round(dbp),
        "BLDS": np.round(glucose),
        "TOT_CHOLE": np.round(tchol),
        "HDL_CHOLE": np.round(hdl),
        "LDL_CHOLE": np.round(ldl),
        "TRIGLYCERIDE": np.round(tg),
        "HMG": hmg,
        "OLIG_PROTE_CD": prote,
        "CREATININE": creat,
        "SGOT_AST": np.round(ast),
        "SGPT_ALT": np.round(alt),
        "GAMMA_GTP": np.round(ggt),
        "SMK_STAT_TYPE_RSPS_CD": smk,
        "DRNK_HABIT_RSPS_CD": drink,
    }
    return FeedRows(cols, people.pid[py], yy)


def _drug_codes(ingredients: Str, rng: np.random.Generator) -> Str:
    """9-digit drug price codes (약가코드) starting with 6; each ingredient has a few products."""
    h = np.array([sum(map(ord, s)) * 7919 for s in ingredients], dtype=np.int64)
    variant = rng.integers(0, 4, len(ingredients))
    num = (h * 131 + variant * 1_000_003 + 10_007) % 10**8
    return _s(pc.binary_join_element_wise("6", lpad(num, 8), ""))


def claims(
    rng: np.random.Generator,
    people: People,
    cancers: Cancers,
    providers: Providers,
    gen: dict[str, Any],
    mid_base: int,
) -> dict[str, FeedRows]:
    """T200 statements with their T300 lines, T400 diagnoses and T530 prescriptions."""
    cg = gen["claims"]
    n = len(people)
    start = np.maximum(people.birth, WINDOW_START)
    end = np.minimum(WINDOW_END, people.death_or(D("2100-01-01")) - _days(1))
    span = np.maximum((end - start).astype(np.int64) + 1, 0)
    age_mid = (D("2016-07-01") - people.birth).astype(np.int64) / 365.25
    lam = cg["baseline_per_year"] * np.clip(0.5 + age_mid / 50, 0.4, 2.5) * span / 365.25
    nb = rng.poisson(lam)
    parts_idx = [np.repeat(np.arange(n), nb)]
    parts_lo = [np.repeat(start, nb)]
    parts_hi = [np.repeat(end, nb)]
    parts_kind = [np.zeros(int(nb.sum()), dtype=np.int64)]
    parts_cancer = [np.full(int(nb.sum()), -1, dtype=np.int64)]
    if len(cancers.idx):
        ci = cancers.idx
        c_lo = np.maximum(cancers.fdx - _days(30), start[ci])
        c_hi = np.minimum(cancers.fdx + _days(365), end[ci])
        nc = np.where(c_hi >= c_lo, rng.poisson(cg["care_first_year"], len(ci)), 0)
        f_lo = cancers.fdx + _days(366)
        f_hi = end[ci]
        fspan = np.maximum((f_hi - f_lo).astype(np.int64) + 1, 0)
        nf = rng.poisson(cg["followup_per_year"] * fspan / 365.25)
        for cnt, lo, hi, kind_code in ((nc, c_lo, c_hi, 1), (nf, f_lo, f_hi, 2)):
            parts_idx.append(np.repeat(ci, cnt))
            parts_lo.append(np.repeat(lo, cnt))
            parts_hi.append(np.repeat(hi, cnt))
            parts_kind.append(np.full(int(cnt.sum()), kind_code, dtype=np.int64))
            parts_cancer.append(np.repeat(np.arange(len(ci)), cnt))
    pidx = np.concatenate(parts_idx)
    kind = np.concatenate(parts_kind)
    cidx = np.concatenate(parts_cancer)
    fr = uniform_dates(rng, np.concatenate(parts_lo), np.concatenate(parts_hi))
    order = np.lexsort((fr, pidx))
    pidx, kind, cidx, fr = pidx[order], kind[order], cidx[order], fr[order]
    m = len(pidx)
    care = kind > 0
    inpatient = rng.random(m) < np.where(kind == 1, 0.25, np.where(kind == 2, 0.10, 0.04))
    pharmacy = ~inpatient & ~care & (rng.random(m) < 0.12)
    cl = np.where(
        inpatient,
        np.where(
            care,
            _pick(rng, [("01", 45), ("11", 40), ("21", 15)], m),
            _pick(rng, [("01", 5), ("11", 25), ("21", 60), ("28", 10)], m),
        ),
        np.where(
            care,
            _pick(rng, [("01", 55), ("11", 35), ("21", 5), ("31", 5)], m),
            _pick(rng, [("01", 3), ("11", 7), ("21", 10), ("31", 80)], m),
        ),
    )
    cl = np.where(pharmacy, "81", cl)
    fom = np.where(inpatient, "021", np.where(pharmacy, "081", "031"))
    cancer_kcd = np.where(cidx >= 0, cancers.kcd[np.maximum(cidx, 0)] if len(cancers.idx) else "", "")
    common = _pick(rng, ref.COMMON_KCD, m)
    main = np.where(care, cancer_kcd, common)
    follow_z = (kind == 2) & (rng.random(m) < 0.15)
    main = np.where(follow_z, "Z080", main)
    sub = np.where(
        care,
        _pick(rng, ref.CANCER_FOLLOWUP_SUB, m),
        np.where(rng.random(m) < 0.5, _pick(rng, ref.COMMON_KCD, m), ""),
    )
    sub = np.where(follow_z, cancer_kcd, sub)
    dept = np.where(care, _pick(rng, ref.DEPTS_CANCER, m), _pick(rng, ref.DEPTS_GENERAL, m))
    dept = np.where(np.char.startswith(main, "F"), "03", dept)
    los = np.where(inpatient, 1 + rng.poisson(np.where(care, 7, 4)), 1)
    death = people.death_or(D("2100-01-01"))[pidx]
    dies = inpatient & (death <= fr + _days(los))
    to = np.where(dies, death, fr + _days(los - 1))
    los = (to - fr).astype(np.int64) + 1
    result = np.where(dies, "4", _pick(rng, [("1", 90), ("2", 3), ("3", 5), ("5", 2)], m))
    day_cost = np.where(
        inpatient,
        rng.lognormal(np.log(np.where(care, 450_000, 180_000)), 0.5),
        rng.lognormal(np.log(np.where(care, 120_000, np.where(pharmacy, 15_000, 22_000))), np.where(care, 1.0, 0.6)),
    )
    amount = (np.round(day_cost * np.where(inpatient, los, 1) / 10) * 10).astype(np.int64)
    surgery = inpatient & care & (rng.random(m) < 0.35)
    fdx_c = cancers.fdx[np.maximum(cidx, 0)] if len(cancers.idx) else fr
    v193 = care & (fr <= fdx_c + _days(5 * 365))
    sido = people.sido[pidx]
    ykiho = providers.pick(rng, cl, sido)
    year = years_of(fr)
    # claim keys: the year the claim was made and a scrambled serial, unique across the dataset
    serial = (mid_base + np.arange(m, dtype=np.int64)) * 7_919 % 10**11
    mid = _s(pc.binary_join_element_wise(pa.array(year).cast(pa.string()), lpad(serial, 11), ""))
    t200 = FeedRows(
        {
            "MID": mid,
            "RRN": people.rrn[pidx],
            "NAME": people.name[pidx],
            "YKIHO": ykiho,
            "CL_CD": cl,
            "FOM_TP_CD": fom,
            "M_SICK_CD": main,
            "SUB_SICK_CD": sub,
            "DGSBJT_CD": dept,
            "RECU_FR_DD": fr,
            "RECU_TO_DD": to,
            "FST_IPAT_DD": np.where(inpatient, fr, NAT),
            "VST_DDCNT": los,
            "RECU_DDCNT": los,
            "RVD_RPE_TAMT_AMT": amount,
            "SOPR_YN": np.where(surgery, "Y", "N"),
            "PRCL_SYM_TP_CD": np.where(v193, "V193", ""),
            "DGRSLT_TP_CD": result,
        },
        people.pid[pidx],
        year,
    )

    # --- T300: treatment lines -----------------------------------------------------------------
    nl = np.where(pharmacy, 1 + rng.poisson(2, m), 1 + rng.poisson(cg["t300_lines_mean"] - 1, m))
    li = np.repeat(np.arange(m), nl)
    first = np.concatenate([[0], np.cumsum(nl)[:-1]])
    ln_no = np.arange(len(li)) - np.repeat(first, nl) + 1
    k = len(li)
    inp_l = inpatient[li]
    care_l = care[li]
    u = rng.random(k)
    ltype = np.where(
        inp_l,
        np.where(u < 0.45, "1", np.where(u < 0.80, "3", "8")),
        np.where(u < 0.35, "1", np.where(u < 0.90, "3", "8")),
    )
    ltype = np.where((ln_no == 1) & ~pharmacy[li], "1", ltype)
    ltype = np.where(pharmacy[li], "3", ltype)
    proc = np.where(
        care_l & (rng.random(k) < 0.5), _pick(rng, ref.PROCEDURE_CANCER, k), _pick(rng, ref.PROCEDURE_CODES, k)
    )
    proc = np.where(ln_no == 1, np.where(inp_l, "AB220", "AA154"), proc)
    ingr = np.where(
        care_l & (rng.random(k) < 0.5), _pick(rng, ref.INGREDIENTS_CANCER, k), _pick(rng, ref.INGREDIENTS_GENERAL, k)
    )
    device = _s(
        pc.binary_join_element_wise(pa.array(_pick(rng, ref.DEVICE_PREFIXES, k)), lpad(rng.integers(0, 1000, k), 3), "")
    )
    drug = _drug_codes(ingr, rng)
    is_drug = ltype == "3"
    injection = np.char.endswith(ingr, "IJ")
    div_cd = np.where(ltype == "1", proc, np.where(is_drug, drug, device))
    cz = np.where(
        ltype == "1",
        np.where(ln_no == 1, np.where(inp_l, "02", "01"), _pick(rng, ["06", "07", "08", "09"], k, [10, 50, 30, 10])),
        np.where(is_drug, np.where(injection, "04", "03"), "10"),
    )
    fq1 = np.where(is_drug, _pick(rng, ["1", "0.5", "2", "1"], k).astype(float), 1.0)
    dy1 = np.where(is_drug, rng.integers(1, 4, k), 1).astype(float)
    tot = np.where(is_drug, np.where(inp_l, los[li], 1 + rng.poisson(9, k)), 1 + rng.poisson(0.3, k)).astype(float)
    unit = np.where(
        ltype == "1",
        rng.lognormal(np.log(15_000), 1.0, k),
        np.where(
            is_drug, rng.lognormal(np.log(np.where(injection, 60_000, 300)), 1.0), rng.lognormal(np.log(50_000), 1.0, k)
        ),
    )
    unit = np.round(unit, 0)
    amt = np.round(unit * fq1 * dy1 * tot).astype(np.int64)
    t300 = FeedRows(
        {
            "MID": mid[li],
            "LN_NO": ln_no,
            "CZ_ITEM_CD": cz,
            "DIV_TY_CD": ltype,
            "DIV_CD": div_cd,
            "GNL_CD": np.where(is_drug, ingr, ""),
            "FQ1_MDCT_QTY": fq1,
            "DY1_MDCT_QTY": dy1,
            "TOT_USE_QTY_OR_EXEC_FQ": tot,
            "UNIT_COST": unit,
            "AMT": amt,
        },
        t200.pid[li],
        year[li],
    )

    # --- T400: diagnoses -----------------------------------------------------------------------
    nsec = rng.poisson(cg["t400_secondary_mean"], m)
    ruleout = (rng.random(m) < 0.05).astype(np.int64)
    nd = 1 + nsec + ruleout
    di = np.repeat(np.arange(m), nd)
    dfirst = np.concatenate([[0], np.cumsum(nd)[:-1]])
    sno = np.arange(len(di)) - np.repeat(dfirst, nd) + 1
    kd = len(di)
    ty = np.where(sno == 1, "1", np.where(sno == nd[di], np.where(ruleout[di] == 1, "3", "2"), "2"))
    sec_code = np.where(
        care[di] & (rng.random(kd) < 0.4), _pick(rng, ref.CANCER_FOLLOWUP_SUB, kd), _pick(rng, ref.COMMON_KCD, kd)
    )
    sick = np.where(sno == 1, main[di], np.where((sno == 2) & (sub[di] != ""), sub[di], sec_code))
    t400 = FeedRows(
        {"MID": mid[di], "SICK_SNO": sno, "SICK_CD": sick, "SICK_TY_CD": ty, "DGSBJT_CD": dept[di]},
        t200.pid[di],
        year[di],
    )

    # --- T530: outpatient prescriptions ---------------------------------------------------------
    presc = (fom == "031") & (rng.random(m) < cg["prescription_share"])
    npl = np.where(presc, 1 + rng.poisson(cg["t530_lines_mean"] - 1, m), 0)
    pi = np.repeat(np.arange(m), npl)
    pfirst = np.concatenate([[0], np.cumsum(npl)[:-1]])
    pln = np.arange(len(pi)) - np.repeat(pfirst, npl) + 1
    kp = len(pi)
    grant_day = pc.strftime(pa.array(fr).cast(pa.timestamp("s")), format="%Y%m%d")
    grant = _s(pc.binary_join_element_wise(grant_day, lpad(serial % 100_000, 5), ""))
    p_ingr = np.where(
        care[pi] & (rng.random(kp) < 0.3),
        _pick(rng, ref.INGREDIENTS_CANCER, kp),
        _pick(rng, ref.INGREDIENTS_GENERAL, kp),
    )
    t530 = FeedRows(
        {
            "MID": mid[pi],
            "PRSCP_GRANT_NO": grant[pi],
            "LN_NO": pln,
            "DIV_TY_CD": np.full(kp, "3"),
            "DIV_CD": _drug_codes(p_ingr, rng),
            "GNL_CD": p_ingr,
            "FQ1_MDCT_QTY": _pick(rng, ["1", "0.5", "2", "1"], kp).astype(float),
            "DY1_MDCT_QTY": rng.integers(1, 4, kp).astype(float),
            "TOT_MCNT": 1 + rng.poisson(np.where(care[pi], 20, 6)),
        },
        t200.pid[pi],
        year[pi],
    )
    return {"hira_t200": t200, "hira_t300": t300, "hira_t400": t400, "hira_t530": t530}


def covid(rng: np.random.Generator, people: People) -> tuple[FeedRows, npt.NDArray[np.bool_]]:
    """Confirmed cases 2020-2022 (about 58% of Koreans by the end of 2022), and who died of COVID-19."""
    n = len(people)
    age22 = (D("2022-01-01") - people.birth).astype(np.int64) / 365.25
    # yearly probability of a first confirmed infection: 0.12% (2020), 1.1% (2021), 56% (2022)
    u = rng.random(n)
    year = np.where(u < 0.0012, 2020, np.where(u < 0.0012 + 0.011, 2021, np.where(u < 0.0122 + 0.56, 2022, 0)))
    lo = np.array(
        [D(f"{max(y, 2020)}-01-20" if y == 2020 else f"{max(y, 2020)}-01-01") for y in year], dtype="datetime64[D]"
    )
    hi = np.array([D(f"{max(y, 2020)}-12-31") for y in year], dtype="datetime64[D]")
    conf = uniform_dates(rng, lo, hi)
    # a share of deaths in 2020-2022 are COVID-19 deaths, confirmed shortly before
    dying = ~np.isnat(people.death) & (people.death >= D("2020-02-01")) & (people.death <= OUTCOME_END)
    covid_death = dying & (rng.random(n) < np.where(age22 >= 80, 0.12, 0.04))
    conf = np.where(covid_death, people.death - _days(rng.integers(1, 21, n)), conf)
    year = np.where(covid_death, years_of(conf), year)
    has = (year > 0) & (covid_death | np.isnat(people.death) | (conf < people.death_or(D("2100-01-01"))))
    has &= conf >= people.birth
    idx = np.flatnonzero(has)
    m = len(idx)
    a = age22[idx]
    sev = np.where(
        covid_death[idx],
        "4",
        np.where(
            rng.random(m) < np.clip(a / 400, 0.01, 0.25), _pick(rng, ["2", "3"], m), _pick(rng, ["0", "1"], m, [30, 70])
        ),
    )
    hosp = np.isin(sev, ["2", "3", "4"])
    cols = {
        "RRN": people.rrn[idx],
        "NAME": people.name[idx],
        "PHONE": people.phone[idx],
        "CONF_DATE": conf[idx],
        "SEVERITY": sev,
        "HOSP_YN": np.where(hosp, "Y", "N"),
        "ICU_YN": np.where(sev == "4", "Y", "N"),
        "DEATH_YN": np.where(covid_death[idx], "Y", "N"),
        "DEATH_DATE": np.where(covid_death[idx], people.death[idx], NAT),
    }
    return FeedRows(cols, people.pid[idx], years_of(conf[idx])), covid_death


def vaccination(rng: np.random.Generator, people: People) -> FeedRows:
    n = len(people)
    age = (D("2021-07-01") - people.birth).astype(np.int64) / 365.25
    alive_until = people.death_or(D("2100-01-01"))
    p1 = np.where(age >= 18, 0.88, np.where(age >= 12, 0.55, 0.0))
    got1 = (rng.random(n) < p1) & (alive_until > D("2021-03-01"))
    # older people first: 2021-03 (80+) to 2021-10 (young adults)
    start = D("2021-03-01") + _days(np.clip((85 - age) * 3.5, 0, 200).astype(np.int64))
    d1 = start + _days(rng.integers(0, 40, n))
    product1 = _pick(rng, ref.VACCINES_2021, n)
    janssen = product1 == "JS"
    d2 = d1 + _days(np.where(product1 == "AZ", rng.integers(56, 85, n), rng.integers(21, 43, n)))
    got2 = got1 & ~janssen & (rng.random(n) < 0.97)
    d3 = np.maximum(d2, d1) + _days(rng.integers(120, 200, n))
    got3 = got1 & (got2 | janssen) & (rng.random(n) < 0.72)
    d4 = d3 + _days(rng.integers(120, 240, n))
    got4 = got3 & (age >= 60) & (rng.random(n) < 0.45)
    booster = _pick(rng, [("PF", 60), ("MO", 40)], n)
    booster4 = _pick(rng, ref.VACCINES_2022, n)
    idx, date, code, dose = [], [], [], []
    for got, d, c, k in (
        (got1, d1, product1, 1),
        (got2, d2, product1, 2),
        (got3, d3, booster, 3),
        (got4, d4, booster4, 4),
    ):
        ok = got & (d < alive_until) & (d <= OUTCOME_END)
        sel = np.flatnonzero(ok)
        idx.append(sel)
        date.append(d[sel])
        code.append(c[sel])
        dose.append(np.full(len(sel), k))
    ii = np.concatenate(idx)
    dd = np.concatenate(date)
    order = np.lexsort((np.concatenate(dose), ii))
    ii, dd = ii[order], dd[order]
    cols = {
        "RRN": people.rrn[ii],
        "NAME": people.name[ii],
        "PHONE": people.phone[ii],
        "VCNYMD": dd,
        "VCNCD": np.concatenate(code)[order],
        "VCNTME": np.concatenate(dose)[order],
    }
    return FeedRows(cols, people.pid[ii], years_of(dd))


def death(
    rng: np.random.Generator,
    people: People,
    covid_death: npt.NDArray[np.bool_],
    first_fdx: Any,
    fault_rate: float,
) -> FeedRows:
    """Death records 2012-2022 of everyone in the chunk; ``first_fdx`` is NaT for the cancer-free."""
    died = ~np.isnat(people.death) & (people.death >= WINDOW_START) & (people.death <= OUTCOME_END)
    idx = np.flatnonzero(died)
    m = len(idx)
    dth = people.death[idx].copy()
    cause = np.where(covid_death[idx], "U071", people.death_cause[idx])
    tag = np.full(m, "", dtype="<U64")
    # fault: a death record dated before the registered diagnosis
    fdx = first_fdx[idx]
    lo = np.maximum(fdx - _days(400), WINDOW_START)
    hi = fdx - _days(1)
    bad = ~np.isnat(fdx) & (hi >= lo) & (rng.random(m) < fault_rate)
    if bad.any():
        dth[bad] = uniform_dates(rng, lo[bad], hi[bad])
        tag[bad] = "death_before_diagnosis"
    sex_tag = _sex_tag(people, idx, "kostat_death")
    tag = np.where(sex_tag == "", tag, np.where(tag == "", sex_tag, np.char.add(np.char.add(tag, ","), sex_tag)))
    moved = (people.move_year[idx] > 0) & (years_of(dth) >= people.move_year[idx])
    age = (dth - people.birth[idx]).astype(np.int64) / 365.25
    marriage = np.where(
        age < 30,
        _pick(rng, [("1", 85), ("2", 13), ("4", 2)], m),
        np.where(
            age >= 75,
            _pick(rng, [("2", 45), ("3", 48), ("4", 5), ("1", 2)], m),
            _pick(rng, [("1", 12), ("2", 70), ("3", 8), ("4", 9), ("9", 1)], m),
        ),
    )
    birth_year = years_of(people.birth[idx])
    edu = np.where(
        birth_year < 1945,
        _pick(rng, [("0", 30), ("1", 40), ("2", 15), ("3", 10), ("4", 5)], m),
        _pick(rng, [("1", 10), ("2", 15), ("3", 40), ("4", 10), ("5", 20), ("6", 4), ("9", 1)], m),
    )
    job = np.where(
        age >= 70, "99", _pick(rng, ["01", "02", "03", "04", "05", "06", "07", "08", "09", "10", "11", "99"], m)
    )
    sain2 = np.where(rng.random(m) < 0.3, _pick(rng, ["J189", "I469", "R092", "A419", "N179", "K729"], m), "")
    cols = {
        "RRN": people.rrn[idx],
        "NAME": people.name[idx],
        "SEX": _sex_for(people, idx, "kostat_death"),
        "BRTH": people.birth[idx],
        "DTH_DATE": dth,
        "DTH_PLC": _pick(rng, [("2", 76), ("1", 14), ("3", 6), ("4", 1), ("5", 1), ("9", 2)], m),
        "ADDR": np.where(moved, people.addr2[idx], people.addr[idx]),
        "MARRIAGE": marriage,
        "EDU": edu,
        "JOB": job,
        "SAIN1": cause,
        "SAIN2": sain2,
        "REPORT_DATE": dth + _days(rng.integers(0, 31, m)),
    }
    return FeedRows(cols, people.pid[idx], years_of(dth), tag)
