"""Disclosure control on tables with margins: masked cells stay unrecoverable, zeros stay visible."""

from __future__ import annotations

import random

import pytest

from kcure.core.disclosure import Figures, determined, protect, rounded

pytestmark = pytest.mark.unit


def _table(cells: dict[tuple[str, str], int]) -> Figures:
    """Cells with their row and column totals and the grand total, all related by sums."""
    f = Figures()
    rows, cols = sorted({r for r, _ in cells}), sorted({c for _, c in cells})
    for key, v in cells.items():
        f.add(("cell", *key), v)
    for r in rows:
        f.add(("row", r), sum(cells[(r, c)] for c in cols))
        f.add_sum(("row", r), [("cell", r, c) for c in cols])
    for c in cols:
        f.add(("col", c), sum(cells[(r, c)] for r in rows))
        f.add_sum(("col", c), [("cell", r, c) for r in rows])
    f.add(("all",), sum(cells.values()))
    f.add_sum(("all",), [("row", r) for r in rows])
    f.add_sum(("all",), [("col", c) for c in cols])
    return f


def test_one_small_cell_beside_its_total_would_be_recovered_without_secondary_suppression() -> None:
    f = _table({("a", "x"): 3, ("a", "y"): 40, ("b", "x"): 25, ("b", "y"): 60})
    assert determined([("cell", "a", "x")], f.sums) == {("cell", "a", "x")}  # 43 - 40
    shown = protect(f, 5)
    masked = {k for k, v in shown.items() if v is None}
    assert ("cell", "a", "x") in masked and len(masked) >= 4  # a rectangle of four: no sum pins any of them
    assert not determined(sorted(masked, key=repr), f.sums) & masked


def test_zero_stays_visible_and_people_not_rows_decide() -> None:
    f = Figures()
    f.add("claims", 30, persons=1)  # thirty claim lines of one person
    f.add("none", 0)
    f.add("many", 12, persons=9)
    assert protect(f, 5) == {"claims": None, "none": 0, "many": 12}
    assert protect(f, 5, rounding=5) == {"claims": None, "none": 0, "many": 10}
    assert [rounded(v, 5) for v in (0, 5, 7, 8, 12, 13)] == [0, 5, 5, 10, 10, 15]


def test_unpublished_figures_are_unknowns_not_constants() -> None:
    f = _table({("a", "x"): 3, ("a", "y"): 40, ("b", "x"): 25, ("b", "y"): 60})
    published = [k for k in f.values if k != ("cell", "a", "y")]  # the page leaves one cell out
    shown = protect(f, 5, published)
    assert ("cell", "a", "y") not in shown and shown[("cell", "a", "x")] is None


@pytest.mark.parametrize("seed", range(40))
def test_random_tables_never_give_a_masked_cell_away(seed: int) -> None:
    rng = random.Random(seed)
    n_rows, n_cols = rng.randint(2, 6), rng.randint(2, 5)
    cells = {(f"r{i}", f"c{j}"): rng.choice([0, 0, 1, 2, 4, 5, 6, 9, 30]) for i in range(n_rows) for j in range(n_cols)}
    f = _table(cells)
    shown = protect(f, 5)
    masked = [k for k, v in shown.items() if v is None]
    assert not determined(masked, f.sums) & set(masked)
    assert all(v is None or v == 0 or v >= 5 for v in shown.values())
    assert all(shown[("cell", *k)] is None for k, v in cells.items() if 0 < v < 5)
