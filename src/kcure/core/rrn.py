"""Korean resident registration numbers (주민등록번호): structure and check digit.

``YYMMDD-GBBBBSC``: birth date; G the sex-and-century digit (1/2 Korean born 1900-1999, 3/4 Korean
born 2000-2099, 5/6 and 7/8 foreign residents born in those centuries, 9/0 born 1800-1899; odd is
male); then region and serial digits; C a check digit over the first twelve with weights
2,3,4,5,6,7,8,9,2,3,4,5: ``C = (11 - sum % 11) % 10``.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

WEIGHTS = (2, 3, 4, 5, 6, 7, 8, 9, 2, 3, 4, 5)
_W = np.array(WEIGHTS, dtype=np.int64)

#: 7th digit -> (century, sex 1 male / 2 female, foreign)
GENDER_DIGIT = {
    9: (1800, 1, False),
    0: (1800, 2, False),
    1: (1900, 1, False),
    2: (1900, 2, False),
    3: (2000, 1, False),
    4: (2000, 2, False),
    5: (1900, 1, True),
    6: (1900, 2, True),
    7: (2000, 1, True),
    8: (2000, 2, True),
}


def normalize(rrn: str | None) -> str | None:
    """Digits only (drops the hyphen and blanks); None when nothing is left."""
    if rrn is None:
        return None
    digits = "".join(ch for ch in rrn if ch.isdigit())
    return digits or None


def check_digit(first12: str) -> int:
    total = sum(int(d) * w for d, w in zip(first12, WEIGHTS, strict=True))
    return (11 - total % 11) % 10


def is_valid(rrn: str | None) -> bool:
    """Thirteen digits with a matching check digit (the hyphen is optional)."""
    d = normalize(rrn)
    if d is None or len(d) != 13:
        return False
    return check_digit(d[:12]) == int(d[12])


def gender_digit(
    sex: npt.NDArray[np.int64], year: npt.NDArray[np.int64], foreign: npt.NDArray[np.bool_]
) -> npt.NDArray[np.int64]:
    """The 7th digit for sex (1 male, 2 female), birth year and foreign residence (vectorized)."""
    base = np.where(year >= 2000, 3, np.where(year >= 1900, 1, 9))
    base = np.where(foreign & (year >= 1900), base + 4, base)
    g = base + (sex - 1)
    return np.where(g == 10, 0, g)


def check_digits(digits12: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
    """Check digits for an (n, 12) array of RRN digits."""
    total = digits12 @ _W
    return (11 - total % 11) % 10


def make_rrns(
    birth: npt.NDArray[np.datetime64],
    sex: npt.NDArray[np.int64],
    foreign: npt.NDArray[np.bool_],
    rng: np.random.Generator,
) -> npt.NDArray[np.str_]:
    """Valid 13-digit RRNs (no hyphen) whose birth date, sex, century and check digit agree."""
    n = len(birth)
    ymd = birth.astype("datetime64[D]").astype(str)  # YYYY-MM-DD
    year = np.array([int(s[:4]) for s in ymd], dtype=np.int64)
    digits = np.zeros((n, 12), dtype=np.int64)
    yy = year % 100
    mm = np.array([int(s[5:7]) for s in ymd], dtype=np.int64)
    dd = np.array([int(s[8:10]) for s in ymd], dtype=np.int64)
    digits[:, 0], digits[:, 1] = yy // 10, yy % 10
    digits[:, 2], digits[:, 3] = mm // 10, mm % 10
    digits[:, 4], digits[:, 5] = dd // 10, dd % 10
    digits[:, 6] = gender_digit(sex, year, foreign)
    # digits 8-9: region of first registration (00-95), 10-11: office serial, 12: order of the day
    region = rng.integers(0, 96, n)
    digits[:, 7], digits[:, 8] = region // 10, region % 10
    digits[:, 9:12] = rng.integers(0, 10, (n, 3))
    check = check_digits(digits)
    full = np.concatenate([digits, check[:, None]], axis=1)
    return np.array(["".join(map(str, row)) for row in full])


def mistype(rrn: str, rng: np.random.Generator) -> str:
    """One digit of the serial part changed so that the check digit no longer holds (a typo)."""
    d = list(rrn)
    while True:
        pos = int(rng.integers(7, 12))
        new = str(int(rng.integers(0, 10)))
        if new == d[pos]:
            continue
        cand = d.copy()
        cand[pos] = new
        s = "".join(cand)
        if not is_valid(s):
            return s
