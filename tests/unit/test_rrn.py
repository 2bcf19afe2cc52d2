from __future__ import annotations

import numpy as np
import pytest

from kcure.core import rrn

pytestmark = pytest.mark.unit


def test_check_digit_of_a_known_valid_number() -> None:
    # weights 2,3,4,5,6,7,8,9,2,3,4,5 over 800101123456 sum to 122; (11 - 122 % 11) % 10 = 0
    assert rrn.check_digit("800101123456") == 0
    assert rrn.is_valid("800101-1234560")
    assert rrn.is_valid("8001011234560")
    assert not rrn.is_valid("8001011234568")


@pytest.mark.parametrize("value", [None, "", "-", "80010112345", "80010112345678", "abcdefghijklm"])
def test_malformed_numbers_are_invalid(value: str | None) -> None:
    assert not rrn.is_valid(value)


def test_normalize_drops_hyphen_and_blanks() -> None:
    assert rrn.normalize(" 800101-1234560 ") == "8001011234560"
    assert rrn.normalize("   ") is None


@pytest.mark.parametrize(
    ("sex", "year", "foreign", "digit"),
    [
        (1, 1955, False, 1),
        (2, 1955, False, 2),
        (1, 2003, False, 3),
        (2, 2003, False, 4),
        (1, 1980, True, 5),
        (2, 1980, True, 6),
        (1, 2001, True, 7),
        (2, 2001, True, 8),
        (1, 1899, False, 9),
        (2, 1899, False, 0),
    ],
)
def test_gender_digit_encodes_sex_century_and_residence(sex: int, year: int, foreign: bool, digit: int) -> None:
    got = rrn.gender_digit(np.array([sex]), np.array([year]), np.array([foreign]))
    assert int(got[0]) == digit
    assert rrn.GENDER_DIGIT[digit][:2] == ((year // 100) * 100, sex)
    assert rrn.GENDER_DIGIT[digit][2] == foreign


def test_made_numbers_agree_with_birth_sex_and_check_digit() -> None:
    rng = np.random.default_rng(3)
    birth = np.array(["1938-05-12", "2004-12-31", "1999-02-28"], dtype="datetime64[D]")
    sex = np.array([2, 1, 1])
    foreign = np.array([False, False, True])
    made = rrn.make_rrns(birth, sex, foreign, rng)
    assert list(made[:, None].astype("<U6")[:, 0]) == ["380512", "041231", "990228"]
    assert [m[6] for m in made] == ["2", "3", "5"]
    assert all(rrn.is_valid(m) for m in made)


def test_mistype_breaks_the_check_digit_and_keeps_the_birth_date() -> None:
    rng = np.random.default_rng(5)
    for _ in range(200):
        good = rrn.make_rrns(np.array(["1970-01-01"], dtype="datetime64[D]"), np.array([1]), np.array([False]), rng)[0]
        bad = rrn.mistype(good, rng)
        assert not rrn.is_valid(bad)
        assert bad[:7] == good[:7]
        assert sum(a != b for a, b in zip(bad, good, strict=True)) == 1
