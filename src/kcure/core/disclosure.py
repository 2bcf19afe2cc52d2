"""Disclosure control: every count that leaves the custodian's zone goes through :func:`protect`.

The rule (``conf/privacy.yaml`` ``export.min_cell_count``, K-CURE's export threshold of 5) applies
to the number of distinct *people* behind a figure, not to the figure itself: thirty claim lines can
be one person. A figure whose people number 1 to threshold-1 is masked (primary suppression); zero
stays visible. Then secondary suppression: every published figure takes part in sums that are
published too (a year's total is the sum of its sites; staged rows are the sum of their fates), so
a masked figure could be recovered by subtraction, or by solving the published sums together.
:func:`protect` therefore treats the published figures as a linear system and masks more figures,
the smallest first, until no masked figure is determined by it. Figures that are not published at
all (the sites outside a plot's top twelve, say) are unknowns of that system, never constants.
Last, the figures shown are rounded (``export.rounding``, 5 as OpenSAFELY does), so that two
releases' figures, each safe alone, cannot be subtracted into a small count.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

MASKED = None
Key = Hashable


@dataclass
class Figures:
    """Exact figures, the people behind each, and the sums that hold between them."""

    values: dict[Key, int] = field(default_factory=dict)
    persons: dict[Key, int] = field(default_factory=dict)  # default: the value itself counts people
    sums: list[tuple[Key, tuple[Key, ...]]] = field(default_factory=list)  # total = sum(parts)

    def add(self, key: Key, value: int, persons: int | None = None) -> None:
        self.values[key] = int(value)
        if persons is not None:
            self.persons[key] = int(persons)

    def add_sum(self, total: Key, parts: Iterable[Key]) -> None:
        self.sums.append((total, tuple(parts)))

    def people(self, key: Key) -> int:
        return self.persons.get(key, self.values.get(key, 0))


def determined(unknowns: Sequence[Key], sums: Sequence[tuple[Key, Sequence[Key]]]) -> set[Key]:
    """The unknowns whose value the sums fix, whatever the other unknowns are.

    Each sum is a linear equation; the known figures are constants. An unknown is determined when
    every solution of the homogeneous system gives it zero: when its column of the null space of
    the coefficient matrix is zero.
    """
    import numpy as np

    if not unknowns:
        return set()
    index = {k: i for i, k in enumerate(unknowns)}
    rows = []
    for total, parts in sums:
        row = np.zeros(len(unknowns))
        if total in index:
            row[index[total]] -= 1.0
        for p in parts:
            if p in index:
                row[index[p]] += 1.0
        if row.any():
            rows.append(row)
    if not rows:
        return set()
    a = np.array(rows)
    _, s, vh = np.linalg.svd(a)
    rank = int((s > 1e-9 * max(a.shape) * (s[0] if len(s) else 1.0)).sum())
    null = vh[rank:]  # an orthonormal basis of every solution of A x = 0
    if null.shape[0] == 0:
        return set(unknowns)
    return {k for k, i in index.items() if np.abs(null[:, i]).max() < 1e-9}


def rounded(value: int, base: int) -> int:
    """``value`` to the nearest multiple of ``base`` (halves up); zero stays zero."""
    return value if base <= 1 or value == 0 else base * ((value + base // 2) // base)


def protect(
    figures: Figures, threshold: int, published: Iterable[Key] | None = None, rounding: int = 1
) -> dict[Key, int | None]:
    """The published figures as they may be shown: a number (rounded to ``rounding``), or None where masked.

    ``published``: the figures that are shown (default: all); the rest are unknowns of the system.
    Masking is decided on the exact figures; rounding the shown ones then keeps two releases' figures
    from giving a small count away by their difference (a difference of multiples of 5 is one too).
    """
    shown_keys = list(figures.values if published is None else published)
    masked = {k for k in shown_keys if 0 < figures.people(k) < threshold}
    hidden = [k for k in figures.values if k not in set(shown_keys)]
    while True:
        fixed = determined([*sorted(masked, key=repr), *hidden], figures.sums) & masked
        if not fixed:
            break
        key = sorted(fixed, key=repr)[0]
        masked.add(_secondary(figures, key, masked, shown_keys))
    return {k: (MASKED if k in masked else rounded(figures.values[k], rounding)) for k in shown_keys}


def _secondary(figures: Figures, key: Key, masked: set[Key], shown: Sequence[Key]) -> Key:
    """The figure to mask next: the smallest visible non-zero figure that sums with ``key``, else the
    smallest visible figure in any published sum (a figure can be pinned through sums it is not in)."""
    visible = set(shown) - masked
    near = {m for total, parts in figures.sums if key in (total, *parts) for m in (total, *parts)} - {key}
    anywhere = {m for total, parts in figures.sums for m in (total, *parts)}
    for pool in (near & visible, anywhere & visible):
        nonzero = [c for c in pool if figures.values.get(c, 0) != 0] or list(pool)
        if nonzero:
            return min(nonzero, key=lambda c: (figures.values.get(c, 0), repr(c)))
    raise ValueError(f"nothing left to mask beside {key!r}")


def masked_text(value: int | None, threshold: int) -> str:
    """How a protected figure is printed."""
    return f"<{threshold}" if value is MASKED else f"{value:,}"


def protect_mapping(
    counts: Mapping[str, int], persons: Mapping[str, int], threshold: int, rounding: int = 1
) -> dict[str, int | None]:
    """Independent figures (no sum between them published): primary suppression and rounding only."""
    f = Figures()
    for k, v in counts.items():
        f.add(k, v, persons.get(k, v))
    return {str(k): v for k, v in protect(f, threshold, rounding=rounding).items()}
